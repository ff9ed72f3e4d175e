"""Scheduled events: the maintenance a VM is told about, and the lifecycle Azure drives it through.

An event is Scheduled (with at least the real minimum notice for its type), then Started when it is approved
(by any VM it lists, or all of them) or its NotBefore has passed, then gone once Azure is done with it: minutes
after it started, whatever its DurationInSeconds (the docs: Started to Completed about 10 minutes; Microsoft's
replayed captures: 5 minutes for a live-migration Freeze). An approved Terminate waits while another Terminate
of the same scale set is pending unapproved, and starts with it (the terminate-notification docs' "approve all
pending deletes"). Transitions are computed from the clock when the book is read, in time order, each one bumping
DocumentIncarnation, so a manual clock moved by an hour replays the hour exactly and nothing needs a background
timer.
"""

from __future__ import annotations

import functools
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from typing import Annotated, Any, Literal, NotRequired, TypeVar, cast

import pydantic
from pydantic import Field
from typing_extensions import TypedDict

from ...azure import EVENT_FIELD_SINCE, EVENT_MIN_NOTICE, EVENT_SOURCES, EVENT_TYPE_SINCE, EVENT_TYPES
from ...errors import Conflict, InvalidChange, NoSuchTarget
from ..model.events import EventSpec, PlannedEvent

__all__ = ["Event", "EventBook"]

#: DurationInSeconds per type when not given: expected impact; -1 unknown (reboots, redeploys).
DEFAULT_DURATION = {"Freeze": 5, "Reboot": -1, "Redeploy": -1, "Preempt": -1, "Terminate": -1}
#: How long an event stays Started, whatever its DurationInSeconds (SE-doc: "Started to Completed (event removed
#: from Events array): 10 minutes"; Azure-Samples/scheduled-events-mock-server, replaying captured flows: 5
#: minutes for a live-migration Freeze, 10 for host maintenance, reboots and redeploys).
DEFAULT_ACTIVE = {"Freeze": 300, "Reboot": 600, "Redeploy": 600, "Preempt": 120, "Terminate": 600}

#: Descriptions of platform events (the docs' examples). A user's own reboot or redeploy has none: a real VM's
#: document (Azure/vm-scheduled-events README, 2021) shows ``"Description": ""`` for a User Reboot.
_DESCRIPTIONS = {
    ("Freeze", "Platform"): "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
    ("Reboot", "Platform"): "Host server is undergoing maintenance.",
    ("Redeploy", "Platform"): "Host server is undergoing maintenance.",
}
FAILURE_DESCRIPTION = "Host server is undergoing an emergency repair."
_RESTARTS = frozenset({"Reboot", "Redeploy"})  # event types that restart the VMs they list

