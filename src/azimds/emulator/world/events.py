"""Scheduled events: the maintenance a VM is told about, and the lifecycle Azure drives it through.

An event is Scheduled (with at least the real minimum notice for its type), then Started when every VM it
lists has approved it or its NotBefore has passed, then gone once its impact is over. Transitions are
computed from the clock when the book is read, in time order, each one bumping DocumentIncarnation, so
a manual clock moved by an hour replays the hour exactly and nothing needs a background timer.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from typing import Any, Callable, Iterable

__all__ = ["Event", "EventBook", "EventError", "TYPES", "render_document"]

TYPES = ("Freeze", "Reboot", "Redeploy", "Preempt", "Terminate")
SOURCES = ("Platform", "User")

#: The api-version that introduced each event type and each field (spec §3.2, §8.1).
TYPE_SINCE = {"Freeze": "2017-03-01", "Reboot": "2017-03-01", "Redeploy": "2017-03-01",
              "Preempt": "2017-11-01", "Terminate": "2019-01-01"}
FIELD_SINCE = {"Description": "2019-04-01", "EventSource": "2019-08-01", "DurationInSeconds": "2020-07-01"}

#: Minimum notice (seconds between publication and NotBefore) per type, as Azure gives it.
MIN_NOTICE = {"Freeze": 900, "Reboot": 900, "Redeploy": 600, "Preempt": 30, "Terminate": 300}
#: DurationInSeconds per type when not given: expected impact; -1 unknown (reboots, redeploys).
DEFAULT_DURATION = {"Freeze": 5, "Reboot": -1, "Redeploy": -1, "Preempt": -1, "Terminate": -1}
#: How long an event stays Started when its duration is unknown (-1) or 0 (median values Azure shows).
DEFAULT_ACTIVE = {"Freeze": 300, "Reboot": 600, "Redeploy": 600, "Preempt": 120, "Terminate": 600}

_DESCRIPTIONS = {
    ("Freeze", "Platform"): "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
    ("Reboot", "Platform"): "Host server is undergoing maintenance.",
    ("Reboot", "User"): "Virtual machine is going to be restarted as requested by authorized user.",
    ("Redeploy", "Platform"): "Host server is undergoing maintenance.",
    ("Redeploy", "User"): "Virtual machine is going to be redeployed as requested by authorized user.",
}
FAILURE_DESCRIPTION = "Host server is undergoing an emergency repair."


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a method under the book's lock: the control plane and tests change a book the server reads."""
    @functools.wraps(method)
    def wrapper(self: "EventBook", *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)
    return wrapper


