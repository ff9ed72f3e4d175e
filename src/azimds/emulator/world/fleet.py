"""The VMs of a fleet while it runs: found by source address or by name, scale-set members made when first used.

Explicit VMs are made at start; a scale-set instance is made the first time it calls or is named, so a
fleet of 100,000 starts at once. At most ``MAX_LIVE`` unchanged members are kept made: past it the least
recently made unchanged one is let go (it is made again, identical, when next used). A member the control
plane changed is never let go. Events scheduled for a scale set or an availability set are in one book that
every member of it sees.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from ..model.fleet import ExplicitVm, FleetSpec, ScaleSet, explicit_tree, member_tree
from ..model.profile import Profile, VmModel, validate_tree, vm_model
from .events import EventBook
from .vm import VmState

__all__ = ["MAX_LIVE", "Fleet", "Placement"]

MAX_LIVE = 20_000  # unchanged scale-set instances kept made at once
_MAX_ADDRESSES = 4 * MAX_LIVE  # remembered source addresses (a cache: cleared when full)


class Placement(NamedTuple):
    """Where a VM of the fleet sits."""

    scale_set: str | None
    availability_set: str | None
    addresses: tuple[str, ...]


MakeVm = Callable[[VmModel, EventBook | None], VmState]


class Fleet:
    """The VMs of a fleet profile besides the first: ``make`` builds a VmState (with its own event book when
    given None), ``book`` returns the shared book of a set by key (``vmss:NAME``, ``avset:NAME``)."""

    def __init__(self, first: VmState, profile: Profile, make: MakeVm, book: Callable[[str], EventBook]):
        assert profile.fleet is not None
        self.first = first
        self.profile = profile
        self.spec: FleetSpec = profile.fleet
        self._make = make
        self._book = book
        self._lock = threading.Lock()
        self._explicit: dict[str, VmState] = {}  # source address -> explicit VM
        self._addresses: dict[str, tuple[ScaleSet, int] | None] = {}  # source address -> member, a cache
        self._by_name: dict[str, VmState] = {first.name: first}  # the first, explicit VMs and pinned members
        self._live: OrderedDict[str, VmState] = OrderedDict()  # unchanged members made, oldest first
        self._explicit_specs: dict[str, ExplicitVm] = {}  # name -> its entry in the profile
        for vm in self.spec.vms:
            tree = validate_tree(explicit_tree(self.spec, profile.tree, vm), profile.source)
            model = vm_model(tree, profile.identity_section, profile.source)
            shared = book(f"avset:{vm.availability_set}") if vm.availability_set else None
            state = make(model, shared)
            self._by_name[state.name] = state
            self._explicit_specs[state.name] = vm
            for address in vm.addresses:
                self._explicit[address] = state

    @property
    def strict(self) -> bool:
        return self.spec.strict

    def __len__(self) -> int:
        return 1 + len(self.spec.vms) + sum(s.capacity for s in self.spec.scale_sets)

    def for_peer(self, peer: str) -> VmState | None:
        """The VM the address belongs to; None when no VM owns it."""
        found = self._explicit.get(peer)
        if found is not None:
            return found
        if peer in self._addresses:
            place = self._addresses[peer]
        else:
            place = self._place(peer)
            with self._lock:
                if len(self._addresses) >= _MAX_ADDRESSES:
                    self._addresses.clear()
                self._addresses[peer] = place
        return None if place is None else self.member(*place)

    def _place(self, peer: str) -> tuple[ScaleSet, int] | None:
        try:
            address = int(ipaddress.ip_address(peer))
        except ValueError:
            return None
        for scale_set in self.spec.scale_sets:
            index = scale_set.index_of(address)
            if index is not None:
                return scale_set, index
        return None

    def by_name(self, name: str) -> VmState | None:
        found = self._by_name.get(name) or self._live.get(name)
        if found is not None:
            return found
        set_name, _, index = name.rpartition("_")
        scale_set = self.spec.scale_set(set_name)
        if scale_set is not None and index.isdigit() and str(int(index)) == index and int(index) < scale_set.capacity:
            return self.member(scale_set, int(index))
        return None

    def names(self, offset: int = 0, limit: int | None = None) -> list[str]:
        """VMs' names in a fixed order (the first, the explicit VMs, each scale set's instances by index), from
        ``offset``, at most ``limit`` of them; scale-set instances are not made."""
        end = len(self) if limit is None else min(len(self), offset + limit)
        fixed = [self.first.name, *self._explicit_specs]
        found = fixed[offset:end]
        start = len(fixed)
        for scale_set in self.spec.scale_sets:
            low, high = max(offset, start), min(end, start + scale_set.capacity)
            found += [scale_set.member_name(i - start) for i in range(low, high)]
            start += scale_set.capacity
        return found

    def placement(self, name: str) -> Placement | None:
        """Where a VM sits: its scale set or availability set and the source addresses it calls from (None: no
        VM of the fleet has that name). The first VM answers strangers, so it has no address of its own."""
        if name == self.first.name:
            return Placement(None, None, ())
        explicit = self._explicit_specs.get(name)
        if explicit is not None:
            return Placement(None, explicit.availability_set, explicit.addresses)
        set_name, _, index = name.rpartition("_")
        scale_set = self.spec.scale_set(set_name)
        if scale_set is None or not index.isdigit() or str(int(index)) != index or int(index) >= scale_set.capacity:
            return None
        return Placement(scale_set.name, None, (str(ipaddress.IPv4Address(scale_set.first_address + int(index))),))

    def made(self) -> list[VmState]:
        """Every VM made so far (the first, explicit ones, scale-set members in use)."""
        return list(self._by_name.values()) + list(self._live.values())

    def member(self, scale_set: ScaleSet, index: int) -> VmState:
        name = scale_set.member_name(index)
        state = self._live.get(name) or self._by_name.get(name)
        if state is not None:
            return state
        with self._lock:
            state = self._live.get(name) or self._by_name.get(name)
            if state is None:
                tree = member_tree(self.spec, self.profile.tree, self.first.model.instance["compute"], scale_set,
                                   index)
                model = vm_model(tree, self.profile.identity_section, self.profile.source)
                state = self._make(model, self._book(f"vmss:{scale_set.name}"))
                self._live[name] = state
                self._evict()
        return state

    def tree_of(self, name: str) -> dict[str, Any] | None:
        """What the profile says of a VM besides the first, before defaults (None: not one of the fleet's)."""
        explicit = self._explicit_specs.get(name)
        if explicit is not None:
            return validate_tree(explicit_tree(self.spec, self.profile.tree, explicit), self.profile.source)
        set_name, _, index = name.rpartition("_")
        scale_set = self.spec.scale_set(set_name)
        if scale_set is None or not index.isdigit() or int(index) >= scale_set.capacity:
            return None
        return member_tree(self.spec, self.profile.tree, self.first.model.instance["compute"], scale_set, int(index))

    def pin(self, state: VmState) -> None:
        """Keep a member made for good (the control plane changed it)."""
        with self._lock:
            if self._live.pop(state.name, None) is not None:
                self._by_name[state.name] = state

    def _evict(self) -> None:
        while len(self._live) > MAX_LIVE:
            name, old = next(iter(self._live.items()))
            del self._live[name]
            if old.changed:  # never forget a change: keep it for good
                self._by_name[name] = old

    def scale_set(self, name: str) -> ScaleSet | None:
        return self.spec.scale_set(name)
