"""The control plane's request and answer bodies, each declared once: validation and the OpenAPI document both
come from these declarations (and from ``model.events.EventSpec`` and ``model.faults.FaultRule``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Required

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator
from typing_extensions import TypedDict

from ..model.events import EventType
from ..model.values import Number, Whole
from ..world.clock import LATEST

__all__ = ["ClaimView", "ClockChange", "ClockView", "ErrorView", "EventView", "EventsView", "FaultSpec",
           "FaultsView", "FleetView", "JournalView", "SetView", "Tags", "TagsView", "VmView", "Walk"]

_CLOSED = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, populate_by_name=True)


class ClockChange(BaseModel):
    """Move the clock: jump to ``time``, then ``advance``, then set ``speed`` (0 stops it)."""

    model_config = _CLOSED
    advance: Annotated[Number | None, Field(ge=0, le=LATEST, description="seconds forward")] = None
    speed: Annotated[Number | None, Field(ge=0, le=1_000_000, description="emulated seconds per second; "
                                                                          "0 = manual")] = None
    time: Annotated[Number | None, Field(ge=0, le=LATEST, description="jump to, epoch seconds")] = None

    @model_validator(mode="after")
    def _something(self) -> ClockChange:
        if self.advance is None and self.speed is None and self.time is None:
            raise ValueError("give one or more of advance (seconds), speed (0 = manual) and time (epoch seconds)")
        return self


class Walk(BaseModel):
    """A platform update walking a scale set's update domains: one event per domain, ``gap`` seconds apart."""

    model_config = _CLOSED
    set: Annotated[str, Field(min_length=1, description="the scale set's name")]
    type: EventType = "Freeze"
    gap: Annotated[Number, Field(ge=0, le=365 * 86400, description="seconds between domains")] = 1800.0
    duration: Annotated[Whole | None, Field(alias="durationInSeconds", ge=-1, le=86400 * 365)] = None


class FaultSpec(BaseModel):
    """A fault written as for ``azimds serve --fault``: ``PATTERN=SPEC``."""

    model_config = _CLOSED
    spec: Annotated[str, Field(min_length=1, max_length=4096)]


TagValue = Annotated[str | int | float | bool, Field(union_mode="left_to_right")]


class Tags(RootModel[dict[Annotated[str, Field(min_length=1, max_length=512)], TagValue]]):
    """Every tag of the VM: names to values."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


# -- answers -------------------------------------------------------------------------------------------------

class EventView(TypedDict):
    eventId: str
    type: str
    status: Literal["Scheduled", "Started"]
    source: str
    resources: list[str]
    notBefore: float
    durationInSeconds: int
    description: str
    approvals: list[str]
    published: float
    started: float | None
    active: float
    approval: str


class EventsView(TypedDict):
    incarnation: int
    events: list[EventView]


class ClockView(TypedDict):
    mode: Literal["real", "scaled", "manual"]
    speed: float
    now: float


class FaultsView(TypedDict):
    faults: list[dict[str, Any]]


class TagsView(TypedDict):
    tags: str


class JournalView(TypedDict):
    entries: list[dict[str, Any]]


class ClaimView(TypedDict):
    address: str
    vm: str
    claimed: float
    lastSeen: float  # as written: at most a tenth of idleRelease before its last call
    releaseAt: float  # let go after this time unless it calls again


class VmView(TypedDict):
    name: str
    scaleSet: str | None
    availabilitySet: str | None
    addresses: list[str]  # the source addresses it calls from (none: the first VM, which answers strangers)
    faultDomain: str
    updateDomain: str
    changed: bool  # the control plane changed its metadata
    events: int  # current events it sees


class SetView(TypedDict, total=False):
    name: Required[str]
    kind: Required[Literal["scaleSet", "availabilitySet"]]
    size: Required[int]
    faultDomains: Required[int | None]
    updateDomains: Required[int | None]
    addresses: str  # a scale set's: instance 0's source address, or "dynamic"
    idleRelease: float  # a dynamic scale set's seconds without a call before an instance is let go
    claims: list[ClaimView]  # a dynamic scale set's: which source address holds each instance now


class FleetView(TypedDict):
    total: int
    offset: int
    vms: list[VmView]
    sets: list[SetView]


class ErrorView(TypedDict, total=False):
    error: str
    problems: list[str]