class EventError(ValueError):
    """A request about events that cannot be honoured; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Event:
    """One scheduled event. Times are emulated epoch seconds."""

    id: str
    type: str
    resources: list[str]
    source: str = "Platform"
    description: str = ""
    duration: int = -1  # DurationInSeconds on the wire
    status: str = "Scheduled"
    published: float = 0.0
    not_before: float = 0.0
    active: float = 600.0  # seconds Started lasts before the event is gone
    started: float | None = None
    approvals: list[str] = field(default_factory=list)
    approval: str = "any"  # "any": one listed VM's approval starts it for all; "all": every listed VM must

    def next_transition(self) -> float:
        return self.not_before if self.status == "Scheduled" else (self.started or 0.0) + self.active

    def wire(self, version: str, prefix: str = "") -> dict[str, Any]:
        """The event as the real service writes it, keys in its fixed order, gated by version."""
        out: dict[str, Any] = {
            "EventId": self.id, "EventStatus": self.status, "EventType": self.type,
            "ResourceType": "VirtualMachine", "Resources": [prefix + r for r in self.resources],
            "NotBefore": "" if self.status == "Started" else formatdate(self.not_before, usegmt=True),
        }
        extra = {"Description": self.description, "EventSource": self.source, "DurationInSeconds": self.duration}
        for key, value in extra.items():
            if FIELD_SINCE[key] <= version:
                out[key] = value
        return out


class EventBook:
    """The events one VM (or one availability set / scale set) can see, and DocumentIncarnation.

    Every change goes through a method here and is reported to ``on_change`` (the persistence hook)
    before the method returns.
    """

    def __init__(self, clock: Callable[[], float], incarnation: int = 1, events: Iterable[Event] = (),
                 on_change: Callable[["EventBook"], None] | None = None):
        self.clock = clock
        self.incarnation = incarnation
        self.events: dict[str, Event] = {e.id: e for e in events}
        self.on_change = on_change
        self.pending: list[dict[str, Any]] = []  # scenario events not yet published: {"publish": t, ...}
        self.lock = threading.RLock()

    # -- reading ------------------------------------------------------------------------------------
    @_locked
    def current(self) -> list[Event]:
        """Events as of now, after applying every transition that is due."""
        self.catch_up()
        return list(self.events.values())

    @_locked
    def catch_up(self) -> None:
        now = self.clock()
        changed = False
        while True:
            due = [e for e in self.events.values() if e.next_transition() <= now]
            publish = min((p for p in self.pending if p["publish"] <= now), key=lambda p: p["publish"], default=None)
            if publish is not None and (not due or publish["publish"] <= min(e.next_transition() for e in due)):
                self.pending.remove(publish)
                self._publish(publish)
                changed = True
                continue
            if not due:
                break
            event = min(due, key=lambda e: (e.next_transition(), e.published, e.id))
            when = event.next_transition()
            if event.status == "Scheduled":
                event.status, event.started = "Started", when
            else:
                del self.events[event.id]
            self.incarnation += 1
            changed = True
        if changed:
            self._changed()

    @_locked
    def document(self, version: str, resource_prefix: str = "") -> dict[str, Any]:
        events = [e.wire(version, resource_prefix) for e in self.current() if TYPE_SINCE[e.type] <= version]
        return {"DocumentIncarnation": self.incarnation, "Events": events}

    # -- changing -----------------------------------------------------------------------------------
    @_locked
    def plan(self, item: dict[str, Any]) -> None:
        """Queue a scenario event: published at ``publish`` (emulated epoch seconds) with the other keys
        as ``schedule`` takes them (``not_before`` absolute)."""
        self.pending.append(dict(item))
        self.pending.sort(key=lambda p: p["publish"])
        self._changed()

    def _publish(self, item: dict[str, Any]) -> None:
        kwargs = {k: v for k, v in item.items() if k != "publish"}
        kwargs.setdefault("not_before", None)
        try:  # as of its own time, even when the book catches up later
            self._schedule(**kwargs, now=item["publish"])
        except EventError:
            pass  # a planned event that can no longer be valid (its id taken) is dropped

    @_locked
    def schedule(self, type: str, resources: list[str], *, source: str = "Platform", not_before: float | None = None,
                 notice: float | None = None, duration: int | None = None, active: float | None = None,
                 description: str | None = None, event_id: str | None = None, started: bool = False,
                 approval: str = "any") -> Event:
        """Publish an event now. ``started=True`` makes it appear directly as Started (a hardware failure)."""
        self.catch_up()
        return self._schedule(type, resources, source=source, not_before=not_before, notice=notice,
                              duration=duration, active=active, description=description, event_id=event_id,
                              started=started, approval=approval)

    def _schedule(self, type: str, resources: list[str], *, source: str = "Platform", not_before: float | None = None,
                  notice: float | None = None, duration: int | None = None, active: float | None = None,
                  description: str | None = None, event_id: str | None = None, started: bool = False,
                  approval: str = "any", now: float | None = None) -> Event:
        if type not in TYPES:
            raise EventError(f"event type must be one of {', '.join(TYPES)}, not {type!r}")
        if source not in SOURCES:
            raise EventError(f"event source must be Platform or User, not {source!r}")
        if not resources or not all(isinstance(r, str) and r for r in resources):
            raise EventError("an event needs at least one resource (VM name)")
        if approval not in ("any", "all"):
            raise EventError(f"approval must be 'any' or 'all', not {approval!r}")
        now = self.clock() if now is None else now
        if not_before is not None and notice is not None:
            raise EventError("give notBefore or notice, not both")
        if notice is not None and notice < 0:
            raise EventError(f"notice must be 0 or more seconds, not {notice}")
        if not_before is None:
            not_before = now + (MIN_NOTICE[type] if notice is None else notice)
        if not started and not_before < now:
            raise EventError("notBefore is in the past")
        duration = DEFAULT_DURATION[type] if duration is None else int(duration)
        if duration < -1:
            raise EventError(f"durationInSeconds must be -1 (unknown) or more, not {duration}")
        if active is None:
            active = float(duration) if duration > 0 else float(DEFAULT_ACTIVE[type])
        if active < 0:
            raise EventError(f"active must be 0 or more seconds, not {active}")
        event_id = (event_id or str(uuid.uuid4())).upper()
        if event_id in self.events:
            raise EventError(f"event {event_id} exists already", 409)
        if description is None:
            description = FAILURE_DESCRIPTION if started else _DESCRIPTIONS.get((type, source), "")
        event = Event(event_id, type, list(resources), source, description, duration,
                      "Started" if started else "Scheduled", now, now if started else not_before, active,
                      now if started else None, approval=approval)
        self.events[event_id] = event
        self.incarnation += 1
        self._changed()
        return event

    @_locked
    def approve(self, event_id: str, by: str | None = None) -> Event:
        """Record an approval (``by=None``: on behalf of every listed VM). The event starts at once when
        its approval rule is met: any listed VM's approval, or (``approval="all"``) every listed VM's."""
        event = self._get(event_id)
        if event.status == "Scheduled":
            approvers = set(event.approvals) | ({by} if by else set(event.resources))
            event.approvals = sorted(approvers)
            enough = set(event.resources) <= approvers if event.approval == "all" \
                else bool(approvers & set(event.resources))
            if enough:
                self._start(event)
            else:
                self._changed()
        return event

    @_locked
    def clear(self) -> None:
        """Remove every event; each removal is a change, so DocumentIncarnation still only grows."""
        for event in list(self.events.values()):
            self._remove(event)

    @_locked
    def start(self, event_id: str) -> Event:
        event = self._get(event_id)
        if event.status != "Scheduled":
            raise EventError(f"event {event_id} has started already", 409)
        self._start(event)
        return event

    @_locked
    def complete(self, event_id: str) -> None:
        event = self._get(event_id)
        if event.status != "Started":
            raise EventError(f"event {event_id} has not started; cancel it instead", 409)
        self._remove(event)

    @_locked
    def cancel(self, event_id: str) -> None:
        event = self._get(event_id)
        if event.status != "Scheduled":
            raise EventError(f"event {event_id} has started and can no longer be cancelled", 409)
        self._remove(event)

    def _get(self, event_id: str) -> Event:
        self.catch_up()
        event = self.events.get(str(event_id).upper())
        if event is None:
            raise EventError(f"no event {event_id}", 404)
        return event

    def _start(self, event: Event) -> None:
        event.status, event.started = "Started", self.clock()
        self.incarnation += 1
        self._changed()

    def _remove(self, event: Event) -> None:
        del self.events[event.id]
        self.incarnation += 1
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    # -- persistence --------------------------------------------------------------------------------
    @_locked
    def to_json(self) -> str:
        return json.dumps({"incarnation": self.incarnation, "events": [asdict(e) for e in self.events.values()],
                           "pending": self.pending}, sort_keys=True)

    @_locked
    def load_json(self, text: str) -> None:
        data = json.loads(text)
        self.incarnation = max(self.incarnation, int(data["incarnation"]))
        self.events = {e["id"]: Event(**e) for e in data["events"]}
        self.pending = data.get("pending", [])


def render_document(doc: dict[str, Any]) -> bytes:
    """Compact JSON in the real service's fixed key order (not sorted, unlike the instance document)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- scenarios ----------------------------------------------------------------------------------------------

