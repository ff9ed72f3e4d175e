"""``azimds ctl``: every subcommand against a running emulator, its effect checked on the metadata port;
refusals, a wrong token and a missing control plane as one line and exit 2 (1 for 404).

Most tests run the command in this process (``azimds.cli.main``, output and exit code captured) against an
in-process emulator that writes its token to a state directory as ``azimds serve`` does; the end-to-end tests
at the bottom run real ``azimds ctl`` processes against a real ``azimds serve``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from azimds import Emulator
from azimds.cli import ctl as ctl_module
from azimds.emulator.config import default_state_dir
from tests.support import AZIMDS, ServeProcess, azimds_inprocess, azimds_process, fetch

SE = "/metadata/scheduledevents?api-version=2020-07-01"
NAME = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
TAGS = "/metadata/instance/compute/tags?api-version=2021-02-01&format=text"


class Ctl:
    """``azimds ctl`` aimed at one emulator: its control URL, and its token from the state directory the
    emulator wrote it to (as a user's default would). Runs in this process, or as real processes
    (``process=True``)."""

    def __init__(self, control: str, state_dir: str, url: str, *, process: bool = False) -> None:
        self.control, self.state_dir, self.url, self.process = control, state_dir, url, process

    @classmethod
    def serving(cls, server: ServeProcess, *, process: bool = False) -> Ctl:
        """For an ``azimds serve``: the control URL and token file from the line it prints on stderr."""
        line = server.proc.stderr.readline()  # type: ignore[union-attr]
        match = re.fullmatch(r"azimds: control plane (http://\S+) \(token in (\S+)/control-token\)\n", line)
        assert match, line
        return cls(match.group(1), match.group(2), server.url, process=process)

    @classmethod
    def of(cls, emulator: Emulator, state_dir: Path) -> Ctl:
        """For an in-process emulator started with ``state_dir``, where it wrote its token as serve does."""
        assert (state_dir / "control-token").read_text() == emulator.token + "\n"
        return cls(emulator.control_url, str(state_dir), emulator.url)

    def as_process(self) -> Ctl:
        return Ctl(self.control, self.state_dir, self.url, process=True)

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["ctl", "--control", self.control, "--state-dir", self.state_dir, *args]
        return azimds_process(*argv, env=env, timeout=30) if self.process else azimds_inprocess(*argv, env=env)

    def ok(self, *args: str) -> object:
        """Run, assert success and silence on stderr; the JSON printed (None for nothing)."""
        done = self.run(*args)
        assert (done.returncode, done.stderr) == (0, ""), done
        return json.loads(done.stdout) if done.stdout else None

    def fails(self, code: int, *args: str) -> str:
        """Run, assert the exit code, nothing on stdout and one line on stderr; that line."""
        done = self.run(*args)
        assert (done.returncode, done.stdout) == (code, ""), done
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        return done.stderr.rstrip("\n")

    def token(self) -> str:
        return Path(self.state_dir, "control-token").read_text().strip()

    def text(self, path: str) -> str:
        return fetch(self.url, path).body.decode()


@contextlib.contextmanager
def emulated(tmp_path: Path, profile: Path | None = None, **options: object) -> Iterator[Ctl]:
    """An in-process emulator with a state directory, as ``azimds serve`` runs by default, and its Ctl."""
    state = tmp_path / "state"
    with Emulator(profile, state_dir=state, **options) as emulator:  # type: ignore[arg-type]
        yield Ctl.of(emulator, state)


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[Ctl]:
    with emulated(tmp_path, clock="manual") as running:
        yield running


@pytest.fixture(scope="module")
def unchanged() -> Iterator[Ctl]:
    """One real ``azimds serve`` for the tests that must change nothing (each checks that it did not)."""
    server = ServeProcess("--clock", "manual", "--rate-limit", "0")
    yield Ctl.serving(server)
    server.stop()


# -- metadata ----------------------------------------------------------------------------------------------

def test_get_set_patch_delete(ctl: Ctl) -> None:
    assert ctl.ok("get", "compute/name") == "web-01"
    assert ctl.ok("get")["compute"]["name"] == "web-01"  # type: ignore[index]
    assert ctl.ok("set", "compute/name", '"web-02"') == "web-02"
    assert ctl.text(NAME) == "web-02"
    assert ctl.ok("patch", "compute", '{"zone": "3"}')["zone"] == "3"  # type: ignore[index]
    ctl.ok("patch", '{"compute": {"name": "web-03"}}')
    assert ctl.text(NAME) == "web-03"
    assert ctl.ok("delete", "compute/zone") is None
    assert ctl.ok("get", "compute/zone") == "1"  # the profile's value again


def test_pretty_output_and_options_after_the_operation(ctl: Ctl) -> None:
    done = azimds_inprocess("ctl", "get", "compute/osProfile", "--pretty", "--control", ctl.control,
                            "--state-dir", ctl.state_dir)
    assert done.returncode == 0 and done.stdout.startswith('{\n  "adminUsername": "azureuser"')


def test_a_missing_node_exits_1(ctl: Ctl) -> None:
    assert ctl.fails(1, "get", "compute/nope") == "azimds: no such node: compute/nope"
    assert ctl.fails(1, "delete", "compute/nope") == "azimds: no such node: compute/nope"


def test_an_invalid_change_is_refused_whole_with_its_problems(ctl: Ctl) -> None:
    before = ctl.ok("get")
    line = ctl.fails(2, "patch", '{"compute": {"vmSize": {"a": 1}, "zone": [2]}}')
    assert line == ("azimds: the change is invalid; nothing was changed: compute.vmSize: Input should be a valid "
                    "string; compute.zone: Input should be a valid string")
    assert ctl.ok("get") == before


@pytest.mark.parametrize(("args", "message"), [
    (["set", "compute/name", "web-02"], "azimds ctl set: argument VALUE_JSON: not JSON (Expecting value): "
                                         "'web-02'; a JSON string keeps its quotes, e.g. '\"web-02\"'"),
    (["set", "/", '"x"'], "azimds ctl set: argument PATH: give a path below the document, e.g. compute/name"),
    (["tags"], "azimds: give NAME=VALUE pairs (they replace every tag), or --clear to remove every tag"),
    (["tags", "a=1", "--clear"], "azimds: give NAME=VALUE pairs"),
    (["tags", "a=1", "a=2"], "azimds: tag 'a' is given twice"),
    (["tags", "novalue"], "azimds ctl tags: argument NAME=VALUE: a tag is NAME=VALUE, not 'novalue'"),
    (["events", "schedule", "Nap"], "azimds ctl events schedule: argument TYPE: invalid choice: 'Nap'"),
    (["events", "schedule", "Reboot", "--in", "soon"],
     "azimds ctl events schedule: argument --in: not a number of seconds: 'soon'"),
    (["clock", "--advance", "-5"], "azimds ctl clock: argument --advance: must be 0 seconds or more, not -5"),
    (["events", "schedule", "Reboot", "--in", "1", "--not-before", "0"],
     "azimds ctl events schedule: argument --not-before: not allowed with argument --in"),
    (["clock", "--time", "yesterday"], "azimds ctl clock: argument --time: a time is epoch seconds or ISO 8601"),
    (["journal", "--limit", "-1"], "azimds ctl journal: argument --limit: must be 0 or more, not -1"),
    ([], "azimds ctl: the following arguments are required: OPERATION"),
    (["events"], "azimds ctl events: the following arguments are required: OPERATION"),
])
def test_usage_errors_change_nothing(unchanged: Ctl, args: list[str], message: str) -> None:
    before = unchanged.ok("get")
    assert unchanged.fails(2, *args).startswith(message)
    assert unchanged.ok("get") == before
    assert fetch(unchanged.url, SE).json() == {"DocumentIncarnation": 1, "Events": []}


def test_tags_replace_every_tag(ctl: Ctl) -> None:
    assert ctl.ok("tags", "env=prod", "owner=ops:a=b", "empty=") == {"tags": "env:prod;owner:ops:a=b;empty:"}
    assert ctl.text(TAGS) == "env:prod;owner:ops:a=b;empty:"
    assert ctl.ok("tags", "--clear") == {"tags": ""}
    assert ctl.text(TAGS) == ""


# -- events ------------------------------------------------------------------------------------------------

def test_events_schedule_approve_complete(ctl: Ctl) -> None:
    event = ctl.ok("events", "schedule", "Reboot", "--in", "120", "--source", "User", "--duration", "30",
                   "--description", "planned", "--id", "c7061bac-afdc-4513-b24b-aa5f13a16123")
    assert event["eventId"] == "C7061BAC-AFDC-4513-B24B-AA5F13A16123"  # type: ignore[index]
    assert event["notBefore"] - event["published"] == 120  # type: ignore[index]
    [wire] = fetch(ctl.url, SE).json()["Events"]
    assert (wire["EventType"], wire["EventStatus"], wire["EventSource"], wire["DurationInSeconds"],
            wire["Description"], wire["Resources"]) == ("Reboot", "Scheduled", "User", 30, "planned", ["web-01"])
    assert ctl.ok("events", "list")["incarnation"] == 2  # type: ignore[index]
    after = ctl.ok("events", "approve", "c7061bac-afdc-4513-b24b-aa5f13a16123", "--by", "web-01")
    assert after["events"][0]["status"] == "Started"  # type: ignore[index]
    assert after["events"][0]["approvals"] == ["web-01"]  # type: ignore[index]
    assert ctl.ok("events", "complete", "C7061BAC-AFDC-4513-B24B-AA5F13A16123") == {"incarnation": 4, "events": []}
    assert fetch(ctl.url, SE).json() == {"DocumentIncarnation": 4, "Events": []}


def test_events_start_cancel_and_their_refusals(ctl: Ctl) -> None:
    first = ctl.ok("events", "schedule", "Freeze", "--resources", "web-01", "web-02", "--approval", "all")
    second = ctl.ok("events", "schedule", "Preempt", "--started")
    assert second["status"] == "Started"  # type: ignore[index]
    assert first["resources"] == ["web-01", "web-02"]  # type: ignore[index]
    ctl.ok("events", "approve", first["eventId"], "--by", "web-01")  # type: ignore[index]
    assert ctl.ok("events", "list")["events"][0]["status"] == "Scheduled"  # type: ignore[index]
    ctl.ok("events", "start", first["eventId"])  # type: ignore[index]
    line = ctl.fails(2, "events", "cancel", first["eventId"])  # type: ignore[index]
    assert line == f"azimds: event {first['eventId']} has started and can no longer be cancelled"  # type: ignore[index]
    third = ctl.ok("events", "schedule", "Terminate", "--not-before", "2099-01-01T00:00:00Z")
    assert third["notBefore"] == 4070908800  # type: ignore[index]
    ctl.ok("events", "cancel", third["eventId"])  # type: ignore[index]
    assert [e["EventType"] for e in fetch(ctl.url, SE).json()["Events"]] == ["Freeze", "Preempt"]
    assert ctl.fails(1, "events", "start", "NOPE") == "azimds: no event NOPE"


def test_a_clock_replays_events(ctl: Ctl) -> None:
    start = ctl.ok("clock")
    assert start["mode"] == "manual"  # type: ignore[index]
    ctl.ok("events", "schedule", "Freeze")  # 15 min notice, 5 s impact, Started for 5 minutes
    moved = ctl.ok("clock", "--advance", "900")
    assert moved["now"] == pytest.approx(start["now"] + 900)  # type: ignore[index]
    assert fetch(ctl.url, SE).json()["Events"][0]["EventStatus"] == "Started"
    ctl.ok("clock", "--time", str(moved["now"] + 300))  # type: ignore[index]
    assert fetch(ctl.url, SE).json() == {"DocumentIncarnation": 4, "Events": []}
    assert ctl.ok("clock", "--speed", "60")["mode"] == "scaled"  # type: ignore[index]
    assert ctl.fails(2, "clock", "--time", "2000-01-01") == "azimds: the clock only moves forward"


# -- faults, journal, metrics, openapi ---------------------------------------------------------------------

def test_faults(ctl: Ctl) -> None:
    assert ctl.ok("faults", "add", "/metadata/instance*=status:503,first:1") == {
        "path": "/metadata/instance*", "status": 503, "first": 1}
    assert ctl.ok("faults", "list") == {"faults": [{"path": "/metadata/instance*", "status": 503, "first": 1}]}
    assert fetch(ctl.url, NAME).status == 503
    assert ctl.ok("faults", "clear") is None
    assert ctl.ok("faults", "list") == {"faults": []}
    assert ctl.fails(2, "faults", "add", "/x=status:99").startswith("azimds: ")


def test_journal_filters(ctl: Ctl) -> None:
    fetch(ctl.url, NAME)
    fetch(ctl.url, "/metadata/nope?api-version=2021-02-01")
    fetch(ctl.url, SE)
    every = ctl.ok("journal")["entries"]  # type: ignore[index]
    assert [e["status"] for e in every] == [200, 404, 200]
    assert [e["url"] for e in ctl.ok("journal", "--status", "404")["entries"]] == [  # type: ignore[index]
        "/metadata/nope?api-version=2021-02-01"]
    assert [e["url"] for e in ctl.ok("journal", "--path", "/metadata/instance/*")["entries"]] == [NAME]  # type: ignore[index]
    assert ctl.ok("journal", "--limit", "1")["entries"] == every[-1:]  # type: ignore[index]
    assert ctl.ok("journal", "--peer", "127.0.0.9")["entries"] == []  # type: ignore[index]
    since = every[0]["time"]  # emulated time: the manual clock has not moved
    assert ctl.ok("journal", "--since", str(since))["entries"] == every  # type: ignore[index]
    assert ctl.ok("journal", "--since", str(since + 1))["entries"] == []  # type: ignore[index]


def test_metrics_and_openapi(ctl: Ctl) -> None:
    fetch(ctl.url, NAME)
    done = ctl.run("metrics")
    assert done.returncode == 0 and done.stdout.endswith("\n") and not done.stdout.endswith("\n\n")
    assert 'azimds_requests_total{endpoint="instance",status="200"} 1' in done.stdout
    document = ctl.ok("openapi")
    assert document["openapi"].startswith("3.")  # type: ignore[index]


def test_every_route_of_the_openapi_document_has_a_subcommand(ctl: Ctl) -> None:
    """A new control-plane route without a ctl subcommand fails here."""
    covered = {"/v1/metadata", "/v1/metadata/{path}", "/v1/tags", "/v1/events", "/v1/events/{eventId}/approve",
               "/v1/events/{eventId}/start", "/v1/events/{eventId}/complete", "/v1/events/{eventId}/cancel",
               "/v1/clock", "/v1/faults", "/v1/journal", "/v1/reset", "/v1/reload", "/metrics", "/openapi.json",
               "/v1/fleet", "/v1/fleet/walk", "/v1/reboot", "/v1/reprovision"}
    assert set(ctl.ok("openapi")["paths"]) == covered  # type: ignore[index]


def test_fleet_list_of_an_emulator_without_a_fleet_is_its_one_vm(ctl: Ctl) -> None:
    assert ctl.ok("fleet", "list") == {"total": 1, "offset": 0, "sets": [], "vms": [{
        "name": "web-01", "scaleSet": None, "availabilitySet": None, "addresses": [], "faultDomain": "0",
        "updateDomain": "0", "changed": False, "events": 0}]}


# -- reset and reload --------------------------------------------------------------------------------------

def test_reset_restores_the_profile_and_cancels_events(ctl: Ctl) -> None:
    ctl.ok("set", "compute/name", '"renamed"')
    ctl.ok("events", "schedule", "Reboot")
    ctl.ok("faults", "add", "/metadata/versions=status:500")
    assert ctl.ok("reset") == {"reset": True}
    assert ctl.text(NAME) == "web-01"
    assert fetch(ctl.url, SE).json() == {"DocumentIncarnation": 3, "Events": []}
    assert ctl.ok("faults", "list") == {"faults": []}


def test_reload_reads_the_profile_file_again(tmp_path: Path) -> None:
    profile = tmp_path / "vm.yaml"
    profile.write_text("compute: {name: before}\n")
    with emulated(tmp_path, profile) as ctl:
        profile.write_text("compute: {name: after}\n")
        assert ctl.text(NAME) == "before"
        assert ctl.ok("reload") == {"reloaded": True}
        assert ctl.text(NAME) == "after"
        profile.write_text("compute: {name: 5\n")
        assert ctl.fails(2, "reload").startswith("azimds: the change is invalid")
        assert ctl.text(NAME) == "after"


def test_reload_without_a_profile_file_exits_2(ctl: Ctl) -> None:
    assert ctl.fails(2, "reload") == "azimds: this emulator was not started from a profile file"


# -- fleets ------------------------------------------------------------------------------------------------

FLEET = """compute: {name: jump-1}
fleet:
  vms:
    - {addresses: [127.0.0.2], compute: {name: db-1}}
  scaleSets:
    - {name: web, capacity: 4, addresses: 127.1.0.0, updateDomains: 2}
"""


def test_vm_selects_a_fleet_vm_and_fleet_walk_plans_update_domains(tmp_path: Path) -> None:
    profile = tmp_path / "fleet.yaml"
    profile.write_text(FLEET)
    with emulated(tmp_path, profile, clock="manual") as ctl:
        assert ctl.ok("get", "compute/name", "--vm", "db-1") == "db-1"
        ctl.ok("set", "compute/zone", '"2"', "--vm", "db-1")
        assert ctl.ok("get", "compute/zone", "--vm", "db-1") == "2"
        assert ctl.ok("get", "compute/zone") == ""  # the profile's own VM is untouched
        assert ctl.ok("events", "schedule", "Reboot", "--vm", "db-1")["resources"] == ["db-1"]  # type: ignore[index]
        assert ctl.ok("events", "list")["events"] == []  # type: ignore[index]
        assert ctl.fails(1, "get", "--vm", "nobody") == "azimds: no VM named 'nobody'"
        walked = ctl.ok("fleet", "walk", "web", "--type", "Reboot", "--gap", "1800")["events"]  # type: ignore[index]
        assert [(e["resources"], e["status"]) for e in walked] == [(["web_0", "web_2"], "Scheduled")]
        ctl.ok("clock", "--advance", "1860")  # domain 0 started at 15 min and was done at 25; domain 1 is out at 30
        now = ctl.ok("events", "list", "--vm", "web_1")["events"]  # type: ignore[index]
        assert [(e["type"], e["resources"], e["status"]) for e in now] == [("Reboot", ["web_1", "web_3"], "Scheduled")]
        assert ctl.fails(1, "fleet", "walk", "nope") == "azimds: no scale set named 'nope'"


def test_fleet_list_pages_through_the_vms(tmp_path: Path) -> None:
    profile = tmp_path / "fleet.yaml"
    profile.write_text(FLEET)
    with emulated(tmp_path, profile, clock="manual") as ctl:
        whole = ctl.ok("fleet", "list")
        assert [vm["name"] for vm in whole["vms"]] == ["jump-1", "db-1", "web_0", "web_1", "web_2", "web_3"]  # type: ignore[index]
        assert whole["total"] == 6 and whole["sets"] == [  # type: ignore[index]
            {"name": "web", "kind": "scaleSet", "size": 4, "faultDomains": 5, "updateDomains": 2,
             "addresses": "127.1.0.0"}]
        web_3 = whole["vms"][-1]  # type: ignore[index]
        assert (web_3["addresses"], web_3["faultDomain"], web_3["updateDomain"]) == (["127.1.0.3"], "3", "1")
        assert whole["vms"][1]["addresses"] == ["127.0.0.2"] and whole["vms"][0]["addresses"] == []  # type: ignore[index]
        page = ctl.ok("fleet", "list", "--offset", "1", "--limit", "2")
        assert (page["offset"], [vm["name"] for vm in page["vms"]]) == (1, ["db-1", "web_0"])  # type: ignore[index]
        assert ctl.ok("fleet", "list", "--offset", "6")["vms"] == []  # type: ignore[index]
        refused = "azimds: limit is a whole number from 1 to 1000, not '0'"
        assert ctl.fails(2, "fleet", "list", "--limit", "0") == refused


def test_reboot_shows_a_scale_set_instance_its_changed_tags(tmp_path: Path) -> None:
    profile = tmp_path / "fleet.yaml"
    profile.write_text(FLEET)
    with emulated(tmp_path, profile, clock="manual") as ctl:
        ctl.ok("tags", "tier=api", "--vm", "web_2")
        assert ctl.ok("get", "compute/tags", "--vm", "web_2") == ""  # waits for a reboot
        assert ctl.ok("reboot", "--vm", "web_2") is None
        assert ctl.ok("get", "compute/tags", "--vm", "web_2") == "tier:api"
        assert ctl.fails(1, "reboot", "--vm", "nobody") == "azimds: no VM named 'nobody'"


# -- token and connection ----------------------------------------------------------------------------------

@pytest.mark.parametrize("operation", [["set", "compute/name", '"x"'], ["events", "schedule", "Reboot"],
                                       ["clock", "--advance", "60"], ["tags", "a=b"], ["reset"],
                                       ["faults", "add", "*=status:500"], ["get"]])
def test_a_wrong_token_exits_2_and_changes_nothing(unchanged: Ctl, operation: list[str]) -> None:
    before, clock = unchanged.ok("get"), unchanged.ok("clock")
    line = unchanged.fails(2, "--token", "wrong", *operation)
    assert line == f"azimds: the control plane at {unchanged.control} refused the token from --token"
    assert (unchanged.ok("get"), unchanged.ok("clock"), unchanged.ok("faults", "list")) == (
        before, clock, {"faults": []})
    assert fetch(unchanged.url, SE).json() == {"DocumentIncarnation": 1, "Events": []}


def test_token_and_control_plane_from_the_environment(ctl: Ctl, tmp_path: Path) -> None:
    env = {**os.environ, "AZIMDS_CONTROL": ctl.control, "AZIMDS_CONTROL_TOKEN": ctl.token(),
           "XDG_STATE_HOME": str(tmp_path), "HOME": str(tmp_path)}
    done = azimds_inprocess("ctl", "get", "compute/name", env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, '"web-01"\n', "")
    env["AZIMDS_CONTROL_TOKEN"] = "wrong"  # --state-dir, named on the command line, wins over the variable
    assert ctl.run("get", "compute/name", env=env).stdout == '"web-01"\n'
    done = azimds_inprocess("ctl", "get", env=env)
    assert done.stderr == f"azimds: the control plane at {ctl.control} refused the token from $AZIMDS_CONTROL_TOKEN\n"


def test_the_token_file_in_the_default_state_directory(ctl: Ctl, tmp_path: Path) -> None:
    """End to end: a real ``azimds ctl`` process finds the token where serve writes it by default."""
    state = tmp_path / "azimds"
    env = {key: value for key, value in os.environ.items() if key != "AZIMDS_CONTROL_TOKEN"}
    env.update(XDG_STATE_HOME=str(tmp_path), AZIMDS_CONTROL=ctl.control)
    done = azimds_process("ctl", "get", "compute/name", env=env, timeout=30)
    assert done.returncode == 2
    assert done.stderr == (f"azimds: no control token: {state}/control-token does not exist; give --token, set "
                           "$AZIMDS_CONTROL_TOKEN, or point --state-dir at the state directory of the running "
                           "azimds serve\n")
    state.mkdir()
    (state / "control-token").write_text(ctl.token() + "\n")
    done = azimds_process("ctl", "get", "compute/name", env=env, timeout=30)
    assert (done.returncode, done.stdout) == (0, '"web-01"\n')


def test_the_default_state_directory_is_the_one_serve_uses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert ctl_module.default_state_dir() == str(default_state_dir()) == f"{tmp_path}/.local/state/azimds"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert ctl_module.default_state_dir() == str(default_state_dir()) == f"{tmp_path}/xdg/azimds"


def test_no_control_plane_exits_2(tmp_path: Path) -> None:
    done = azimds_inprocess("ctl", "--control", "http://127.0.0.1:9", "--token", "t", "reset")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "azimds: no answer from the control plane at http://127.0.0.1:9: Connection refused\n"


@pytest.mark.parametrize("url", ["ftp://h:1", "http://h:1/v1", "http://h:port", "127.0.0.1:8170"])
def test_a_bad_control_url_exits_2(url: str) -> None:
    done = azimds_inprocess("ctl", "--control", url, "--token", "t", "get")
    assert (done.returncode, done.stderr) == (2, f"azimds: a control plane URL is http://HOST[:PORT], not {url!r}\n")


# -- help and start-up -------------------------------------------------------------------------------------

OPERATIONS = [["get"], ["set"], ["patch"], ["delete"], ["tags"], ["events", "list"], ["events", "schedule"],
              ["events", "approve"], ["events", "start"], ["events", "complete"], ["events", "cancel"], ["clock"],
              ["faults", "list"], ["faults", "add"], ["faults", "clear"], ["journal"], ["reset"], ["reload"],
              ["metrics"], ["openapi"], ["fleet", "list"], ["fleet", "walk"]]


@pytest.mark.parametrize("operation", OPERATIONS, ids=" ".join)
def test_every_operation_has_help(operation: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        ctl_module.main([*operation, "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith(f"usage: azimds ctl {' '.join(operation)} ")
    assert "--control URL" in out and "--token TOKEN" in out and "exit codes: 0 success" in out


def test_ctl_is_listed_by_azimds_help() -> None:
    done = azimds_inprocess("--help")
    assert done.returncode == 0
    assert re.search(r"^    ctl +steer a running emulator", done.stdout, re.MULTILINE)


# -- end to end: real ``azimds ctl`` processes against a real ``azimds serve`` ----------------------------------

def test_end_to_end_a_ctl_process_prints_the_answer(unchanged: Ctl) -> None:
    process = unchanged.as_process()
    done = process.run("get", "compute/osProfile", "--pretty")
    assert (done.returncode, done.stderr) == (0, "") and done.stdout.startswith('{\n  "adminUsername": "azureuser"')
    assert process.ok("get") == unchanged.ok("get")  # the same answer out of process as in it


def test_end_to_end_a_refusal_exits_2(unchanged: Ctl) -> None:
    before = unchanged.ok("get")
    line = unchanged.as_process().fails(2, "--token", "wrong", "set", "compute/name", '"x"')
    assert line == f"azimds: the control plane at {unchanged.control} refused the token from --token"
    assert unchanged.ok("get") == before


def test_end_to_end_a_missing_node_exits_1(unchanged: Ctl) -> None:
    assert unchanged.as_process().fails(1, "get", "compute/nope") == "azimds: no such node: compute/nope"


def test_ctl_imports_nothing_heavy(unchanged: Ctl) -> None:
    done = subprocess.run([AZIMDS[0], "-X", "importtime", *AZIMDS[1:], "ctl", "--control", unchanged.control,
                           "--state-dir", unchanged.state_dir, "events", "list"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "azimds.cli.ctl" in imported
    assert not imported & {"pydantic", "yaml", "httptools", "uvloop", "asyncio", "cryptography", "urllib3",
                           "azimds.emulator.model", "azimds.emulator.service", "azimds.emulator.world",
                           "azimds.emulator.control", "azimds.emulator.app", "typing"}
