"""Scheduled events lifecycle on a manual clock: the docs' sequences, reproduced exactly."""

from __future__ import annotations

import json
import re

import pytest

from azimds.emulator.model.events import EventSpec, scenario_entries, scenario_plan
from azimds.emulator.service.endpoints.events import render_document
from azimds.emulator.world.clock import Clock
from azimds.emulator.world.events import Event, EventBook
from azimds.errors import Conflict, InvalidChange, ProfileError

T0 = 1_775_946_418.0  # Sat, 11 Apr 2026 22:26:58 GMT


def book(clock: Clock) -> EventBook:
    return EventBook(clock.now)


def schedule(events: EventBook, type: str, resources: list[str], **fields: object) -> Event:
    """Schedule as the control plane does: the fields validated as its body, then the book's own checks."""
    return events.schedule(EventSpec.from_mapping({"type": type, "resources": resources, **fields}))


def test_freeze_lifecycle_incarnations_1_to_4():
    clock = Clock("manual", start=T0)
    events = book(clock)
    docs = [events.document("2020-07-01")]
    freeze = schedule(events, "Freeze", ["vm1"], event_id="c7061bac-afdc-4513-b24b-aa5f13a16123")
    docs.append(events.document("2020-07-01"))
    clock.advance(15 * 60)  # NotBefore passes: Started
    docs.append(events.document("2020-07-01"))
    clock.advance(5)  # its 5 s of impact are over, but Azure keeps it Started for minutes
    docs.append(events.document("2020-07-01"))
    clock.advance(300 - 5)  # a live-migration Freeze is gone 5 minutes after it started
    docs.append(events.document("2020-07-01"))
    assert [d["DocumentIncarnation"] for d in docs] == [1, 2, 3, 3, 4]
    assert [len(d["Events"]) for d in docs] == [0, 1, 1, 1, 0]
    scheduled, started = docs[1]["Events"][0], docs[2]["Events"][0]
    assert scheduled == {
        "EventId": "C7061BAC-AFDC-4513-B24B-AA5F13A16123", "EventStatus": "Scheduled", "EventType": "Freeze",
        "ResourceType": "VirtualMachine", "Resources": ["vm1"], "NotBefore": "Sat, 11 Apr 2026 22:41:58 GMT",
        "Description": "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
        "EventSource": "Platform", "DurationInSeconds": 5}
    assert list(scheduled) == ["EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore",
                               "Description", "EventSource", "DurationInSeconds"]
    assert started["EventId"] == freeze.id and started["EventStatus"] == "Started" and started["NotBefore"] == ""


def test_wire_format_is_compact_fixed_order_with_integers():
    clock = Clock("manual", start=T0)
    events = book(clock)
    schedule(events, "Reboot", ["vm1"], event_id="28512af7-c957-4500-9bc4-842d6fb531e4")
    body = render_document(events.document("2020-07-01"))
    assert body.startswith(b'{"DocumentIncarnation":2,"Events":[{"EventId":"28512AF7-C957-4500-9BC4-842D6FB531E4",')
    assert body.endswith(b'"EventSource":"Platform","DurationInSeconds":-1}]}')
    assert json.loads(body)["Events"][0]["DurationInSeconds"] == -1


@pytest.mark.parametrize("version, keys", [
    ("2017-08-01", ["EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore"]),
    ("2019-04-01", ["EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore", "Description"]),
    ("2019-08-01", ["EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore", "Description",
                    "EventSource"]),
])
def test_fields_gated_by_version(version, keys):
    events = book(Clock("manual", start=T0))
    schedule(events, "Reboot", ["vm1"])
    assert list(events.document(version)["Events"][0]) == keys