_SCENARIO_KEYS = {"in", "at", "type", "resources", "source", "notice", "durationInSeconds", "active", "description",
                  "eventId", "started"}


def parse_offset(text: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"2m"``, ``"1h30m"``; ValueError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        import re

        match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", str(text))
        if not match or not any(match.groups()):
            raise ValueError(f"an offset is seconds or like '2m', '1h30m', '90s', not {text!r}")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds < 0:
        raise ValueError(f"an offset must be 0 or more, not {text!r}")
    return seconds


def parse_when(text: Any, start: float) -> float:
    """``"10:00"`` (the next such UTC time of day, emulated) or an ISO 8601 time, as epoch seconds."""
    from datetime import datetime, timedelta, timezone

    value = str(text).strip()
    try:
        if len(value) <= 8 and ":" in value:
            clock = datetime.strptime(value, "%H:%M:%S" if value.count(":") == 2 else "%H:%M").time()
            base = datetime.fromtimestamp(start, timezone.utc)
            when = datetime.combine(base.date(), clock, timezone.utc)
            if when.timestamp() < start:
                when += timedelta(days=1)
            return when.timestamp()
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'at' is a UTC time of day like '10:00' or an ISO 8601 time, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def scenario_plan(entries: list[dict[str, Any]], start: float, default_resource: str) -> list[dict[str, Any]]:
    """Turn scenario entries into ``EventBook.plan`` items. Raises ValueError naming the entry and problem."""
    plan = []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise ValueError("a scenario entry is a mapping")
            unknown = set(entry) - _SCENARIO_KEYS
            if unknown:
                raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
            if ("in" in entry) == ("at" in entry):
                raise ValueError("give exactly one of 'in' (an offset from start) and 'at' (a time)")
            kind = entry.get("type")
            if kind not in TYPES:
                raise ValueError(f"type must be one of {', '.join(TYPES)}, not {kind!r}")
            not_before = start + parse_offset(entry["in"]) if "in" in entry else parse_when(entry["at"], start)
            notice = parse_offset(entry.get("notice", MIN_NOTICE[kind]))
            started = bool(entry.get("started", False))
            item: dict[str, Any] = {"publish": not_before if started else max(start, not_before - notice),
                                    "type": kind, "resources": list(entry.get("resources", [default_resource])),
                                    "source": entry.get("source", "Platform"), "started": started}
            if not started:
                item["not_before"] = not_before
            for key, name in (("durationInSeconds", "duration"), ("active", "active"),
                              ("description", "description"), ("eventId", "event_id")):
                if key in entry:
                    item[name] = entry[key]
            if item["source"] not in SOURCES:
                raise ValueError(f"source must be Platform or User, not {item['source']!r}")
        except ValueError as exc:
            raise ValueError(f"scenarios[{index}]: {exc}") from None
        plan.append(item)
    return plan
