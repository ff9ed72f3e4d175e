"""The container image works as the README says: built by ``scripts/image.sh`` (make image), run with podman, it
serves the docs' curl line on a published port, takes its profile from a mounted file and its options from
AZIMDS_* variables, runs as a user who is not root, keeps the control plane's changes in its /state volume across
containers, passes its health check and stops at once, exit 0, on SIGTERM.

Marked ``image``: ``pytest -m image`` runs it alone. The image is built once per set of inputs (its tag is their
hash), so a run after the first costs only the containers (a few seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import AZIMDS, ROOT, fetch, wait_until

pytestmark = pytest.mark.image

CONTAINERS_CONF = str(ROOT / "scripts" / "containers.conf")
PROFILE = """\
compute:
  name: boxed-vm
  location: westeurope
  tags: {stage: built}
"""
TOKEN = "container-test-token"
CANNOT_INSTALL = 3  # scripts/image.sh: podman or mmdebstrap is missing and cannot be installed here


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": CONTAINERS_CONF}
    run = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {run.returncode}: {run.stderr.strip()}")
    return run


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built by make image's script (found, not rebuilt, when its inputs have not changed)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is missing (scripts/sysdeps.sh installs it where it can)")
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "image.sh")], capture_output=True, text=True, env=env,
                         timeout=900)
    if run.returncode == CANNOT_INSTALL:
        pytest.skip(f"this machine cannot provide podman/mmdebstrap: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().splitlines()[-1]


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    """Names for this test's containers and volume; whatever exists of them is removed after."""
    tag = f"azimds-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    names = {"first": f"{tag}-1", "second": f"{tag}-2", "volume": f"{tag}-state"}
    yield names
    for key in ("first", "second"):
        podman("rm", "--force", "--time", "0", names[key], check=False)
    podman("volume", "rm", "--force", names["volume"], check=False)


def start(image: str, name: str, volume: str, profile: Path, *options: str) -> tuple[str, str]:
    """Run the image detached with the state volume and the profile mounted; its published metadata URL once it
    serves, and the control plane's URL when published."""
    podman("run", "--detach", "--runtime", "runc", "--name", name, "--publish", "127.0.0.1::8169",
           "--volume", f"{volume}:/state", "--volume", f"{profile}:/profile/vm.yaml:ro",
           "--env", "AZIMDS_PROFILE=/profile/vm.yaml", "--env", "AZIMDS_SERVER_VERSION=1.2.3.4", *options, image)
    url = "http://" + podman("port", name, "8169").stdout.strip().splitlines()[0]
    control = podman("port", name, "8170", check=False).stdout.strip()
    deadline = time.monotonic() + 60
    while True:
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", f"the container is {state}: {podman('logs', name).stderr}"
        try:
            if fetch(url, "/metadata/versions").status == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, f"not serving after 60 s: {podman('logs', name).stderr}"
        time.sleep(0.2)
    return url, ("http://" + control.splitlines()[0]) if control else ""


def curl_docs_line(url: str, path: str) -> str:
    """The docs' curl line, through the published port."""
    run = subprocess.run(["curl", "-s", "-H", "Metadata:true", "--noproxy", "*", f"{url}{path}"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_image_serves_keeps_its_state_is_healthy_and_stops_on_sigterm(image, names, tmp_path):
    profile = tmp_path / "vm.yaml"
    profile.write_text(PROFILE)
    profile.chmod(0o644)
    podman("volume", "create", names["volume"])

    # The defaults: metadata on 0.0.0.0 inside (published here on a loopback port), control on the container's
    # loopback, reached with podman exec and no option.
    url, control = start(image, names["first"], names["volume"], profile)
    assert control == ""
    document = json.loads(curl_docs_line(url, "/metadata/instance?api-version=2021-02-01"))
    assert (document["compute"]["name"], document["compute"]["location"]) == ("boxed-vm", "westeurope")
    assert document["compute"]["tags"] == "stage:built"
    assert fetch(url, "/metadata/versions").headers["server"] == "IMDS/1.2.3.4"  # an option from AZIMDS_*

    ctl = podman("exec", names["first"], "azimds", "ctl", "tags", "stage=changed", "owner=ops")
    assert json.loads(ctl.stdout) == {"tags": "stage:changed;owner:ops"}
    tags = "/metadata/instance/compute/tags?api-version=2021-02-01&format=text"
    assert curl_docs_line(url, tags) == "stage:changed;owner:ops"

    # Not root: the process serving (PID 1, exec form) is the image's user.
    status = podman("exec", names["first"], "cat", "/proc/1/status").stdout
    uid = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid == ["10001"] * 4
    assert podman("exec", names["first"], "id", "-un").stdout.strip() == "azimds"
    # The PostgreSQL engine is in the image: the Kubernetes control plane runs on it.
    engine = podman("exec", names["first"], "python", "-c", "import psycopg, psycopg_pool", check=False)
    assert engine.returncode == 0, engine.stderr

    # The health check passes, and the same command fails where nothing answers.
    health = podman("healthcheck", "run", names["first"], check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    assert podman("inspect", "--format", "{{.State.Health.Status}}", names["first"]).stdout.strip() == "healthy"
    test = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", image).stdout)
    assert test[0] == "CMD"
    assert podman("exec", names["first"], *test[1:]).returncode == 0
    assert podman("exec", "--env", "AZIMDS_PORT=1", names["first"], *test[1:], check=False).returncode != 0

    # SIGTERM (podman stop) ends it at once and cleanly.
    started = time.monotonic()
    podman("stop", "--time", "10", names["first"])
    took = time.monotonic() - started
    assert took < 3, f"podman stop took {took:.1f} s"
    assert podman("inspect", "--format", "{{.State.ExitCode}}", names["first"]).stdout.strip() == "0"
    logs = podman("logs", names["first"])
    assert "Traceback" not in logs.stdout + logs.stderr
    podman("rm", names["first"])

    # A new container on the same volume keeps the change; this one publishes its control plane, with a token.
    url, control = start(image, names["second"], names["volume"], profile, "--publish", "127.0.0.1::8170",
                         "--env", "AZIMDS_CONTROL_HOST=0.0.0.0", "--env", f"AZIMDS_CONTROL_TOKEN={TOKEN}")
    assert curl_docs_line(url, tags) == "stage:changed;owner:ops"
    remote = subprocess.run([*AZIMDS, "ctl", "--control", control, "--token", TOKEN, "get", "compute/tags"],
                            capture_output=True, text=True, timeout=30)
    assert (remote.returncode, remote.stdout.strip()) == (0, '"stage:changed;owner:ops"'), remote.stderr
    refused = subprocess.run([*AZIMDS, "ctl", "--control", control, "--token", "wrong", "get", "compute/tags"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "refused the token" in refused.stderr
    started = time.monotonic()
    podman("stop", "--time", "10", names["second"])
    assert time.monotonic() - started < 3
    wait_until(lambda: podman("inspect", "--format", "{{.State.Status}}", names["second"]).stdout.strip() == "exited",
               timeout=10, interval=0.1)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", names["second"]).stdout.strip() == "0"
