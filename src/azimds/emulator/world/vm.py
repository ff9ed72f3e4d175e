"""One VM as it is now: its documents (which the control plane may change), its events and the faults it meets.

A ``VmState`` is what the metadata service reads (``service.ports.VmView``): the service keeps what it
derives from the VM in ``cache``, which is emptied whenever the VM's documents change.
"""

from __future__ import annotations

import threading
from typing import Any

from ...errors import Conflict, NoSuchTarget
from ..model.identities import Identities
from ..model.profile import VmModel
from .events import EventBook
from .faults import FaultSet

__all__ = ["VmState"]


class VmState:
    """One VM of the world. ``model`` is the VM as the profile made it; ``instance``/``loadbalancer`` as now."""

    __slots__ = ("_lock", "cache", "events", "faults", "instance", "loadbalancer", "model")

    def __init__(self, model: VmModel, events: EventBook, faults: FaultSet):
        self.model = model
        self.instance = model.instance
        self.loadbalancer = model.loadbalancer
        self.events = events
        self.faults = faults
        self.cache: dict[Any, Any] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def identities(self) -> Identities:
        return self.model.identities

    @property
    def changed(self) -> bool:
        """Whether the control plane changed its documents (it differs from what the profile made)."""
        return self.instance is not self.model.instance or self.loadbalancer is not self.model.loadbalancer

    def replace(self, instance: dict[str, Any], loadbalancer: dict[str, Any] | None) -> None:
        """Swap in new (validated and completed) documents; drops everything derived from the old."""
        with self._lock:
            self.instance = instance
            self.loadbalancer = loadbalancer
            self.cache = {}

    def document(self) -> dict[str, Any]:
        """The VM's whole metadata as the control plane sees it (newest shape, not gated)."""
        doc = dict(self.instance)
        if self.loadbalancer is not None:
            doc["loadbalancer"] = self.loadbalancer
        return doc

    # -- what the metadata service asks ---------------------------------------------------------------
    def events_document(self, version: str, prefix: str = "") -> dict[str, Any]:
        return self.events.document(version, prefix)

    def approve_events(self, event_ids: list[str]) -> str | None:
        with self.events.lock:
            current = {event.id for event in self.events.current()}
            unknown = next((i for i in event_ids if i.upper() not in current), None)
            if unknown is not None:
                return unknown
            for event_id in event_ids:
                try:
                    self.events.approve(event_id, by=self.name)
                except (Conflict, NoSuchTarget):  # started or gone meanwhile: approving it is still a success
                    pass
        return None
