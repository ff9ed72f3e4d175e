"""What the metadata service needs from the world it answers about, as protocols (the world implements them).

The service is the metadata port's rules, routing and rendering; it does not know how the world keeps VMs,
events, faults or time (one process or many, memory or an engine). It asks for the VM a source address
belongs to, reads that VM's documents and events through these methods, and reports every request it answers.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from ..model.faults import FaultRule
from ..model.identities import Identities

__all__ = ["Answered", "FaultsView", "JournalEntry", "VmView", "WorldView"]


class JournalEntry(NamedTuple):
    """One request the metadata port answered: for test assertions and the control plane."""

    time: float  # emulated clock, epoch seconds
    peer: str
    method: str
    url: str
    status: int  # 0 when a fault dropped the connection
    latency: float  # real seconds from request to answer


#: A request as the service reports it, as cheap to make as a tuple: JournalEntry's fields with the URL as it came
#: (bytes). The journal makes JournalEntry values of them when they are read.
Answered = tuple[float, str, str, bytes, int, float]


class FaultsView(Protocol):
    active: bool  # some fault is in force

    def match(self, path: str) -> FaultRule | None:
        """The first active fault that applies to a request for ``path`` (and counts it), or None."""


class VmView(Protocol):
    """One VM as the service sees it. ``cache`` holds what the service derived from the VM as it is now; the
    world empties it whenever the VM changes."""

    @property
    def name(self) -> str: ...

    @property
    def instance(self) -> dict[str, Any]: ...

    @property
    def loadbalancer(self) -> dict[str, Any] | None: ...

    @property
    def model_instance(self) -> dict[str, Any]:
        """The instance document as the profile made it (before any change)."""

    @property
    def identities(self) -> Identities: ...

    @property
    def cache(self) -> dict[Any, Any]: ...

    @property
    def faults(self) -> FaultsView: ...

    @property
    def steady(self) -> bool:
        """What is derived from it (``cache``) holds until the world's ``stamp`` moves on."""

    def events_document(self, version: str, prefix: str = "") -> dict[str, Any]:
        """The scheduled events document this VM sees now (wire key order, gated by ``version``)."""

    def approve_events(self, event_ids: list[str]) -> str | None:
        """Approve events on this VM's behalf, all or none: the first id that is no current event, or None."""


class WorldView(Protocol):
    @property
    def per_vm_limits(self) -> bool:
        """Rate limits count per VM (a fleet) rather than per source address (one VM)."""

    @property
    def stamp(self) -> object:
        """Another object whenever an answer found before may no longer hold: a VM's documents replaced, an
        address that may now belong to another VM (with ``fixed_peers``)."""

    @property
    def fixed_peers(self) -> bool:
        """The VM an address belongs to changes only with ``stamp`` (no claims that come and go with time)."""

    def vm_for(self, peer: str) -> VmView | None:
        """The VM a source address belongs to; None when the world refuses strangers. A new address of a dynamic
        scale set claims an instance: ``NoFreeInstance`` when none is free, ``EngineUnavailable`` when the shared
        store that keeps claims cannot be reached."""

    def now(self) -> float:
        """The emulated time, epoch seconds."""

    def record(self, answered: Answered) -> None:
        """Keep a request in the journal and the metrics (called for every request: it must cost little)."""
