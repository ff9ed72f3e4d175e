"""The VMs of a fleet while it runs: found by source address or by name, scale-set members made when first used.

Explicit VMs are made at start; a scale-set instance is made the first time it calls or is named, so a
fleet of 100,000 starts at once. At most ``MAX_LIVE`` unchanged members are kept made: past it the least
recently made unchanged one is let go (it is made again, identical, when next used). A member the control
plane changed is never let go. Events scheduled for a scale set or an availability set are in one book that
every member of it sees.

The instances of a dynamic scale set (``addresses: dynamic``) are claimed by source addresses: ``claims`` holds,
per set, which address has which instance, as the world's store last said (the world writes every claim there,
so that every process and node agrees on it; see ``World.vm_for``). A claim is kept while its address calls and
let go ``idleRelease`` after its last call: the last call is written to the store only when the one written is
``REFRESH_SHARE`` of ``idleRelease`` old (not at every request), and a claim counts as released that much later,
so that it is never released early, at most a tenth of ``idleRelease`` late.
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

__all__ = ["MAX_LIVE", "REFRESH_SHARE", "Claim", "Fleet", "Placement", "claim", "live_claims"]

MAX_LIVE = 20_000  # unchanged scale-set instances kept made at once
_MAX_ADDRESSES = 4 * MAX_LIVE  # remembered source addresses (a cache: cleared when full)
_UNSEEN: Any = object()  # an address not remembered (None is remembered: no VM has it)


class Placement(NamedTuple):
    """Where a VM of the fleet sits."""

    scale_set: str | None
    availability_set: str | None
    addresses: tuple[str, ...]


MakeVm = Callable[[VmModel, EventBook | None], VmState]
#: A claim's last call is written when the one written is this share of ``idleRelease`` old.
REFRESH_SHARE = 0.1


class Claim(NamedTuple):
    """An instance of a dynamic scale set claimed by a source address."""

    instance: int  # its index in the set
    since: float  # when the address claimed it (emulated time)
    seen: float  # its last call as written: at most REFRESH_SHARE of idleRelease before the last call

    def released(self, scale_set: ScaleSet, now: float) -> bool:
        """No call for idleRelease (counted from the written last call, plus the share it may lag behind)."""
        return now > self.seen + scale_set.idle_release * (1 + REFRESH_SHARE)

    def stale(self, scale_set: ScaleSet, now: float) -> bool:
        """The written last call is old enough to be written again."""
        return now - self.seen >= scale_set.idle_release * REFRESH_SHARE

    def release_at(self, scale_set: ScaleSet) -> float:
        return self.seen + scale_set.idle_release * (1 + REFRESH_SHARE)


def live_claims(claims: dict[str, Claim], scale_set: ScaleSet, now: float) -> dict[str, Claim]:
    """The claims not released by ``now``."""
    return {address: c for address, c in claims.items() if not c.released(scale_set, now)}


def claim(tables: dict[str, dict[str, Claim]], sets: tuple[ScaleSet, ...], peer: str, now: float) -> bool:
    """Keep ``peer``'s claim (its last call is now) or give it the lowest free instance of the first set with
    one, in ``tables`` (each set's live claims, changed in place). False when every instance is claimed."""
    for scale_set in sets:
        table = tables[scale_set.name]
        held = table.get(peer)
        if held is not None:
            table[peer] = held._replace(seen=now)
            return True
    for scale_set in sets:
        table = tables[scale_set.name]
        if len(table) < scale_set.capacity:
            used = {c.instance for c in table.values()}
            index = next(i for i in range(scale_set.capacity) if i not in used)
            table[peer] = Claim(index, now, now)
            return True
    return False


class Fleet:
    """The VMs of a fleet profile besides the first: ``make`` builds a VmState (with its own event book when
    given None), ``book`` returns the shared book of a set by key (``vmss:NAME``, ``avset:NAME``)."""

    def __init__(self, first: VmState, profile: Profile, make: MakeVm, book: Callable[[str], EventBook],
                 let_go: Callable[[], None]):
        assert profile.fleet is not None
        self.first = first
        self.profile = profile
        self.spec: FleetSpec = profile.fleet
        self._make = make
        self._book = book
        self._let_go = let_go  # called when a member is let go: its address will find another object
        self._lock = threading.Lock()
        self._explicit: dict[str, VmState] = {}  # source address -> explicit VM
        self._addresses: dict[str, tuple[ScaleSet, int, str] | None] = {}  # source address -> member, a cache
        self._by_name: dict[str, VmState] = {first.name: first}  # the first, explicit VMs and pinned members
        self._live: OrderedDict[str, VmState] = OrderedDict()  # unchanged members made, oldest first
        # source address -> the VM found for it: one lookup per request (the others touch three tables, and with
        # a thousand VMs calling, each touch is a cache miss). Emptied when a VM it may hold is let go.
        self._peers: dict[str, VmState] = {}
        self.members_made = 0  # scale-set instances made so far (made again after being let go included)
        self._explicit_specs: dict[str, ExplicitVm] = {}  # name -> its entry in the profile
        self.dynamic_sets = self.spec.dynamic_sets
        self._claims: dict[str, dict[str, Claim]] = {s.name: {} for s in self.dynamic_sets}  # as the store says
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
        found = self._explicit.get(peer) or self._peers.get(peer)
        if found is not None:
            return found
        place = self._addresses.get(peer, _UNSEEN)
        if place is _UNSEEN:
            place = self._place(peer)
            with self._lock:
                if len(self._addresses) >= _MAX_ADDRESSES:
                    self._addresses.clear()
                self._addresses[peer] = place
        if place is None:
            return None
        state = self._live.get(place[2]) or self._by_name.get(place[2]) or self.member(place[0], place[1])
        with self._lock:
            if len(self._peers) >= _MAX_ADDRESSES:
                self._peers.clear()
            self._peers[peer] = state
        return state

    # -- dynamic scale sets ------------------------------------------------------------------------------------
    def claimed(self, peer: str, now: float) -> tuple[ScaleSet, Claim] | None:
        """The instance ``peer`` holds (not released by ``now``), or None."""
        for scale_set in self.dynamic_sets:
            held = self._claims[scale_set.name].get(peer)
            if held is not None and not held.released(scale_set, now):
                return scale_set, held
        return None

    def has_free(self, now: float) -> bool:
        """Whether some dynamic instance is free (as far as this process knows)."""
        return any(len(live_claims(self._claims[s.name], s, now)) < s.capacity for s in self.dynamic_sets)

    def claims(self, set_name: str) -> dict[str, Claim]:
        """A dynamic set's claims as the store last said (released ones too, until the next write drops them)."""
        return dict(self._claims.get(set_name, {}))

    def set_claims(self, set_name: str, claims: dict[str, Claim]) -> None:
        self._claims[set_name] = dict(claims)

    def explicit_addresses(self, name: str) -> tuple[str, ...]:
        spec = self._explicit_specs.get(name)
        return spec.addresses if spec is not None else ()

    def _place(self, peer: str) -> tuple[ScaleSet, int, str] | None:
        try:
            address = int(ipaddress.ip_address(peer))
        except ValueError:
            return None
        for scale_set in self.spec.scale_sets:
            index = scale_set.index_of(address)
            if index is not None:
                return scale_set, index, scale_set.member_name(index)
        return None

    def by_name(self, name: str) -> VmState | None:
        found = self._by_name.get(name) or self._live.get(name)
        if found is not None:
            return found
        named = self._instance(name)
        return self.member(*named) if named is not None else None

    def _instance(self, name: str) -> tuple[ScaleSet, int] | None:
        """The scale set and index a name like ``web_12`` means (None: no instance of the fleet's is so named)."""
        set_name, _, index = name.rpartition("_")
        scale_set = self.spec.scale_set(set_name)
        if scale_set is None or not index.isdigit() or str(int(index)) != index or int(index) >= scale_set.capacity:
            return None
        return scale_set, int(index)

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
        named = self._instance(name)
        if named is None:
            return None
        scale_set, index = named
        if scale_set.dynamic:  # the address that holds it now, if any
            held = tuple(a for a, c in self._claims.get(scale_set.name, {}).items() if c.instance == index)
            return Placement(scale_set.name, None, held)
        first = scale_set.first_address or 0
        return Placement(scale_set.name, None, (str(ipaddress.IPv4Address(first + index)),))

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
                self.members_made += 1
                self._evict()
        return state

    def tree_of(self, name: str) -> dict[str, Any] | None:
        """What the profile says of a VM besides the first, before defaults (None: not one of the fleet's)."""
        explicit = self._explicit_specs.get(name)
        if explicit is not None:
            return validate_tree(explicit_tree(self.spec, self.profile.tree, explicit), self.profile.source)
        named = self._instance(name)
        if named is None:
            return None
        return member_tree(self.spec, self.profile.tree, self.first.model.instance["compute"], *named)

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
            else:
                self._peers.clear()  # it may be there, and is made again (anew) when next used
                self._let_go()

    def scale_set(self, name: str) -> ScaleSet | None:
        return self.spec.scale_set(name)
