"""The client commands of the ``azimds`` CLI: output, exit codes, one-line errors, safe shell export of tags,
proxies ignored, the dump -> serve -> get round trip, and a fast start.

Most run the command in this process (``azimds.cli.main``, output and exit code captured, see
``tests.support.azimds_inprocess``); every command also runs at least once as a real process (``process``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from azimds import Emulator
from azimds.azure import INSTANCE_VERSIONS
from azimds.client import DEFAULT_DEADLINE, ZERO_GUID
from azimds.emulator.model.faults import FaultRule as Fault
from tests.support import AZIMDS, azimds_inprocess, azimds_process, fetch

CLI = AZIMDS
EVIL = "it's $(touch PWNED) `touch PWNED` \"q\" ;&| $HOME \\"
TAGS = {
    "tag_key": "value:with:colons",
    "semi": "a;b",
    "evil": EVIL,
    "app.name": "a  b",
    "9lives": "cat",
    "PATH": "/nowhere",
    "a-b": "first",
    "a_b": "second",
    "multi": "line1\nline2",
    "ünï": "çödé",
    "empty": "",
}


def azimds(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command run in this process."""
    return azimds_inprocess(*args, env=env)


def process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command as a real process, end to end."""
    return azimds_process(*args, env=env)


def one_line_error(done: subprocess.CompletedProcess, code: int) -> str:
    """Assert a failure: the exit code, nothing on stdout, one 'azimds...' line on stderr; return it."""
    assert done.returncode == code, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("azimds"), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def vm() -> Iterator[Emulator]:
    """A VM with awkward tags, no rate limit."""
    with Emulator({"compute": {"name": "tagged", "tags": TAGS}}) as emulator:
        yield emulator


def env_without(*names: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in names}
    env.update(extra)
    return env


# -- tags ------------------------------------------------------------------------------------------------

def test_tags_key_prints_the_value_alone(vm: Emulator) -> None:
    done = process("tags", "tag_key", "--endpoint", vm.url)
    assert (done.returncode, done.stdout, done.stderr) == (0, "value:with:colons\n", "")


def test_tags_key_matches_case_insensitively_as_azure_does(vm: Emulator) -> None:
    assert azimds("tags", "TAG_KEY", "--endpoint", vm.url).stdout == "value:with:colons\n"


def test_an_empty_tag_prints_nothing_and_succeeds(vm: Emulator) -> None:
    done = azimds("tags", "empty", "--endpoint", vm.url)
    assert (done.returncode, done.stdout) == (0, "")


def test_a_missing_tag_exits_1(vm: Emulator) -> None:
    line = one_line_error(azimds("tags", "nope", "--endpoint", vm.url), 1)
    assert line.startswith("azimds: no tag 'nope' on this VM (its tags: 'tag_key', 'semi'")


def test_tags_as_json(vm: Emulator) -> None:
    assert json.loads(azimds("tags", "--format", "json", "--endpoint", vm.url).stdout) == TAGS
    assert json.loads(azimds("tags", "evil", "--format", "json", "--endpoint", vm.url).stdout) == EVIL


def test_tags_plain_lists_name_value_lines(vm: Emulator) -> None:
    lines = azimds("tags", "--endpoint", vm.url).stdout.splitlines()
    assert lines[:3] == ["tag_key=value:with:colons", "semi=a;b", f"evil={EVIL}"]


def test_tags_shell_export_is_safe_to_eval(vm: Emulator, tmp_path: Path) -> None:
    script = ('exports=$("$@" tags --format shell) || exit 9; eval "$exports" && '
              f'{sys.executable} -c "import json, os; print(json.dumps(dict(os.environ)))"')
    done = subprocess.run(["bash", "-c", script, "bash", *CLI], capture_output=True, text=True, cwd=tmp_path,
                          env=env_without(AZIMDS_ENDPOINT=vm.url), timeout=60)
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    assert not (tmp_path / "PWNED").exists()
    assert exported["TAG_EVIL"] == EVIL
    assert exported["TAG_TAG_KEY"] == "value:with:colons"
    assert exported["TAG_SEMI"] == "a;b"
    assert exported["TAG_APP_NAME"] == "a  b"
    assert exported["TAG_9LIVES"] == "cat"
    assert exported["TAG_MULTI"] == "line1\nline2"
    assert exported["TAG__N_"] == "çödé"  # ü and ï are outside [A-Za-z0-9_]
    assert exported["TAG_EMPTY"] == ""
    assert exported["TAG_PATH"] == "/nowhere" and exported["PATH"] == os.environ["PATH"]
    assert exported["TAG_A_B"] == "first"
    assert "azimds: warning: tags 'a-b' and 'a_b' both become TAG_A_B; kept 'a-b'" in done.stderr


def test_tags_shell_with_an_empty_prefix(vm: Emulator) -> None:
    out = azimds("tags", "9lives", "--format", "shell", "--prefix", "", "--endpoint", vm.url).stdout
    assert out == "export _9LIVES=cat\n"


def test_tags_env_skips_values_with_line_breaks(vm: Emulator) -> None:
    done = azimds("tags", "--format", "env", "--endpoint", vm.url)
    lines = done.stdout.splitlines()
    assert "TAG_TAG_KEY=value:with:colons" in lines and f"TAG_EVIL={EVIL}" in lines
    assert not any(line.startswith("TAG_MULTI") for line in lines)
    assert "azimds: warning: tag 'multi': an env file cannot hold a line break; skipped" in done.stderr


def test_a_bad_prefix_is_a_usage_error(vm: Emulator) -> None:
    line = one_line_error(azimds("tags", "--format", "shell", "--prefix", "1X", "--endpoint", vm.url), 2)
    assert "a prefix is letters, digits and '_'" in line


# -- get, versions ---------------------------------------------------------------------------------------

def test_get_prints_json_as_served(vm: Emulator) -> None:
    done = azimds("get", "instance/compute", "--endpoint", vm.url)
    assert done.returncode == 0
    assert done.stdout.encode() == fetch(vm.url, "/metadata/instance/compute?api-version=2021-02-01").body + b"\n"
    pretty = azimds("get", "instance/compute", "--pretty", "--endpoint", vm.url).stdout
    assert pretty.startswith("{\n  ") and json.loads(pretty) == json.loads(done.stdout)


def test_get_text_leaf(vm: Emulator) -> None:
    done = process("get", "instance/compute/name", "--text", "--endpoint", vm.url)
    assert (done.returncode, done.stdout) == (0, "tagged\n")


def test_get_with_an_api_version(vm: Emulator) -> None:
    old = json.loads(azimds("get", "instance/compute", "--api-version", "2019-03-11", "--endpoint", vm.url).stdout)
    assert "resourceId" in old and "storageProfile" not in old
    line = one_line_error(azimds("get", "--api-version", "1999-01-01", "--endpoint", vm.url), 2)
    assert "400 Bad request. api-version is invalid" in line and "newest versions: 2025-04-07" in line


def test_get_a_leaf_without_text_hints(vm: Emulator) -> None:
    line = one_line_error(azimds("get", "instance/compute/vmId", "--endpoint", vm.url), 2)
    assert line == "azimds: /metadata/instance/compute/vmId: 400 Bad request (a leaf such as vmId needs --text)"


def test_get_a_missing_path_exits_1(vm: Emulator) -> None:
    line = one_line_error(azimds("get", "instance/compute/nope", "--deadline", "1", "--endpoint", vm.url), 1)
    assert line.startswith("azimds: not found: /metadata/instance/compute/nope")


def test_versions(vm: Emulator) -> None:
    assert process("versions", "--endpoint", vm.url).stdout.splitlines() == list(INSTANCE_VERSIONS[1:])


def test_endpoint_from_the_environment_as_the_ready_line_prints_it(vm: Emulator) -> None:
    done = azimds("tags", "tag_key", env=env_without(AZIMDS_ENDPOINT=f"{vm.url}/metadata"))
    assert done.stdout == "value:with:colons\n"


# -- failures --------------------------------------------------------------------------------------------

def test_no_answer_exits_2_in_one_line() -> None:
    port = closed_port()
    line = one_line_error(process("tags", "--endpoint", f"http://127.0.0.1:{port}", "--deadline", "0.5"), 2)
    assert re.fullmatch(rf"azimds: no answer from http://127\.0\.0\.1:{port}: Connection refused "
                        r"\(\d+ attempts? in \d+\.\d s\)", line)


def test_retries_are_bounded_by_the_deadline() -> None:
    with Emulator(faults=[Fault(path="/metadata/instance/compute", status=503)]) as imds:
        line = one_line_error(azimds("tags", "--endpoint", imds.url, "--deadline", "2.5"), 2)
        answered = [entry.status for entry in imds.journal]
    # 503 at 0 s; waits 1 s; 503; would wait 2 s, past the deadline less a second for a last try, so
    # waits 0.5 s instead; 503; gives up.
    assert line.startswith("azimds: /metadata/instance/compute: 503 Service Unavailable (3 attempts in 1.5 s)")
    assert answered == [503, 503, 503]


@pytest.mark.parametrize(("args", "message"), [
    (["tags", "--endpoint", "ftp://example"], "azimds: an endpoint is http://HOST[:PORT], not 'ftp://example'"),
    (["tags", "--deadline", "0"], "azimds tags: argument --deadline: must be more than 0 seconds, not 0"),
    (["tags", "--format", "xml"], "azimds tags: argument --format: invalid choice: 'xml'"),
    (["nope"], "azimds: argument COMMAND: invalid choice: 'nope'"),
    (["get", "a", "b"], "azimds: unrecognized arguments: b"),
])
def test_usage_errors_exit_2_in_one_line(args: list[str], message: str) -> None:
    line = one_line_error(azimds(*args), 2)
    assert line.startswith(message)


def test_an_unwritable_output_exits_2(vm: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "vm.json"
    line = one_line_error(azimds("dump", "--endpoint", vm.url, "--output", str(target)), 2)
    assert line == f"azimds: {target}: No such file or directory"


@pytest.mark.parametrize("command", ["get", "tags", "versions", "events", "dump", "serve"])
def test_every_command_has_help(command: str) -> None:
    done = azimds(command, "--help")
    assert done.returncode == 0 and done.stdout.startswith(f"usage: azimds {command}")
    if command != "serve":
        assert "--endpoint URL" in done.stdout and "--deadline SECONDS" in done.stdout
        assert "exit codes: 0 success, 1 not found" in done.stdout


def test_help_states_the_default_deadline() -> None:
    assert f"(default: {DEFAULT_DEADLINE:g})" in azimds("get", "--help").stdout


def test_dump_help_says_what_redact_does() -> None:
    text = " ".join(azimds("dump", "--help").stdout.split())
    for field in ("userData", "customData", "publicKeys[].keyData", "subscriptionId", "vmId", "resource IDs",
                  "public IP addresses", "Tags"):
        assert field in text


# -- proxies, dump round trip, start-up ------------------------------------------------------------------

def test_proxy_variables_are_ignored(shared_vm: Emulator) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    proxies = dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"), dead)
    env = env_without("NO_PROXY", "no_proxy", "AZIMDS_ENDPOINT", **proxies)
    done = process("tags", "tag_key", "--endpoint", shared_vm.url, "--deadline", "3", env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "configured-by-tag\n", "")


ROUND_TRIP_PATHS = [
    "/metadata/instance?api-version={newest}",
    "/metadata/instance?api-version=2019-06-01",
    "/metadata/instance/compute/tags?api-version=2021-02-01&format=text",
    "/metadata/instance/network/interface/0/macAddress?api-version=2021-02-01&format=text",
    "/metadata/loadbalancer?api-version={newest}",
    "/metadata/versions",
    "/metadata/instance",
]


@pytest.mark.parametrize("newest", [INSTANCE_VERSIONS[-1], "2021-12-13"])
def test_dump_then_serve_answers_byte_identical(tmp_path: Path, newest: str) -> None:
    """In-process emulators serve as ``azimds serve`` does (the same App); the redact test below runs serve."""
    with contextlib.ExitStack() as running:
        original = running.enter_context(Emulator(newest_version=newest))
        profile = tmp_path / "vm.json"
        done = azimds("dump", "--endpoint", original.url, "--output", str(profile))
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert json.loads(profile.read_text())["azimds"] == {"newestVersion": newest}
        assert azimds("dump", "--endpoint", original.url).stdout == profile.read_text()
        copy = running.enter_context(Emulator(profile))
        round_trip(original.url, copy.url, newest)


def round_trip(original: str, copy: str, newest: str) -> None:
    """Assert that ``copy`` answers every round-trip path, and the client commands, as ``original`` does."""
    for path in (p.format(newest=newest) for p in ROUND_TRIP_PATHS):
        a, b = fetch(original, path), fetch(copy, path)
        assert (b.status, b.body) == (a.status, a.body), path
    for args in (["get"], ["tags", "--format", "json"], ["versions"]):
        assert azimds(*args, "--endpoint", copy).stdout == azimds(*args, "--endpoint", original).stdout


def test_dump_redact_serves_a_scrubbed_vm(shared_vm: Emulator, serve, tmp_path: Path) -> None:
    """End to end: ``azimds dump`` and ``azimds serve`` as real processes (the original is the default VM)."""
    profile = tmp_path / "redacted.json"
    assert process("dump", "--redact", "--endpoint", shared_vm.url, "--output", str(profile)).returncode == 0
    text = profile.read_text()
    for secret in ("6f1c2a8e-4b7d-4c39-9e21-3d5a0b8f7c64", "20.115.74.12", "web-01", "app-prod-rg",
                   "IyEvYmluL3NoCmVjaG8", "ssh-rsa"):
        assert secret not in text
    copy = serve("--rate-limit", "0", "--profile", str(profile))
    assert azimds("get", "instance/compute/subscriptionId", "--text", "--endpoint", copy.url).stdout == \
        ZERO_GUID + "\n"
    assert azimds("tags", "tag_key", "--endpoint", copy.url).stdout == "configured-by-tag\n"


def test_client_commands_import_nothing_heavy(vm: Emulator) -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "azimds", "tags", "tag_key", "--endpoint",
                           vm.url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    heavy = {"pydantic", "yaml", "httptools", "uvloop", "asyncio", "cryptography", "urllib3", "azimds.emulator",
             "typing_extensions", "azimds.cli.ctl"}
    assert "azimds.client" in imported
    assert not imported & heavy
