"""Scenarios from a profile and from `serve --scenario FILE`, replayed by a manual clock."""

from __future__ import annotations

import json
import re
import subprocess

from azimds import Emulator
from tests.support import AZIMDS, fetch

SE = "/metadata/scheduledevents?api-version=2020-07-01"


def test_profile_scenarios_replay_on_a_manual_clock():
    profile = {"compute": {"name": "db-1"},
               "scenarios": [{"in": "2m", "type": "Freeze", "durationInSeconds": 5},
                             {"in": "1h", "type": "Reboot", "source": "User", "notice": "5m"}]}
    with Emulator(profile, clock="manual") as imds:
        doc = fetch(imds.url, SE).json()
        assert [e["EventType"] for e in doc["Events"]] == ["Freeze"] and doc["Events"][0]["Resources"] == ["db-1"]

        def advance(seconds):
            fetch(imds.control_url, "/v1/clock", method="POST", metadata=False,
                  headers={"Authorization": f"Bearer {imds.token}"}, body=json.dumps({"advance": seconds}).encode())

        advance(125)  # Started at 2 min; gone 5 minutes later, whatever its 5 s of impact
        assert fetch(imds.url, SE).json()["Events"][0]["EventStatus"] == "Started"
        advance(300)
        assert fetch(imds.url, SE).json() == {"DocumentIncarnation": 4, "Events": []}
        advance(50 * 60)  # 57 min after start: the Reboot was published at 55 min
        [reboot] = fetch(imds.url, SE).json()["Events"]
        assert (reboot["EventType"], reboot["EventSource"], reboot["EventStatus"]) == ("Reboot", "User", "Scheduled")


def test_serve_scenario_file(serve, tmp_path):
    path = tmp_path / "day.yaml"
    path.write_text("scenarios:\n  - {in: 30s, type: Preempt}\n")
    proc = serve("--scenario", str(path), "--clock", "manual")
    [event] = fetch(proc.url, SE).json()["Events"]
    assert event["EventType"] == "Preempt"


def test_bad_scenarios_stop_serve(tmp_path):
    path = tmp_path / "vm.json"
    path.write_text(json.dumps({"scenarios": [{"in": "2m", "type": "Nap"}]}))
    run = subprocess.run([*AZIMDS, "serve", "--port", "0", "--profile", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 2 and re.search(r"vm\.json: scenarios\[0\]\.type: Input should be 'Freeze'", run.stderr)