F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """Run a method under the book's lock: the control plane and tests change a book the server reads."""
    @functools.wraps(method)
    def wrapper(self: EventBook, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


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
            if EVENT_FIELD_SINCE[key] <= version:
                out[key] = value
        return out

    def to_mapping(self) -> dict[str, Any]:
        """The event as the control plane shows it."""
        return {"eventId": self.id, "type": self.type, "status": self.status, "source": self.source,
                "resources": self.resources, "notBefore": self.not_before, "durationInSeconds": self.duration,
                "description": self.description, "approvals": self.approvals, "published": self.published,
                "started": self.started, "active": self.active, "approval": self.approval}


class EventBook:
    """The events one VM (or one availability set / scale set) can see, and DocumentIncarnation.

    Every change goes through a method here and is reported to ``on_change`` (the persistence hook)
    before the method returns.
    """

    def __init__(self, clock: Callable[[], float], incarnation: int = 1, events: Iterable[Event] = ()):
        self.clock = clock
        self.incarnation = incarnation
        self.events: dict[str, Event] = {e.id: e for e in events}
        self.pending: list[PlannedEvent] = []  # events not yet published (scenarios, fleet walks)
        self.reboots: dict[str, float] = {}  # VM name -> when it last restarted (a Reboot or Redeploy, or told)
        self.lock = threading.RLock()
        self._due_at = self._next_due()

    # -- reading ------------------------------------------------------------------------------------
    @_locked
    def current(self) -> list[Event]:
        """Events as of now, after applying every transition that is due."""
        self.catch_up()
        return list(self.events.values())

    @_locked
    def catch_up(self) -> None:
        now = self.clock()
        if now < self._due_at:  # nothing is due: the common case, answered without looking at any event
            return
        changed = False
        while True:
            due = [e for e in self.events.values() if e.next_transition() <= now]
            publish = min((p for p in self.pending if p.publish <= now), key=lambda p: p.publish, default=None)
            if publish is not None and (not due or publish.publish <= min(e.next_transition() for e in due)):
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
                self.incarnation += 1
                self._restarted(event, when)
                self._release_terminates(when)
            else:
                del self.events[event.id]
                self.incarnation += 1
            changed = True
        if changed:
            self._changed()
        else:
            self._due_at = self._next_due()

    @_locked
    def document(self, version: str, resource_prefix: str = "") -> dict[str, Any]:
        events = [e.wire(version, resource_prefix) for e in self.current() if EVENT_TYPE_SINCE[e.type] <= version]
        return {"DocumentIncarnation": self.incarnation, "Events": events}

    # -- changing -----------------------------------------------------------------------------------
    @_locked
    def plan(self, planned: PlannedEvent) -> None:
        """Queue an event to be published at ``planned.publish`` (emulated epoch seconds). Its EventId is fixed
        now, so that every process that publishes it from this book gives it the same one."""
        if planned.spec.event_id is None:
            planned = PlannedEvent(planned.publish, planned.spec.model_copy(
                update={"event_id": str(uuid.uuid4()).upper()}))
        self.pending.append(planned)
        self.pending.sort(key=lambda p: p.publish)
        self._changed()

    def _publish(self, planned: PlannedEvent) -> None:
        try:  # as of its own time, even when the book catches up later
            self._schedule(planned.spec, now=planned.publish)
        except (InvalidChange, Conflict):
            pass  # a planned event that can no longer be valid (its id taken) is dropped

    @_locked
    def schedule(self, spec: EventSpec) -> Event:
        """Publish an event now. ``spec.started`` makes it appear directly as Started (a hardware failure).

        Raises InvalidChange (no resources, a NotBefore in the past) or Conflict (its id is taken).
        """
        self.catch_up()
        return self._schedule(spec)

    def _schedule(self, spec: EventSpec, now: float | None = None) -> Event:
        if not spec.resources:
            raise InvalidChange("an event needs at least one resource (VM name)")
        now = self.clock() if now is None else now
        not_before = spec.not_before
        if not_before is None:
            not_before = now + (EVENT_MIN_NOTICE[spec.type] if spec.notice is None else spec.notice)
        if not spec.started and not_before < now:
            raise InvalidChange("notBefore is in the past")
        duration = DEFAULT_DURATION[spec.type] if spec.duration is None else spec.duration
        active = float(DEFAULT_ACTIVE[spec.type]) if spec.active is None else spec.active
        event_id = (spec.event_id or str(uuid.uuid4())).upper()
        if event_id in self.events:
            raise Conflict(f"event {event_id} exists already")
        description = spec.description
        if description is None:
            description = FAILURE_DESCRIPTION if spec.started else _DESCRIPTIONS.get((spec.type, spec.source), "")
        event = Event(event_id, spec.type, list(spec.resources), spec.source, description, duration,
                      "Started" if spec.started else "Scheduled", now, now if spec.started else not_before, active,
                      now if spec.started else None, approval=spec.approval)
        self.events[event_id] = event
        self.incarnation += 1
        if spec.started:
            self._restarted(event, now)
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
            if not _approved(event) or (event.type == "Terminate" and self._terminate_blocked()):
                self._changed()  # recorded; it starts when its rule is met (or the blocking deletes are)
            elif event.type == "Terminate":
                self._release_terminates(self.clock())
            else:
                self._start(event)
        return event

    def _terminate_blocked(self) -> bool:
        """Whether a Terminate of this set is pending without approval (approved ones then wait for it)."""
        return any(e.type == "Terminate" and e.status == "Scheduled" and not _approved(e)
                   for e in self.events.values())

    def _release_terminates(self, when: float) -> None:
        """Start every approved Terminate that waits, once no unapproved one is pending."""
        if self._terminate_blocked():
            return
        for waiting in sorted(self.events.values(), key=lambda e: (e.not_before, e.id)):
            if waiting.type == "Terminate" and waiting.status == "Scheduled" and _approved(waiting):
                waiting.status, waiting.started = "Started", when
                self.incarnation += 1
        self._changed()

    @_locked
    def clear(self) -> None:
        """Remove every event; each removal is a change, so DocumentIncarnation still only grows."""
        for event in list(self.events.values()):
            self._remove(event)

    @_locked
    def start(self, event_id: str) -> Event:
        event = self._get(event_id)
        if event.status != "Scheduled":
            raise Conflict(f"event {event_id} has started already")
        self._start(event)
        return event

    @_locked
    def complete(self, event_id: str) -> None:
        event = self._get(event_id)
        if event.status != "Started":
            raise Conflict(f"event {event_id} has not started; cancel it instead")
        self._remove(event)

    @_locked
    def cancel(self, event_id: str) -> None:
        event = self._get(event_id)
        if event.status != "Scheduled":
            raise Conflict(f"event {event_id} has started and can no longer be cancelled")
        self._remove(event)

    def _get(self, event_id: str) -> Event:
        self.catch_up()
        event = self.events.get(str(event_id).upper())
        if event is None:
            raise NoSuchTarget(f"no event {event_id}")
        return event

    def _start(self, event: Event) -> None:
        event.status, event.started = "Started", self.clock()
        self.incarnation += 1
        self._restarted(event, event.started)
        self._changed()

    def _restarted(self, event: Event, when: float) -> None:
        """A Reboot or Redeploy that starts restarts the VMs it lists."""
        if event.type in _RESTARTS:
            for name in event.resources:
                self.reboots[name] = when

    @_locked
    def record_reboot(self, names: Iterable[str]) -> None:
        """VMs restarted now without an event (a restart, reimage or disk change the control plane reports)."""
        self.catch_up()
        now = self.clock()
        for name in names:
            self.reboots[name] = now

    @_locked
    def rebooted_since(self, name: str, since: float) -> bool:
        """Whether the VM restarted at or after ``since`` (emulated time)."""
        self.catch_up()
        return self.reboots.get(name, -math.inf) >= since

    def _remove(self, event: Event) -> None:
        del self.events[event.id]
        self.incarnation += 1
        self._changed()

    def _changed(self) -> None:
        self._due_at = self._next_due()

    def _next_due(self) -> float:
        """When the next transition or publication is due (infinity when none is)."""
        due = min((e.next_transition() for e in self.events.values()), default=math.inf)
        return min(due, min((p.publish for p in self.pending), default=math.inf))

    # -- persistence --------------------------------------------------------------------------------
    @_locked
    def to_json(self) -> str:
        return json.dumps({"incarnation": self.incarnation, "events": [asdict(e) for e in self.events.values()],
                           "pending": [p.to_mapping() for p in self.pending], "reboots": self.reboots},
                          sort_keys=True)

    @_locked
    def load_json(self, text: str) -> None:
        """Become the book saved by ``to_json`` (then caught up to now, as every process does with it);
        ValueError (nothing changed) when the text is not one."""
        incarnation, events, pending, reboots = parse_saved(text)
        self.incarnation = incarnation
        self.events = {e.id: e for e in events}
        self.pending = pending
        self.reboots = reboots
        self._due_at = self._next_due()


def _approved(event: Event) -> bool:
    """Whether an event's approvals meet its rule: any VM it lists, or (``approval="all"``) every one."""
    approvers = set(event.approvals)
    return set(event.resources) <= approvers if event.approval == "all" else bool(approvers & set(event.resources))


class _SavedEvent(TypedDict):
    __pydantic_config__ = pydantic.ConfigDict(allow_inf_nan=False)  # type: ignore[misc]
    id: Annotated[str, Field(min_length=1, max_length=64)]
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    resources: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    source: Literal[EVENT_SOURCES]  # type: ignore[valid-type]
    description: str
    duration: Annotated[int, Field(ge=-1)]
    status: Literal["Scheduled", "Started"]
    published: float
    not_before: float
    active: Annotated[float, Field(ge=0)]
    started: float | None
    approvals: list[str]
    approval: Literal["any", "all"]


class _SavedBook(TypedDict):
    __pydantic_config__ = pydantic.ConfigDict(allow_inf_nan=False)  # type: ignore[misc]
    incarnation: Annotated[int, Field(ge=1)]
    events: list[_SavedEvent]
    pending: list[dict[str, Any]]
    reboots: NotRequired[dict[Annotated[str, Field(min_length=1)], float]]  # books of earlier versions have none


_SAVED: list[pydantic.TypeAdapter[_SavedBook]] = []


def parse_saved(text: str) -> tuple[int, list[Event], list[PlannedEvent], dict[str, float]]:
    """A saved book's incarnation, events, planned events and restarts; ValueError saying what is wrong."""
    if not _SAVED:
        _SAVED.append(pydantic.TypeAdapter(_SavedBook))
    try:
        data = _SAVED[0].validate_json(text, strict=True)
        events = [Event(**cast("dict[str, Any]", e)) for e in data["events"]]
        pending = [PlannedEvent.from_mapping(p) for p in data["pending"]]
    except (pydantic.ValidationError, KeyError, TypeError) as exc:
        raise ValueError(f"not a saved event book: {' '.join(str(exc).split())[:300]}") from None
    return data["incarnation"], events, pending, dict(data.get("reboots", {}))


