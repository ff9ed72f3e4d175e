"""What a new scheduled event is, declared once: the control plane's body, a scenario entry, a fleet walk's step.

``EventSpec`` names every field as the wire does (``notBefore``, ``durationInSeconds``, ``eventId``); the
control plane validates its JSON with it and its OpenAPI schema comes from it, and a profile's or a scenario
file's ``scenarios`` entries are ``ScenarioEntry`` (the same fields, plus ``in``/``at`` instead of
``notBefore``). ``scenario_plan`` turns entries into ``PlannedEvent``s: an EventSpec and the emulated time
it is published at. Times that depend on "now" (a NotBefore in the past) are checked by the event book.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ...azure import EVENT_MIN_NOTICE, EVENT_SOURCES, EVENT_TYPES
from ...errors import ProfileError
from .values import Flag, Number, Whole, parse_duration, validate

__all__ = ["EventSpec", "PlannedEvent", "ScenarioEntry", "parse_offset", "parse_when", "scenario_plan"]

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]  # the names are in azure, once
EventSource = Literal[EVENT_SOURCES]  # type: ignore[valid-type]
MAX_SECONDS = 10 * 365 * 86400  # ten years: longer notices, durations and offsets are mistakes


def parse_offset(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"2m"``, ``"1h30m"``; ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(str(value))
        except ValueError:
            raise ValueError(f"an offset is seconds or like '2m', '1h30m', '90s', not {value!r}") from None
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"an offset must be 0 or more (and under ten years), not {value!r}")
    return seconds


def parse_when(value: Any, start: float) -> float:
    """``"10:00"`` (the next such UTC time of day, emulated) or an ISO 8601 time, as epoch seconds."""
    text = str(value).strip()
    try:
        if len(text) <= 8 and ":" in text:
            clock = datetime.strptime(text, "%H:%M:%S" if text.count(":") == 2 else "%H:%M").time()
            base = datetime.fromtimestamp(start, UTC)
            when = datetime.combine(base.date(), clock, UTC)
            if when.timestamp() < start:
                when += timedelta(days=1)
            return when.timestamp()
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'at' is a UTC time of day like '10:00' or an ISO 8601 time, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


Offset = Annotated[float, BeforeValidator(parse_offset)]
Seconds = Annotated[Number, Field(ge=0, le=MAX_SECONDS)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


class _EventFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True,
                              allow_inf_nan=False)

    type: Annotated[EventType, Field(description="EventType")]
    resources: Annotated[list[Name] | None, Field(min_length=1, max_length=10_000,
                                                  description="the VMs it lists (default: this VM)")] = None
    source: Annotated[EventSource, Field(description="EventSource")] = "Platform"
    notice: Annotated[Seconds | None, Field(description="seconds from publication to NotBefore "
                                                         "(default: the type's minimum notice)")] = None
    duration: Annotated[Whole | None, Field(alias="durationInSeconds", ge=-1, le=MAX_SECONDS,
                                            description="DurationInSeconds: expected impact, -1 unknown")] = None
    active: Annotated[Seconds | None, Field(description="seconds it stays Started before it is gone")] = None
    description: Annotated[str | None, Field(max_length=4096, description="Description")] = None
    event_id: Annotated[str | None, Field(alias="eventId", min_length=1, max_length=64,
                                          pattern=r"^[A-Za-z0-9-]+$", description="EventId")] = None
    started: Annotated[Flag, Field(description="publish it Started (a hardware failure)")] = False


class EventSpec(_EventFields):
    """A new event, as the control plane's ``POST /v1/events`` takes it."""

    model_config = ConfigDict(title="NewEvent")

    not_before: Annotated[Number | None, Field(alias="notBefore", ge=0, le=253402300799,
                                               description="NotBefore, epoch seconds")] = None
    approval: Annotated[Literal["any", "all"], Field(description="whose approval starts it: any VM it lists, "
                                                                 "or all of them")] = "any"

    @model_validator(mode="after")
    def _one_time(self) -> EventSpec:
        if self.not_before is not None and self.notice is not None:
            raise ValueError("give notBefore or notice, not both")
        return self

    @classmethod
    def from_mapping(cls, mapping: Any, *, source: str = "") -> EventSpec:
        """From the control plane's mapping (wire names, JSON types). Raises ProfileError naming each problem."""
        return validate(_spec_adapter(), mapping, source)

    def to_mapping(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ScenarioEntry(_EventFields):
    """A scenario entry: an event published ``in`` an offset from start, or ``at`` a time, with its notice."""

    model_config = ConfigDict(title="ScenarioEntry")

    in_: Annotated[Offset | None, Field(alias="in", description="NotBefore as an offset from start")] = None
    notice: Annotated[Offset | None, Field(description="seconds (or '15m') from publication to NotBefore")] = None
    at: Annotated[str | None, Field(description="NotBefore as a UTC time of day or an ISO 8601 time")] = None

    @field_validator("at")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_when(value, 0.0)
        return value

    @model_validator(mode="after")
    def _one_time(self) -> ScenarioEntry:
        if (self.in_ is None) == (self.at is None):
            raise ValueError("give exactly one of 'in' (an offset from start) and 'at' (a time)")
        return self


@dataclass(frozen=True)
class PlannedEvent:
    """An event to publish at ``publish`` (emulated epoch seconds), with its NotBefore fixed in ``spec``."""

    publish: float
    spec: EventSpec

    def to_mapping(self) -> dict[str, Any]:
        return {"publish": self.publish, "event": self.spec.to_mapping()}

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any]) -> PlannedEvent:
        return cls(float(mapping["publish"]), EventSpec.model_validate(mapping["event"], strict=True))


def scenario_entries(entries: Any, source: str) -> list[ScenarioEntry]:
    """Validate a ``scenarios`` list (lax: a profile's text). Raises ProfileError naming each problem."""
    if not isinstance(entries, list):
        raise ProfileError(source, [("scenarios", "scenarios are a list of events")])
    return validate(_entries_adapter(), entries, source, lax=True, where="scenarios")


def scenario_plan(entries: list[ScenarioEntry], start: float, default_resource: str,
                  source: str = "") -> list[PlannedEvent]:
    """When each entry is published, and its NotBefore, counted from ``start``. Raises ProfileError."""
    plan = []
    for index, entry in enumerate(entries):
        try:
            not_before = start + entry.in_ if entry.in_ is not None else parse_when(entry.at, start)
        except ValueError as exc:
            raise ProfileError(source, [(f"scenarios[{index}].at", str(exc))]) from None
        notice = EVENT_MIN_NOTICE[entry.type] if entry.notice is None else entry.notice
        fields = entry.model_dump(exclude={"in_", "at", "notice"}, exclude_none=True)
        fields["resources"] = entry.resources or [default_resource]
        if entry.started:
            publish = not_before
        else:
            publish = max(start, not_before - notice)
            fields["not_before"] = not_before
        plan.append(PlannedEvent(publish, EventSpec(**fields)))
    return plan


_ENTRIES: list[pydantic.TypeAdapter[list[ScenarioEntry]]] = []
_SPEC: list[pydantic.TypeAdapter[EventSpec]] = []


def _spec_adapter() -> pydantic.TypeAdapter[EventSpec]:
    if not _SPEC:
        _SPEC.append(pydantic.TypeAdapter(EventSpec))
    return _SPEC[0]


def _entries_adapter() -> pydantic.TypeAdapter[list[ScenarioEntry]]:
    if not _ENTRIES:
        _ENTRIES.append(pydantic.TypeAdapter(list[ScenarioEntry]))
    return _ENTRIES[0]
