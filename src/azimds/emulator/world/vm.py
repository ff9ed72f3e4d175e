"""One VM as it is now: its documents (which the control plane may change), its events and the faults it meets.

A ``VmState`` is what the metadata service reads (``service.ports.VmView``): the service keeps what it
derives from the VM in ``cache``, which is emptied whenever the VM's documents change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..model.identities import Identities
from ..model.profile import VmModel
from .events import EventBook
from .faults import FaultSet

__all__ = ["VmState"]


class VmState:
    """One VM of the world. ``model`` is the VM as the profile made it; ``instance``/``loadbalancer`` as now."""

    __slots__ = ("_approve", "_lock", "book_key", "cache", "events", "faults", "instance", "loadbalancer", "model")

    def __init__(self, model: VmModel, events: EventBook, faults: FaultSet, book_key: str,
                 approve: Callable[[VmState, list[str]], str | None]):
        self.model = model
        self.book_key = book_key  # the key of the book it sees: vm:NAME, or its scale set's or availability set's
        self._approve = approve
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
        return self._approve(self, event_ids)  # the world's, so that it is kept and every process sees it
