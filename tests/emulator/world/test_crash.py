"""Nothing acknowledged is lost, for any VM of a fleet: 100 ``kill -9`` at random moments while the control plane
changes the first VM, explicit VMs, scale-set members and shared event books; after each restart on the same
state, every change that was answered 2xx is there. Against both engines: SQLite (100 rounds,
AZIMDS_CRASH_ROUNDS) and PostgreSQL (30 rounds, AZIMDS_CRASH_ROUNDS_PG)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
from pathlib import Path

from tests.support import AZIMDS, fetch

ROUNDS = int(os.environ.get("AZIMDS_CRASH_ROUNDS", "100"))
ROUNDS_PG = int(os.environ.get("AZIMDS_CRASH_ROUNDS_PG", "30"))
FLEET = {
    "compute": {"name": "first"},
    "fleet": {"vms": [{"addresses": ["127.0.0.2"], "availabilitySet": "db", "compute": {"name": "db-1"}},
                      {"addresses": ["127.0.0.3"], "availabilitySet": "db", "compute": {"name": "db-2"}}],
              "scaleSets": [{"name": "web", "capacity": 40, "addresses": "127.1.0.0", "subnet": "10.1.0.0/24"}]},
    "azimds": {"scaleSetTags": "immediate"},  # what is kept is the question here, not when instances show it
}
VMS = ["first", "db-1", "db-2", *(f"web_{i}" for i in range(40))]


class Server:
    def __init__(self, profile: Path, state: Path, *extra: str) -> None:
        self.proc = subprocess.Popen([*AZIMDS, "serve", "--port", "0", "--control-port", "0", "--rate-limit", "0",
                                      "--profile", str(profile), "--state-dir", str(state), "--clock", "manual",
                                      *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        ready = self.proc.stdout.readline()
        control = ""
        while ready and not control.startswith("azimds: control plane"):
            control = self.proc.stderr.readline()
        found = re.match(r"azimds: serving (http://[^/]+)/metadata", ready), re.match(r"azimds: control plane (\S+)",
                                                                                     control)
        assert found[0] and found[1], (ready, control, self.proc.stderr.read())
        self.url, self.control = found[0].group(1), found[1].group(1)
        self.token = (state / "control-token").read_text().strip()

    def change(self, method: str, path: str, body: object) -> int | None:
        """The status of a control-plane change, or None when the connection died (not acknowledged)."""
        try:
            reply = fetch(self.control, path, method=method, body=json.dumps(body).encode(), metadata=False,
                          headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        except OSError:
            return None
        return reply.status


def test_a_hundred_kill_9_lose_nothing_acknowledged(tmp_path, capsys, state_args):
    rounds = ROUNDS_PG if state_args else ROUNDS
    profile = tmp_path / "fleet.json"
    profile.write_text(json.dumps(FLEET))
    state = tmp_path / "state"
    rng = random.Random(20261128)
    tags: dict[str, str] = {}  # VM -> the value of its "n" tag last acknowledged
    later: dict[str, set[str]] = {}  # VM -> values sent after it that were not answered (each may have landed)
    events: dict[str, str] = {}  # event id -> the VM it was scheduled for (acknowledged)
    counter = acknowledged = 0
    for _ in range(rounds):
        server = Server(profile, state, *state_args)
        killer = threading.Timer(rng.uniform(0.0, 0.15), server.proc.send_signal, args=(signal.SIGKILL,))
        killer.start()
        while server.proc.poll() is None:
            counter += 1
            vm = rng.choice(VMS)
            if rng.random() < 0.75:
                value = str(counter)
                if server.change("PUT", f"/v1/tags?vm={vm}", {"n": value}) == 200:
                    tags[vm] = value
                    later[vm] = set()
                    acknowledged += 1
                else:  # not acknowledged: it may have been kept or not, but nothing before it may be lost
                    later.setdefault(vm, set()).add(value)
            else:
                event_id = f"00000000-0000-4000-8000-{counter:012d}"
                resources = [vm] if not vm.startswith("web_") else [vm, rng.choice(VMS[3:])]
                body = {"type": "Freeze", "eventId": event_id, "resources": resources, "notice": 86400}
                if server.change("POST", f"/v1/events?vm={vm}", body) == 201:
                    events[event_id] = vm
                    acknowledged += 1
        killer.join()
        server.proc.wait()
    final = Server(profile, state, *state_args)
    try:
        lost_tags = {}
        for vm, value in tags.items():
            kept = json.loads(_control_get(final, f"/v1/metadata/compute/tags?vm={vm}"))
            if kept not in {f"n:{v}" for v in {value} | later.get(vm, set())}:
                lost_tags[vm] = (value, kept)
        books: dict[str, set[str]] = {}
        lost_events = []
        for event_id, vm in events.items():
            if vm not in books:
                books[vm] = {e["eventId"] for e in json.loads(_control_get(final, f"/v1/events?vm={vm}"))["events"]}
            if event_id not in books[vm]:
                lost_events.append(event_id)
        assert (lost_tags, lost_events) == ({}, []), f"{len(lost_tags)} tags and {len(lost_events)} events lost"
        assert len(tags) > 20 and len(events) > 20  # the test changed enough to mean something
        with capsys.disabled():
            print(f"\ncrash test ({'postgresql' if state_args else 'sqlite'}): {rounds} kill -9, {acknowledged} "
                  f"changes acknowledged ({len(tags)} VMs' tags, {len(events)} events), 0 lost")
        seen = fetch(final.url, "/metadata/instance/compute/tags?api-version=2021-02-01&format=text",
                     source="127.0.0.2").body.decode()
        assert "db-1" not in tags or seen in {f"n:{v}" for v in {tags["db-1"]} | later.get("db-1", set())}
    finally:
        final.proc.kill()
        final.proc.wait()


def _control_get(server: Server, path: str) -> str:
    reply = fetch(server.control, path, metadata=False, headers={"Authorization": f"Bearer {server.token}"})
    assert reply.status == 200, (path, reply)
    return reply.body.decode()
