"""``azimds run``: a command in a private network namespace where 169.254.169.254:80 is the emulator.

The docs' curl line works as written, the client finds the emulator at its default address, the command's
exit code comes back, and the host's network is left as it was. Skipped where no network namespace can be
made (no unshare, or neither root nor unprivileged user namespaces).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from azimds.emulator import netns

CLI = [sys.executable, "-m", "azimds"]
DOCS_CURL = ["curl", "-s", "-H", "Metadata:true", "http://169.254.169.254/metadata/instance?api-version=2021-02-01"]


def _namespace_problem() -> str | None:
    try:
        netns._unshare_prefix()
    except netns.NetnsError as exc:
        return str(exc)
    return None


PROBLEM = _namespace_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"no network namespace here: {PROBLEM}")


def azimds_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "run", *args], capture_output=True, text=True, timeout=60, env=env)


def host_addresses() -> str:
    return subprocess.run([shutil.which("ip") or "/usr/sbin/ip", "addr"], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_docs_curl_line_works_as_written_and_leaves_the_host_alone() -> None:
    assert netns.IMDS_ADDRESS not in host_addresses()
    done = azimds_run("--", *DOCS_CURL)
    assert (done.returncode, done.stderr) == (0, "")
    document = json.loads(done.stdout)
    assert document["compute"]["name"] == "web-01"
    assert document["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"] == "10.0.0.4"
    assert netns.IMDS_ADDRESS not in host_addresses()


def test_options_reach_the_emulator_and_the_client_finds_it_at_its_default_address(tmp_path: Path) -> None:
    profile = tmp_path / "vm.yaml"
    profile.write_text("compute: {name: in-the-namespace}\n")
    env = {key: value for key, value in os.environ.items() if key != "AZIMDS_ENDPOINT"}
    done = azimds_run("--profile", str(profile), "--rate-limit", "0", "--", *CLI, "get", "instance/compute/name",
                      "--text", env={**env, "AZIMDS_ENDPOINT": "http://127.0.0.1:9"})  # run drops it
    assert (done.returncode, done.stdout, done.stderr) == (0, "in-the-namespace\n", "")


@pytest.mark.parametrize(("command", "code"), [
    (["sh", "-c", "exit 7"], 7),
    (["true"], 0),
    (["sh", "-c", "kill -9 $$"], 128 + 9),
    (["no-such-command-azimds"], 127),
])
def test_the_commands_exit_code_is_returned(command: list[str], code: int) -> None:
    assert azimds_run("--", *command).returncode == code


def test_the_separator_may_be_left_out() -> None:
    assert azimds_run("sh", "-c", "exit 3").returncode == 3


@pytest.mark.parametrize(("args", "message"), [
    ([], "azimds: give the command to run after --, e.g. azimds run -- curl ..."),
    (["--profile", "/nonexistent.yaml", "--", "true"], "azimds: bad profile: /nonexistent.yaml: cannot read the file"),
])
def test_failures_to_set_up_exit_2_in_one_line(args: list[str], message: str) -> None:
    done = azimds_run(*args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1


def test_no_unshare_exits_2_saying_why(tmp_path: Path) -> None:
    done = azimds_run("--", "true", env={**os.environ, "PATH": str(tmp_path)})
    assert (done.returncode, done.stderr) == (2, "azimds: azimds run needs the 'unshare' command (util-linux)\n")


AZURE_IDENTITY = """
import sys
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.identity._credentials.imds import ImdsCredential

# As in a credential chain, the SDK probes 169.254.169.254 without the Metadata header before its first token.
probe = ImdsCredential(_enable_imds_probe=True)
token = probe.get_token("https://management.azure.com/.default")
assert probe._endpoint_available, "the probe did not find the endpoint"
mi = ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
default = DefaultAzureCredential(exclude_environment_credential=True, exclude_workload_identity_credential=True,
                                 exclude_shared_token_cache_credential=True, exclude_azure_cli_credential=True,
                                 exclude_azure_powershell_credential=True, exclude_azure_developer_cli_credential=True,
                                 exclude_visual_studio_code_credential=True,
                                 exclude_interactive_browser_credential=True)
print(len(token.token.split(".")), len(mi.token.split(".")), len(default.get_token("https://management.azure.com/.default").token.split(".")))
"""


def test_azure_identity_with_no_configuration_at_all() -> None:
    """No environment variable points the SDK anywhere: it finds IMDS at 169.254.169.254, probe included."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZIMDS_", "MSI_", "IDENTITY_"))}
    run = azimds_run("--", sys.executable, "-c", AZURE_IDENTITY, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["3", "3", "3"]  # three JWTs: header.payload.signature