def test_types_newer_than_the_version_are_left_out():
    events = book(Clock("manual", start=T0))
    schedule(events, "Terminate", ["vm1"])
    schedule(events, "Preempt", ["vm1"])
    assert [e["EventType"] for e in events.document("2017-08-01")["Events"]] == []
    assert [e["EventType"] for e in events.document("2017-11-01")["Events"]] == ["Preempt"]
    assert sorted(e["EventType"] for e in events.document("2019-01-01")["Events"]) == ["Preempt", "Terminate"]


def test_preempt_with_30_seconds_notice():
    clock = Clock("manual", start=T0)
    events = book(clock)
    schedule(events, "Preempt", ["spot_3"])
    doc = events.document("2020-07-01")
    assert doc["Events"][0]["NotBefore"] == "Sat, 11 Apr 2026 22:27:28 GMT"
    clock.advance(29)
    assert events.document("2020-07-01")["Events"][0]["EventStatus"] == "Scheduled"
    clock.advance(1)
    assert events.document("2020-07-01")["Events"][0]["EventStatus"] == "Started"
    assert events.incarnation == 3


def test_user_reboot_approved_early_starts_at_once_and_keeps_its_id():
    clock = Clock("manual", start=T0)
    events = book(clock)
    reboot = schedule(events, "Reboot", ["vm1"], source="User")
    # a user's own reboot has no description (a real VM's document, Azure/vm-scheduled-events README, 2021)
    assert events.document("2020-07-01")["Events"][0]["Description"] == ""
    clock.advance(60)
    events.approve(reboot.id, by="vm1")
    doc = events.document("2020-07-01")
    assert doc["DocumentIncarnation"] == 3
    assert doc["Events"][0]["EventStatus"] == "Started" and doc["Events"][0]["EventId"] == reboot.id
    events.approve(reboot.id, by="vm1")  # approving again is harmless
    clock.advance(600)
    assert events.document("2020-07-01") == {"DocumentIncarnation": 4, "Events": []}


def test_one_listed_vm_approving_starts_it_for_all():
    events = book(Clock("manual", start=T0))
    freeze = schedule(events, "Freeze", ["web_0", "web_1"])
    events.approve(freeze.id, by="outsider")  # a VM the event does not list does not count
    assert events.document("2020-07-01")["Events"][0]["EventStatus"] == "Scheduled"
    events.approve(freeze.id, by="web_1")
    assert events.document("2020-07-01")["Events"][0]["EventStatus"] == "Started"


def test_every_listed_vm_must_approve_when_asked():
    clock = Clock("manual", start=T0)
    events = book(clock)
    freeze = schedule(events, "Freeze", ["web_0", "web_1"], approval="all")
    events.approve(freeze.id, by="web_0")
    assert events.document("2020-07-01")["Events"][0]["EventStatus"] == "Scheduled"
    events.approve(freeze.id, by="web_1")
    assert events.document("2020-07-01")["Events"][0]["EventStatus"] == "Started"


def test_transitions_between_reads_each_count():
    clock = Clock("manual", start=T0)
    events = book(clock)
    schedule(events, "Freeze", ["vm1"])
    clock.advance(3600)  # Scheduled → Started → gone, unobserved
    assert events.document("2020-07-01") == {"DocumentIncarnation": 4, "Events": []}


def test_cancel_and_hardware_failure():
    clock = Clock("manual", start=T0)
    events = book(clock)
    redeploy = schedule(events, "Redeploy", ["vm1"])
    events.cancel(redeploy.id)
    assert events.document("2020-07-01") == {"DocumentIncarnation": 3, "Events": []}
    failure = schedule(events, "Reboot", ["vm1"], started=True)
    [event] = events.document("2020-07-01")["Events"]
    assert event["EventStatus"] == "Started" and event["NotBefore"] == "" and event["EventId"] == failure.id
    with pytest.raises(Conflict):
        events.cancel(failure.id)


def test_incarnation_never_falls_when_reloaded():
    clock = Clock("manual", start=T0)
    events = book(clock)
    schedule(events, "Reboot", ["vm1"])
    saved = events.to_json()
    again = EventBook(clock.now)
    again.load_json(saved)
    assert again.incarnation == 2 and again.document("2020-07-01") == events.document("2020-07-01")


