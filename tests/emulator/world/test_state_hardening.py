"""Nothing acknowledged is lost, for any VM of a fleet; one process per state directory; corrupt state stops
``serve`` in one line and changes nothing on disk; no accepted value breaks the service for good."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from azimds import Emulator
from tests.support import AZIMDS, fetch

FLEET = {
    "compute": {"name": "first"},
    "fleet": {"vms": [{"addresses": ["127.0.0.2"], "availabilitySet": "db", "compute": {"name": "db-1"}}],
              "scaleSets": [{"name": "web", "capacity": 50, "addresses": "127.1.0.0", "subnet": "10.1.0.0/24"}]},
    "azimds": {"scaleSetTags": "immediate"},  # what is kept is the question here, not when instances show it
}
TAGS = "/metadata/instance/compute/tags?api-version=2021-02-01&format=text"
SE = "/metadata/scheduledevents?api-version=2020-07-01"
ATTESTED = "/metadata/attested/document?api-version=2020-09-01"


class Server:
    """``azimds serve`` on a given state directory, with its control plane reachable (its token from the file
    serve writes)."""

    def __init__(self, state: Path, *args: str) -> None:
        self.proc = subprocess.Popen([*AZIMDS, "serve", "--port", "0", "--control-port", "0", "--rate-limit", "0",
                                      "--state-dir", str(state), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        ready = self.proc.stdout.readline()
        control = ""
        while ready and not control.startswith("azimds: control plane"):
            control = self.proc.stderr.readline()
        found = re.match(r"azimds: control plane (http://\S+)", control), \
            re.fullmatch(r"azimds: serving (http://[^/]+)/metadata\n", ready)
        if not all(found):
            self.proc.kill()
            raise RuntimeError(f"serve did not start: {control!r} {ready!r} {self.proc.stderr.read()}")
        self.control, self.url = found[0].group(1), found[1].group(1)  # type: ignore[union-attr]
        self.token = (state / "control-token").read_text().strip()

    def call(self, method: str, path: str, body: object = None, raw: bytes | None = None) -> tuple[int, object]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        reply = fetch(self.control, path, method=method, body=data, metadata=False,
                      headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        return reply.status, (json.loads(reply.body) if reply.body else None)

    def ok(self, method: str, path: str, body: object = None) -> object:
        status, answer = self.call(method, path, body)
        assert status in (200, 201, 204), (status, answer)
        return answer

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(state: Path, *args: str) -> Server:
        server = Server(state, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def refused(state: Path, *args: str) -> str:
    """``serve`` on ``state`` must stop with exit 2, nothing on stdout, one line on stderr: that line."""
    run = subprocess.run([*AZIMDS, "serve", "--port", "0", "--control-port", "0", "--state-dir", str(state), *args],
                         capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (2, ""), run
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    return run.stderr.rstrip("\n")


def digest(directory: Path) -> dict[str, object]:
    """What the state directory holds: every file's bytes, but the database by its rows (SQLite may fold its
    write-ahead log into the file when a connection closes, which changes bytes but nothing kept)."""
    files: dict[str, object] = {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
                                for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "lock"
                                and not p.name.startswith("state.sqlite")}
    database = directory / "state.sqlite"
    try:
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        files["rows"] = sorted(db.execute("SELECT key, value FROM state"))
        db.close()
    except sqlite3.Error:
        files["state.sqlite"] = hashlib.sha256(database.read_bytes()).hexdigest()
    return files


# -- 1. every VM of a fleet is kept ---------------------------------------------------------------------------

@pytest.mark.parametrize("stop", ["terminate", "kill -9"])
def test_every_fleet_vm_and_shared_book_survives_a_restart(servers, tmp_path, stop, state_args):
    profile = tmp_path / "fleet.json"
    profile.write_text(json.dumps(FLEET))
    state = tmp_path / "state"
    first = servers(state, "--profile", str(profile), *state_args)
    first.ok("PUT", "/v1/tags?vm=db-1", {"role": "db"})
    first.ok("PUT", "/v1/tags?vm=web_3", {"role": "web3"})
    first.ok("PUT", "/v1/tags", {"role": "first"})
    shared = first.ok("POST", "/v1/events?vm=web_7", {"type": "Freeze", "resources": ["web_7", "web_8"]})
    avset = first.ok("POST", "/v1/events?vm=db-1", {"type": "Reboot"})
    first.kill() if stop == "kill -9" else first.stop()
    again = servers(state, "--profile", str(profile), *state_args)
    assert fetch(again.url, TAGS, source="127.0.0.2").body == b"role:db"
    assert fetch(again.url, TAGS, source="127.1.0.3").body == b"role:web3"
    assert fetch(again.url, TAGS).body == b"role:first"
    assert [e["EventId"] for e in fetch(again.url, SE, source="127.1.0.9").json()["Events"]] == \
        [shared["eventId"]]  # type: ignore[index]
    assert [e["EventId"] for e in fetch(again.url, SE, source="127.0.0.2").json()["Events"]] == \
        [avset["eventId"]]  # type: ignore[index]


def test_a_changed_member_is_never_forgotten(monkeypatch):
    from azimds.emulator.world import fleet

    monkeypatch.setattr(fleet, "MAX_LIVE", 5)
    with Emulator(FLEET) as imds:
        imds.control.set_tags({"kept": "yes"}, vm="web_0")
        for index in range(1, 30):  # many others come and go
            assert fetch(imds.url, TAGS, source=f"127.1.0.{index}").status == 200
        assert fetch(imds.url, TAGS, source="127.1.0.0").body == b"kept:yes"
        assert imds.control.get("compute/tags", vm="web_0") == "kept:yes"


# -- 2. one process per state directory -----------------------------------------------------------------------

def test_a_second_serve_on_the_same_state_is_refused_and_a_killed_one_leaves_no_lock(servers, tmp_path):
    state = tmp_path / "state"
    first = servers(state)
    first.ok("PUT", "/v1/tags", {"mine": "1"})
    line = refused(state)
    assert line == (f"azimds: {state}: in use by process {first.proc.pid} (another azimds serve); stop it, or "
                    "give this one another --state-dir")
    assert fetch(first.url, TAGS).body == b"mine:1"  # the first is untouched
    assert (state / "control-token").read_text().strip() == first.token  # not overwritten
    first.kill()
    again = servers(state)  # no stale lock after kill -9
    assert fetch(again.url, TAGS).body == b"mine:1"


# -- 3. corrupt state -------------------------------------------------------------------------------------------

def made_state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    with Emulator(state_dir=state, clock="manual") as imds:
        imds.control.set_tags({"a": "b"})
        imds.control.schedule("Reboot")
        fetch(imds.url, ATTESTED)  # makes the CA
    return state


def test_garbage_truncated_and_empty_databases_stop_serve_and_stay_as_they_were(tmp_path):
    state = made_state(tmp_path)
    database = state / "state.sqlite"
    good = database.read_bytes()
    for content, problem in ((b"this is not sqlite" * 100, "not an azimds state database"),
                             (good[: len(good) // 2], ""), (b"", "an empty file, not a state database")):
        database.write_bytes(content)
        for extra in ("state.sqlite-wal", "state.sqlite-shm"):
            (state / extra).unlink(missing_ok=True)
        before = digest(state)
        line = refused(state)
        assert line.startswith(f"azimds: {database}: ") and problem in line, line
        assert digest(state) == before


@pytest.mark.parametrize("key, value, problem", [
    ("clock", '{"mode": "real"}', "row 'clock': not a clock"),
    ("clock", '{"mode": "manual", "speed": 0, "anchor": 1e300, "real_anchor": 0}', "outside what the emulator"),
    ("faults", '[{"path": "/x", "status": 99}]', "row 'faults': status"),
    ("vm/web-01", '{"instance": {"compute": {"vmId": 5}}, "loadbalancer": null}', "row 'vm/web-01'"),
    ("vm/nobody", '{"instance": {}, "loadbalancer": null}', "no VM named 'nobody'"),
    ("events/vm:web-01", '{"incarnation": "x"}', "not a saved event book"),
    ("colour", '"red"', "row 'colour': not a part of the world"),
])
def test_bad_rows_stop_serve_naming_the_row(tmp_path, key, value, problem):
    state = made_state(tmp_path)
    db = sqlite3.connect(state / "state.sqlite")
    with db:
        db.execute("UPDATE meta SET value = value + 1 WHERE name = 'version'")
        db.execute("INSERT OR REPLACE INTO state (key, value, version) VALUES (?, ?, "
                   "(SELECT value FROM meta WHERE name = 'version'))", (key, value))
    db.close()
    before = digest(state)
    line = refused(state)
    assert line.startswith(f"azimds: {state / 'state.sqlite'}: ") and problem in line, line
    assert digest(state) == before


@pytest.mark.parametrize("name", ["root.key", "token-signing.key", "intermediate.crt"])
def test_corrupt_keys_stop_serve_naming_the_file(tmp_path, name):
    state = made_state(tmp_path)
    (state / "pki" / name).write_text("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    before = digest(state)
    line = refused(state)
    assert line.startswith(f"azimds: {state / 'pki' / name}: not a usable "), line
    assert digest(state) == before


def test_state_reset_sets_the_state_aside_and_serve_starts_afresh(servers, tmp_path):
    state = made_state(tmp_path)
    (state / "state.sqlite").write_bytes(b"garbage")
    run = subprocess.run([*AZIMDS, "state", "reset", "--state-dir", str(state)], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0 and run.stderr.startswith(f"azimds: the state of {state} is now in {state}/aside-")
    aside = Path(run.stderr.split(" is now in ")[1].strip())
    assert (aside / "state.sqlite").read_bytes() == b"garbage" and (aside / "pki" / "root.key").exists()
    server = servers(state)
    assert fetch(server.url, TAGS).body != b"a:b"  # the profile's tags again


def test_serve_reset_state_flag(servers, tmp_path):
    state = made_state(tmp_path)
    (state / "pki" / "root.key").write_text("broken")
    server = servers(state, "--reset-state")
    assert fetch(server.url, ATTESTED).status == 200
    assert len(list(state.glob("aside-*"))) == 1


@pytest.mark.parametrize("directory, problem", [("/proc/1", "cannot use it as a state directory"),
                                                ("/dev/null", "not a directory")])
def test_unusable_state_directories_get_one_clear_line(directory, problem):
    line = refused(Path(directory))
    assert line.startswith(f"azimds: {directory}: ") and problem in line, line


def test_a_state_of_another_profile_is_set_aside_not_deleted(servers, tmp_path):
    state = made_state(tmp_path)
    profile = tmp_path / "other.yaml"
    profile.write_text("compute: {name: other}\n")
    server = servers(state, "--profile", str(profile))
    assert fetch(server.url, TAGS).status == 200
    [aside] = state.glob("aside-*")
    assert (aside / "state.sqlite").exists() and (state / "pki" / "root.key").exists()


def first_layout(state: Path, rows: dict[str, str]) -> None:
    """A state directory as the first azimds that kept its world left it: one table of rows, no versions."""
    state.mkdir()
    db = sqlite3.connect(state / "state.sqlite")
    with db:
        db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.executemany("INSERT INTO state (key, value) VALUES (?, ?)", rows.items())
    db.close()


def test_a_state_the_first_azimds_kept_is_brought_forward_and_kept(servers, tmp_path):
    from azimds.emulator.app import load_profile
    from azimds.emulator.world.world import fingerprint

    state = tmp_path / "state"
    clock = {"mode": "manual", "speed": 0.0, "anchor": 1_900_000_000.0, "real_anchor": 0.0}
    first_layout(state, {"profile": fingerprint(load_profile(None)), "clock": json.dumps(clock)})
    server = servers(state)
    assert server.ok("GET", "/v1/clock")["now"] == 1_900_000_000.0  # type: ignore[index]
    server.ok("POST", "/v1/clock", {"advance": 5})
    server.stop()
    assert not list(state.glob("aside-*"))
    server = servers(state)
    assert server.ok("GET", "/v1/clock")["now"] == 1_900_000_005.0  # type: ignore[index]


def test_a_state_the_first_azimds_kept_for_another_profile_is_set_aside_with_its_rows(servers, tmp_path):
    state = tmp_path / "state"
    rows = {"profile": "0" * 64, "clock": json.dumps({"mode": "real", "speed": 1.0, "anchor": 1.8e9,
                                                      "real_anchor": 1.8e9})}
    first_layout(state, rows)
    server = servers(state)
    assert fetch(server.url, TAGS).status == 200
    [aside] = state.glob("aside-*")
    db = sqlite3.connect(f"file:{aside / 'state.sqlite'}?mode=ro", uri=True)
    assert dict(db.execute("SELECT key, value FROM state")) == rows
    db.close()


# -- 4. values that would break the service for good ----------------------------------------------------------

def test_values_the_answers_cannot_hold_are_refused(servers, tmp_path):
    server = servers(tmp_path / "state", "--clock", "manual")
    assert server.call("POST", "/v1/clock", {"advance": 300000000000})[0] == 400
    assert server.call("POST", "/v1/clock", raw=b'{"advance": Infinity}')[0] == 400
    assert server.call("POST", "/v1/clock", raw=b'{"speed": NaN}')[0] == 400
    assert server.call("PUT", "/v1/tags", raw=b'{"a": "\\ud800"}')[0] == 400
    assert server.call("PUT", "/v1/metadata/compute/name", raw=b'"\\udfff"')[0] == 400
    assert server.call("POST", "/v1/events", {"type": "Reboot", "notice": 1e308})[0] == 400
    assert server.call("POST", "/v1/events", raw=b'{"type": "Reboot", "description": "\\ud800"}')[0] == 400
    for path in (ATTESTED, TAGS, SE, "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net"):
        assert fetch(server.url, path).status == 200, path
    status, _ = server.call("POST", "/v1/clock", {"advance": 253402214400 - 2e9})
    assert status in (200, 400) and fetch(server.url, ATTESTED).status == 200


def test_approving_an_id_that_is_not_text_is_a_malformed_body(shared_vm):
    reply = fetch(shared_vm.url, SE, method="POST", body=b'{"StartRequests":[{"EventId":"\\ud800"}]}')
    assert (reply.status, reply.body) == (400, b'{"error":"Bad request. The request body is malformed."}')


def test_reset_is_a_true_way_back_the_clock_included():
    with Emulator(clock="manual") as imds:
        start = imds.control.get("compute/name") and imds.world.clock.now()
        imds.control.advance(86400 * 30)
        imds.control.set_tags({"x": "y"})
        before = fetch(imds.url, SE).json()["DocumentIncarnation"]
        imds.control.reset()
        assert imds.world.clock.now() == start
        assert fetch(imds.url, TAGS).body != b"x:y"
        assert fetch(imds.url, SE).json()["DocumentIncarnation"] >= before


def test_the_clock_cannot_run_past_year_9999():
    from azimds.emulator.world.clock import LATEST, Clock

    fake = [0.0]
    clock = Clock("scaled", speed=1_000_000, start=LATEST - 10, source=lambda: fake[0])
    fake[0] = 3600.0
    assert clock.now() == LATEST
    with pytest.raises(ValueError, match="stops at 9999-12-31"):
        clock.advance(1)
