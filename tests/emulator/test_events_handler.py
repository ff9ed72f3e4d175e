"""Microsoft's documented handler against an emulator whose clock runs 60 times as fast."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from azimds import Emulator
from tests.support import DATA, fetch

SPEED = 60  # emulated seconds per real second
# How long the approved Reboot stays Started: 1.8 s of real time. The handler polls once a second, so it sees
# the Started document at its second poll (1 s after approving, 0.8 s to spare) and the event gone at its
# third (2 s after approving: always after 1.8 s). A Reboot's default (minutes) would only make it wait.
ACTIVE = 1.8 * SPEED


def test_docs_handler_sees_a_reboot_from_scheduled_to_gone_in_seconds():
    with Emulator(clock_speed=SPEED) as imds:
        reply = fetch(imds.control_url, "/v1/events", method="POST", metadata=False,
                      headers={"Authorization": f"Bearer {imds.token}"},
                      body=json.dumps({"type": "Reboot", "active": ACTIVE}).encode())
        assert reply.status == 201, reply
        event_id = reply.json()["eventId"]
        started = time.monotonic()
        run = subprocess.run([sys.executable, str(DATA / "scheduled_events_handler.py"), imds.url],
                             capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    docs = [json.loads(line) for line in lines if line.startswith("{")]
    assert docs[0]["Events"][0]["EventStatus"] == "Scheduled" and docs[0]["Events"][0]["EventId"] == event_id
    assert f"approve {event_id} 200" in lines
    assert [d["Events"][0]["EventStatus"] for d in docs if d["Events"]][-1] == "Started"
    assert docs[-1]["Events"] == [] and lines[-1] == "done"
    incarnations = [d["DocumentIncarnation"] for d in docs]
    assert incarnations == sorted(incarnations) and incarnations[-1] == 4
    assert elapsed < 30  # the emulated reboot passes in seconds (about two)