@pytest.mark.parametrize("kwargs, message", [
    ({"type": "Explode", "resources": ["vm1"]}, "type: Input should be 'Freeze'"),
    ({"type": "Reboot", "resources": []}, "resources: List should have at least 1 item"),
    ({"type": "Reboot", "resources": ["vm1"], "source": "Admin"}, "source: Input should be 'Platform' or 'User'"),
    ({"type": "Reboot", "resources": ["vm1"], "notice": -5}, "notice: Input should be greater than or equal to 0"),
    ({"type": "Reboot", "resources": ["vm1"], "notBefore": T0 - 10}, "past"),
    ({"type": "Reboot", "resources": ["vm1"], "durationInSeconds": -7}, "durationInSeconds: Input should be greater"),
    ({"type": "Reboot", "resources": ["vm1"], "notice": 5, "notBefore": T0 + 10}, "notBefore or notice, not both"),
])
def test_bad_schedules_change_nothing(kwargs, message):
    events = book(Clock("manual", start=T0))
    with pytest.raises((ProfileError, InvalidChange), match=message):
        schedule(events, **kwargs)
    assert events.incarnation == 1 and not events.events


def test_event_ids_are_upper_case_guids():
    events = book(Clock("manual", start=T0))
    event = schedule(events, "Freeze", ["vm1"])
    assert re.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}", event.id)


def test_clock_modes():
    fake = [1000.0]
    clock = Clock("scaled", speed=60, start=0, source=lambda: fake[0])
    fake[0] += 2
    assert clock.now() == 120
    clock.set_speed(0)
    fake[0] += 100
    assert clock.now() == 120 and clock.mode == "manual"
    clock.advance(30)
    assert clock.now() == 150
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        Clock("warp")


def test_scenario_replays_a_maintenance_day():
    clock = Clock("manual", start=T0)  # 22:26:58 UTC
    events = book(clock)
    entries = scenario_entries([{"in": "2m", "type": "Freeze", "durationInSeconds": "5"},
                                {"at": "23:00", "type": "Preempt"}], "scenario.yaml")
    for planned in scenario_plan(entries, T0, "vm1"):
        events.plan(planned)
    first = events.document("2020-07-01")
    assert first["DocumentIncarnation"] == 2 and first["Events"][0]["EventType"] == "Freeze"
    assert first["Events"][0]["NotBefore"] == "Sat, 11 Apr 2026 22:28:58 GMT"
    clock.advance(120 + 300)  # the Freeze started at 22:28:58 and was gone 5 minutes later
    assert events.document("2020-07-01") == {"DocumentIncarnation": 4, "Events": []}
    clock.set_time(T0 + 33 * 60 + 2 - 30)  # 22:59:30: the Preempt is published with its 30 s notice
    [preempt] = events.document("2020-07-01")["Events"]
    assert preempt["EventType"] == "Preempt" and preempt["NotBefore"] == "Sat, 11 Apr 2026 23:00:00 GMT"


@pytest.mark.parametrize("entry, message", [
    ({"type": "Freeze"}, "exactly one of"),
    ({"in": "2m", "at": "10:00", "type": "Freeze"}, "exactly one of"),
    ({"in": "soon", "type": "Freeze"}, "an offset"),
    ({"at": "25:99", "type": "Freeze"}, "time of day"),
    ({"in": 5, "type": "Nap"}, "type: Input should be"),
    ({"in": 5, "type": "Reboot", "colour": "red"}, "unknown field"),
    ({"in": 5, "type": "Reboot", "started": "maybe"}, "true or false"),
])
def test_bad_scenarios_are_named(entry, message):
    with pytest.raises(ProfileError, match=message) as info:
        scenario_entries([entry], "scenario.yaml")
    assert "scenario.yaml: scenarios[0]" in str(info.value)
