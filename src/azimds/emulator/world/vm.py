"""One VM as it is now: its documents (which the control plane may change), its events and the faults it meets.

A ``VmState`` is what the metadata service reads (``service.ports.VmView``): the service keeps what it
derives from the VM in ``cache``, which is emptied whenever the VM's documents change. A scale-set instance
whose tags changed shows them once it reboots; until then its ``cache`` is a ``_Watch``, which looks for that
reboot on each read (only such VMs pay for it).
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

    __slots__ = ("_approve", "_lock", "_moved", "_reveal", "book_key", "cache", "events", "faults", "instance",
                 "loadbalancer", "model", "name", "pending", "source")

    def __init__(self, model: VmModel, events: EventBook, faults: FaultSet, book_key: str,
                 approve: Callable[[VmState, list[str]], str | None], reveal: Callable[[VmState], None],
                 moved: Callable[[], None]):
        self.model = model
        self.name = model.name  # its model never changes (the control plane changes ``instance``): read per request
        self.book_key = book_key  # the key of the book it sees: vm:NAME, or its scale set's or availability set's
        self._approve = approve
        self._reveal = reveal  # shows the pending tags (the world's: it validates and completes)
        self._moved = moved  # told whenever its documents are replaced (the world's stamp moves on)
        self.instance = model.instance
        self.loadbalancer = model.loadbalancer
        self.source: dict[str, Any] | None = None  # what it is before defaults, once the control plane changed it
        self.pending: dict[str, Any] | None = None  # tags changed since (scale-set instances): shown at a reboot
        self.events = events
        self.faults = faults
        self.cache: dict[Any, Any] = {}
        self._lock = threading.RLock()

    @property
    def model_instance(self) -> dict[str, Any]:
        return self.model.instance

    @property
    def identities(self) -> Identities:
        return self.model.identities

    @property
    def steady(self) -> bool:
        """Whether what is derived from it holds until it is replaced (no tags wait for a reboot, which its
        ``cache`` looks for on each read): then the world's stamp says when it was."""
        return self.pending is None

    @property
    def changed(self) -> bool:
        """Whether the control plane changed its documents (it differs from what the profile made)."""
        return (self.instance is not self.model.instance or self.loadbalancer is not self.model.loadbalancer
                or self.pending is not None)

    def replace(self, instance: dict[str, Any], loadbalancer: dict[str, Any] | None,
                source: dict[str, Any] | None = None, pending: dict[str, Any] | None = None) -> None:
        """Swap in new (validated and completed) documents, the source they come from and any tags waiting for a
        reboot; drops everything derived from the old."""
        with self._lock:
            self.instance = instance
            self.loadbalancer = loadbalancer
            self.source = source
            self.pending = pending
            self.cache = _Watch(self) if pending is not None else {}
        self._moved()

    def refresh(self) -> bool:
        """Show tags that waited for a reboot, if the VM rebooted since they changed (whether it did)."""
        with self._lock:
            pending = self.pending
            if pending is None or not self.events.rebooted_since(self.name, pending["since"]):
                return False
            self._reveal(self)
            return True

    def document(self) -> dict[str, Any]:
        """The VM's whole metadata as the control plane sees it (newest shape, not gated)."""
        self.refresh()
        doc = dict(self.instance)
        if self.loadbalancer is not None:
            doc["loadbalancer"] = self.loadbalancer
        return doc

    # -- what the metadata service asks ---------------------------------------------------------------
    def events_document(self, version: str, prefix: str = "") -> dict[str, Any]:
        return self.events.document(version, prefix)

    def approve_events(self, event_ids: list[str]) -> str | None:
        return self._approve(self, event_ids)  # the world's, so that it is kept and every process sees it


class _Watch(dict[Any, Any]):
    """The cache of a VM whose tags wait for a reboot: each read first looks whether it came (then the VM has a
    new, plain cache, and this one answers nothing)."""

    __slots__ = ("vm",)

    def __init__(self, vm: VmState) -> None:
        super().__init__()
        self.vm = vm

    def get(self, key: Any, default: Any = None) -> Any:
        if self.vm.refresh():
            return default
        return super().get(key, default)
