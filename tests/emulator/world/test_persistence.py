"""Nothing acknowledged is lost: control-plane changes survive SIGKILL at random points and a restart, with the
world kept by either engine (SQLite in the state directory, or PostgreSQL)."""

from __future__ import annotations

import json
import random
import re
import signal
import threading

from tests.support import ServeProcess, fetch


def control_url(proc: ServeProcess) -> str:
    line = proc.proc.stderr.readline()
    return re.search(r"control plane (http://\S+)", line).group(1)


def start(state_dir: str, *extra: str) -> tuple[ServeProcess, str]:
    proc = ServeProcess("--state-dir", state_dir, "--clock", "manual", "--rate-limit", "0",
                        "--control-token", "secret", *extra)
    return proc, control_url(proc)


def change(ctl: str, method: str, path: str, body) -> int | None:
    """The status of a control-plane request, or None when the server died before answering."""
    try:
        return fetch(ctl, path, method=method, metadata=False, body=json.dumps(body).encode(),
                     headers={"Authorization": "Bearer secret"}).status
    except (ConnectionError, OSError, Exception):  # noqa: BLE001 - any failure means "not acknowledged"
        return None


def test_two_hundred_changes_survive_sigkill_at_random_points(tmp_path, state_args):
    rng = random.Random(20261122)
    state = str(tmp_path / "state")
    proc, ctl = start(state, *state_args)
    acked_keys: list[int] = []
    acked_events: list[str] = []
    advanced = 0.0
    clock_start = None
    kills = 0
    try:
        clock_start = json.loads(fetch(ctl, "/v1/clock", metadata=False,
                                       headers={"Authorization": "Bearer secret"}).body)["now"]
        for i in range(200):
            killer = None
            if rng.random() < 0.04:  # now and then, SIGKILL while this change is in flight
                killer = threading.Timer(rng.random() * 0.004, proc.proc.send_signal, (signal.SIGKILL,))
                killer.start()
            kind = i % 10
            if kind == 3:
                event_id = f"00000000-0000-4000-8000-{i:012d}"
                status = change(ctl, "POST", "/v1/events", {"type": "Reboot", "eventId": event_id})
                if status == 201:
                    acked_events.append(f"00000000-0000-4000-8000-{i:012d}")
            elif kind == 7:
                status = change(ctl, "POST", "/v1/clock", {"advance": 1})
                if status == 200:
                    advanced += 1
            else:
                index = len(acked_keys)
                status = change(ctl, "PUT", f"/v1/metadata/compute/publicKeys/{index}",
                                {"keyData": f"ssh-rsa key-{i}", "path": f"/home/u{i}/.ssh/authorized_keys"})
                if status == 200:
                    acked_keys.append(i)
            if killer is not None:
                killer.join()
            if proc.proc.poll() is not None or killer is not None:
                proc.proc.kill()
                proc.proc.wait()
                kills += 1
                proc, ctl = start(state, *state_args)
                acked_keys, acked_events, advanced = check(proc, ctl, acked_keys, acked_events, clock_start, advanced)
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()
        proc, ctl = start(state, *state_args)
        check(proc, ctl, acked_keys, acked_events, clock_start, advanced)
    finally:
        proc.proc.kill()
        proc.proc.wait()
    assert kills >= 3 and len(acked_keys) > 150


def check(proc: ServeProcess, ctl: str, keys: list[int], events: list[str], clock_start: float,
          advanced: float) -> tuple[list[int], list[str], float]:
    """Every acknowledged change is there. The change in flight at the kill may or may not have landed
    (it was never acknowledged); what is there is returned as the new truth."""
    compute = fetch(proc.url, "/metadata/instance/compute?api-version=2021-02-01").json()
    stored = [int(k["keyData"].rpartition("-")[2]) for k in compute["publicKeys"]
              if k["keyData"].startswith("ssh-rsa key-")]
    assert stored[:len(keys)] == keys and len(stored) - len(keys) <= 1
    doc = fetch(proc.url, "/metadata/scheduledevents?api-version=2020-07-01").json()
    stored_events = [e["EventId"] for e in doc["Events"]]
    assert stored_events[:len(events)] == events and len(stored_events) - len(events) <= 1
    assert doc["DocumentIncarnation"] == 1 + len(stored_events)
    now = json.loads(fetch(ctl, "/v1/clock", metadata=False, headers={"Authorization": "Bearer secret"}).body)["now"]
    assert abs(now - (clock_start + advanced)) < 1e-3 or abs(now - (clock_start + advanced + 1)) < 1e-3
    return stored, stored_events, round(now - clock_start)
