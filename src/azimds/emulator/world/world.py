"""The emulated world: everything that changes while the emulator runs — its VMs, their events, the clock, the
faults, the journal — and the only way to change it.

The metadata service reads it (it is a ``service.ports.WorldView``); the control plane, the in-process
``Emulator.control`` calls, VMs' approvals and scenarios change it, only through the methods here. Each change
is one transaction of the store: it reads what the store holds now, validates (a bad change is refused whole
and changes nothing: ``InvalidChange``, ``NoSuchTarget``, ``Conflict``; ``EngineUnavailable`` when the store
cannot be reached), writes, and only then shows in memory. Other processes sharing the store (workers, nodes)
see it when their listener applies the store's changes, in version order, each row once.

Event books are kept as their last write; the transitions since (Scheduled → Started → gone) are computed by
every process from the same rows and the same clock, so they agree on every document and incarnation.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import math
import os
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from copy import deepcopy
from dataclasses import asdict
from typing import Any, TypeVar

from ...azure import EVENT_MIN_NOTICE
from ...errors import Conflict, EngineUnavailable, InvalidChange, NoFreeInstance, NoSuchTarget, ProfileError, StateError
from ..model.defaults import complete
from ..model.events import EventSpec, PlannedEvent, ScenarioEntry, scenario_plan
from ..model.faults import FaultRule
from ..model.fleet import ScaleSet, with_tags
from ..model.profile import Profile, VmModel, public_ip_problems, validate_tree
from ..service import render
from .clock import LATEST, Clock, ClockState
from .events import Event, EventBook, parse_saved
from .faults import FaultSet
from .fleet import Claim, Fleet, claim, live_claims
from .journal import Journal, JournalEntry, Metrics
from .store import MemoryStore, Rows, Store, encode
from .vm import VmState

__all__ = ["World", "fingerprint"]

_DOC_PARTS = ("compute", "network", "extended", "loadbalancer")
_CONTROL = "the change is invalid; nothing was changed"
T = TypeVar("T")
#: Seconds between two shipments of the journal to a shared store.
SHIP_EVERY = 0.2
#: The most journal entries one shipment carries: the newest (10,000 a second per process). Past that rate the
#: shared journal keeps the newest of each shipment, the metrics still count every request, and encoding the
#: rest would cost the process more than answering them (and hold the interpreter's lock for milliseconds).
SHIP_MOST = 2_000
#: Seconds between two attempts to reach a shared store that cannot be reached.
RETRY_EVERY = 0.25


def fingerprint(profile: Profile) -> str:
    """What a store's state belongs to: the profile's VMs and fleet (its state is not this profile's else)."""
    described = {"tree": profile.tree, "loadbalancer": profile.loadbalancer, "identity": profile.identity_section,
                 "fleet": repr(profile.fleet)}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


class World:
    """The world of one profile: its first VM, its fleet, the clock, the faults, the journal, kept in ``store``
    (nothing kept without one)."""

    def __init__(self, profile: Profile, *, clock: Clock | None = None, faults: Iterable[FaultRule] = (),
                 store: Store | None = None, journal_size: int = 10_000,
                 scenarios: Iterable[ScenarioEntry] = (), node: str | None = None, scale_set_tags: str = "reboot"):
        self.profile = profile
        self.tags_on_reboot = scale_set_tags == "reboot"  # a scale-set instance shows changed tags at a reboot
        self.clock = clock or Clock()
        self.store = store or MemoryStore()
        self.node = node or f"{socket.gethostname()}:{os.getpid()}"
        self.journal = Journal(journal_size)
        self.record = self.journal.record  # keep a request in the journal and the metrics (a WorldView method)
        self.now = self.clock.now  # the emulated time, epoch seconds (a WorldView method, read on every request)
        self._clock_start = self.clock.state()  # where reset takes the clock back to
        self.base_faults = tuple(faults)
        self.faults = FaultSet(self.base_faults)  # first-seconds count real time since start
        self._books: dict[str, EventBook] = {}
        self._versions: dict[str, int] = {}  # the version of every row applied, so that none is applied twice
        self.version = 0  # every row up to this version is applied
        # A new object whenever an answer found before may no longer hold: a VM's documents replaced, the VMs made
        # anew (a new profile) or a fleet member let go (made anew when next used). What the service found for an
        # address holds while the stamp is the same (``service.ports.WorldView``).
        self.stamp = object()
        self.first = self._make_vm(profile.vm, None)
        self.fleet = self._new_fleet(profile)
        self.per_vm_limits = self.fleet is not None  # rate limits per VM (a fleet) or per source address
        self.fixed_peers = self.fleet is None or not self.fleet.dynamic_sets  # no claims that come and go
        self.version, rows = self.store.changes(0)
        self._restore(rows)
        self._initialize(tuple(profile.scenarios) + tuple(scenarios))
        self._listener: threading.Thread | None = None
        self._shipper: threading.Thread | None = None
        self._stop = threading.Event()
        self._ship_lock = threading.Lock()
        self._shipped = 0  # journal entries shipped so far (or passed over: a shipment carries the newest)

    # -- what the metadata service asks (service.ports.WorldView) ------------------------------------------
    def vm_for(self, peer: str) -> VmState | None:
        """The fleet VM a source address belongs to; the first VM for strangers, unless the fleet is strict.

        With dynamic scale sets a stranger claims an instance instead (a write to the store): NoFreeInstance when
        every one is claimed, EngineUnavailable when a shared store cannot be reached to claim one. A held claim
        is answered from memory; its last call is written now and then, and not at all while the engine is gone.
        """
        fleet = self.fleet
        if fleet is None:
            return self.first
        member = fleet.for_peer(peer)
        if member is None and fleet.dynamic_sets:
            return self._claimed(fleet, peer)
        if member is None and not fleet.strict:
            return self.first
        return member

    def _claimed(self, fleet: Fleet, peer: str) -> VmState:
        now = self.clock.now()
        held = fleet.claimed(peer, now)
        if held is not None:
            scale_set, found = held
            if found.stale(scale_set, now):
                try:
                    self._touch(fleet, peer)
                except EngineUnavailable:
                    return fleet.member(scale_set, found.instance)  # answered from memory; written at a later call
                held = fleet.claimed(peer, self.clock.now())
        elif fleet.has_free(now):
            self._touch(fleet, peer)
            held = fleet.claimed(peer, self.clock.now())
        if held is None:
            raise NoFreeInstance("every instance of the fleet's dynamic scale sets is claimed by another address")
        return fleet.member(held[0], held[1].instance)

    def _touch(self, fleet: Fleet, peer: str) -> None:
        """One transaction: ``peer`` keeps its claim (its last call is now) or claims the lowest free instance;
        claims released by now are dropped from the rows written."""
        sets = fleet.dynamic_sets

        def change(current: dict[str, str]) -> Rows:
            now = self._clock_of(current)()
            saved = {s.name: _claims_row(current.get(f"claims/{s.name}"), s) for s in sets}
            tables = {s.name: live_claims(saved[s.name], s, now) for s in sets}
            if not claim(tables, sets, peer, now):
                return {}
            return {f"claims/{s.name}": _encode_claims(tables[s.name]) for s in sets
                    if tables[s.name] != saved[s.name]}

        self._commit([*(f"claims/{s.name}" for s in sets), "clock"], change)

    def fleet_view(self, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """A page of the VMs (in a fixed order: the first, the explicit VMs, each scale set's instances by index;
        only that page's instances are made) with their sets, addresses, fault and update domains, and the sets;
        for a dynamic scale set, which source address holds each instance now and when it is let go."""
        fleet = self.fleet
        if fleet is None:
            names, total = [self.first.name][offset:offset + limit], 1
        else:
            names, total = fleet.names(offset, limit), len(fleet)
        vms: list[dict[str, Any]] = []
        for name in names:
            vm = self.vm(name)
            place = fleet.placement(name) if fleet is not None else None
            compute = vm.instance.get("compute", {})
            vms.append({"name": name, "scaleSet": place.scale_set if place else None,
                        "availabilitySet": place.availability_set if place else None,
                        "addresses": list(place.addresses) if place else [],
                        "faultDomain": str(compute.get("platformFaultDomain", "")),
                        "updateDomain": str(compute.get("platformUpdateDomain", "")),
                        "changed": vm.changed, "events": len(vm.events.current())})
        sets: list[dict[str, Any]] = []
        if fleet is not None:
            now = self.clock.now()
            for scale_set in fleet.spec.scale_sets:
                item: dict[str, Any] = {"name": scale_set.name, "kind": "scaleSet", "size": scale_set.capacity,
                                        "faultDomains": scale_set.fault_domains,
                                        "updateDomains": scale_set.update_domains}
                if scale_set.dynamic:
                    claims = sorted(live_claims(fleet.claims(scale_set.name), scale_set, now).items(),
                                    key=lambda pair: pair[1].instance)
                    item.update({"addresses": "dynamic", "idleRelease": scale_set.idle_release, "claims": [
                        {"address": address, "vm": scale_set.member_name(c.instance), "claimed": c.since,
                         "lastSeen": c.seen, "releaseAt": c.release_at(scale_set)} for address, c in claims]})
                else:
                    item["addresses"] = str(ipaddress.IPv4Address(scale_set.first_address or 0))
                sets.append(item)
            sizes = Counter(vm.availability_set for vm in fleet.spec.vms if vm.availability_set is not None)
            sets += [{"name": name, "kind": "availabilitySet", "size": size, "faultDomains": None,
                      "updateDomains": None} for name, size in sizes.items()]
        return {"total": total, "offset": offset, "vms": vms, "sets": sets}

    # -- finding VMs ---------------------------------------------------------------------------------------
    def vm(self, name: str | None = None) -> VmState:
        """The VM named ``name`` (None: the profile's own VM). Raises NoSuchTarget."""
        if name is None:
            return self.first
        found = self.fleet.by_name(name) if self.fleet is not None else (self.first if name == self.first.name
                                                                          else None)
        if found is None:
            raise NoSuchTarget(f"no VM named {name!r}")
        return found

    def _has_vm(self, name: str) -> bool:
        try:
            self.vm(name)
        except NoSuchTarget:
            return False
        return True

    def vms(self) -> list[VmState]:
        """Every VM made so far."""
        return self.fleet.made() if self.fleet is not None else [self.first]

    # -- metadata ------------------------------------------------------------------------------------------
    def read_node(self, vm: VmState, path: list[str]) -> Any:
        return _walk(vm.document(), path)

    def set_node(self, vm: VmState, path: list[str], value: Any) -> Any:
        """Replace (or create) the node at ``path``; returns the node as stored after completion."""
        if not path:
            raise InvalidChange("give a path below the document, e.g. compute/tags")

        def edit(draft: _Draft) -> None:
            parent = draft.walk(path[:-1], create=True)
            key = path[-1]
            if isinstance(parent, list):
                index = _index(key, len(parent) + 1)
                if index == len(parent):
                    parent.append(value)
                else:
                    parent[index] = value
            elif isinstance(parent, dict):
                parent[key] = value
            else:
                raise InvalidChange(f"{'/'.join(path[:-1])} is a value, not a mapping or a list")
            _untangle_tags(draft.source, path)

        self._change_vm(vm, edit)
        return self.read_node(vm, path)

    def patch_node(self, vm: VmState, path: list[str], patch: Any) -> Any:
        """JSON merge patch (RFC 7396) of the node at ``path``."""
        if not path:
            if not isinstance(patch, dict):
                raise InvalidChange("a patch of the whole document is a JSON object")

            def edit_all(draft: _Draft) -> None:
                merged = _merge_patch(draft.source, patch, draft.original([]))
                draft.source.clear()
                draft.source.update(merged)
                compute_patch = patch.get("compute")
                _untangle_tags(draft.source, ["compute", "tags"] if isinstance(compute_patch, dict)
                               and "tags" in compute_patch else [])

            self._change_vm(vm, edit_all)
            return vm.document()

        def edit(draft: _Draft) -> None:
            draft.shown_node(path)  # NoSuchTarget when the VM has no such node
            parent = draft.walk(path[:-1])
            key = path[-1]
            if isinstance(parent, list):
                index = _index(key, len(parent))
                parent[index] = _merge_patch(parent[index], patch, draft.original(path))
            else:
                parent[key] = _merge_patch(parent.get(key), patch, draft.original(path))
            _untangle_tags(draft.source, path)

        self._change_vm(vm, edit)
        return self.read_node(vm, path)

    def delete_node(self, vm: VmState, path: list[str]) -> None:
        """Undo the changes to the node at ``path``: a member goes back to what the profile says (or the default
        derived from the rest, as if it had never been given); an array item is removed."""
        if not path:
            raise InvalidChange("give a path below the document, e.g. compute/userData")

        def edit(draft: _Draft) -> None:
            draft.shown_node(path)  # NoSuchTarget when the VM has no such node
            parent = draft.walk(path[:-1])
            if isinstance(parent, list):
                del parent[_index(path[-1], len(parent))]
            else:
                original = draft.original(path)
                if original is _MISSING:
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = deepcopy(original)
            _untangle_tags(draft.source, path)

        self._change_vm(vm, edit)

    def set_tags(self, vm: VmState, tags: dict[str, Any]) -> str:
        """Replace the VM's tags (both the ``tags`` string and ``tagsList``); returns the ``tags`` string."""
        if not isinstance(tags, dict) or not all(isinstance(v, (str, int, float, bool)) for v in tags.values()):
            raise InvalidChange("tags are a mapping of names to string values")
        wanted = {str(k): _tag_text(v) for k, v in tags.items()}
        self._change_vm(vm, lambda draft: with_tags(draft.source.setdefault("compute", {}), wanted))
        pending = vm.pending
        return str(pending["tags"] if pending is not None and "tags" in pending else vm.instance["compute"]["tags"])

    def _change_vm(self, vm: VmState, edit: Callable[[_Draft], None]) -> None:
        """Edit what the VM is, as the store holds it now (the profile's tree with every change so far, before
        defaults: so derived fields follow their sources); validate, complete, write, then show.

        A scale-set instance's tags change only when it next reboots (the IMDS FAQ): a change to them is kept
        apart (``pending``) until then, unless the emulator shows them at once (``scale_set_tags``)."""
        key = f"vm/{vm.name}"
        profile_source = self._profile_source(vm)

        def change(current: dict[str, str]) -> Rows:
            if key in current:
                source, _, pending = _saved_source(current[key])
            else:
                source, pending = deepcopy(profile_source), None
            if pending is not None and vm.events.rebooted_since(vm.name, pending["since"]):
                source = _with_tags(source, pending)  # shown since that reboot: now simply the VM's tags
                pending = None
            shown = vm.document()
            draft = _Draft(deepcopy(source), shown, profile_source)
            edit(draft)
            new_source, instance, loadbalancer = _validated(draft.source)
            if self.tags_on_reboot and instance["compute"].get("vmScaleSetName"):
                tags = _tag_fields(new_source)
                if tags != _tag_fields(source):
                    pending = {**tags, "since": self.clock.now()}
                    new_source = _with_tags(new_source, {"tags": None, "tagsList": None, **_tag_fields(source)})
                    _validated(_with_tags(deepcopy(new_source), pending))  # what the reboot will show is valid too
                    new_source, instance, loadbalancer = _validated(new_source)
            if new_source == profile_source and pending is None:
                return {key: None}  # back to what the profile says
            return {key: encode({"source": _without_lb(new_source), "loadbalancer": loadbalancer,
                                 "pending": pending})}

        self._commit([key], change)

    def _profile_source(self, vm: VmState) -> dict[str, Any]:
        """What the profile says of a VM, before defaults, with its load balancer (validated; a copy)."""
        tree = None
        if vm is not self.first and self.fleet is not None:
            tree = self.fleet.tree_of(vm.name)
        if tree is None:
            tree = self.profile.tree if vm is self.first else vm.model.instance
        tree = validate_tree(deepcopy(tree), "")
        if vm.model.loadbalancer is not None:
            tree["loadbalancer"] = deepcopy(vm.model.loadbalancer)
        return tree

    def reprovision(self, vm: VmState, patch: dict[str, Any] | None = None) -> dict[str, Any]:
        """Hand a pre-provisioned VM over: its ``ppsType`` becomes ``None`` (with ``patch``, a merge patch of its
        documents: its real name, keys, customData…) and /metadata/reprovisiondata answers its OVF environment.
        InvalidChange for a VM its profile does not pre-provision, Conflict for one handed over already."""
        if vm.model.instance["extended"]["compute"]["ppsType"] == "None":
            raise InvalidChange(f"{vm.name} is not pre-provisioned: its profile's extended.compute.ppsType is None")
        if vm.instance["extended"]["compute"]["ppsType"] == "None":
            raise Conflict(f"{vm.name} has been handed over already")
        if patch is not None and not isinstance(patch, dict):
            raise InvalidChange("the body is a merge patch of the VM's documents, a JSON object")
        handover = _merge_patch(patch or {}, {"extended": {"compute": {"ppsType": "None"}}})
        self.patch_node(vm, [], handover)
        return vm.document()

    def reboot(self, vm: VmState) -> None:
        """The VM restarts (or is reimaged, or its disks change): changes to a scale-set instance's tags made
        before now become visible."""
        self._change_book(vm.book_key, lambda book: book.record_reboot([vm.name]))

    # -- events --------------------------------------------------------------------------------------------
    def schedule(self, vm: VmState, spec: EventSpec) -> Event:
        """Publish an event in ``vm``'s book; its resources default to ``vm``."""
        if spec.resources is None:
            spec = spec.model_copy(update={"resources": [vm.name]})
        _check_text(spec.to_mapping())
        event = self._change_book(vm.book_key, lambda book: book.schedule(spec))
        if event is None:  # scheduling always writes: only the other actions may find nothing to do
            raise AssertionError(f"scheduling {spec.type} wrote nothing")
        return event

    def event_action(self, vm: VmState, event_id: str, action: str, by: str | None = None) -> EventBook:
        """``approve`` (by a VM, or by every VM it lists), ``start``, ``complete`` or ``cancel`` an event."""
        if by is not None and by != self.first.name and (self.fleet is None or self.fleet.by_name(by) is None):
            raise NoSuchTarget(f"no VM named {by!r}")

        def act(book: EventBook) -> None:
            if action == "approve":
                book.approve(event_id, by=by)
            elif action == "start":
                book.start(event_id)
            elif action == "complete":
                book.complete(event_id)
            elif action == "cancel":
                book.cancel(event_id)
            else:
                raise InvalidChange(f"no event action {action!r}")

        self._change_book(vm.book_key, act)
        return vm.events

    def approve_events(self, vm: VmState, event_ids: list[str]) -> str | None:
        """A VM's own approval (``POST /metadata/scheduledevents``), all or none: the first id that is no
        current event (nothing approved then), or None."""
        unknown: list[str] = []

        def act(book: EventBook) -> None:
            current = {event.id for event in book.current()}
            missing = next((i for i in event_ids if i.upper() not in current), None)
            if missing is not None:
                unknown.append(missing)
                raise _NothingToWrite()
            for event_id in event_ids:
                try:
                    book.approve(event_id, by=vm.name)
                except (Conflict, NoSuchTarget):  # started or gone meanwhile: approving it is still a success
                    pass

        self._change_book(vm.book_key, act)
        return unknown[0] if unknown else None

    def walk(self, set_name: str, kind: str = "Freeze", gap: float = 1800.0, duration: int | None = None) -> EventBook:
        """A platform update walking a scale set's update domains: one event per domain, ``gap`` apart."""
        scale_set = self.fleet.scale_set(set_name) if self.fleet is not None else None
        if scale_set is None:
            raise NoSuchTarget(f"no scale set named {set_name!r}" if self.fleet is not None
                               else "this emulator has no fleet")
        key = f"vmss:{set_name}"

        def act(book: EventBook) -> None:
            now = self.clock.now()
            notice = EVENT_MIN_NOTICE[kind]
            for index, names in enumerate(scale_set.update_domain_groups()):
                not_before = now + notice + index * gap
                spec = EventSpec(type=kind, resources=names, not_before=not_before, duration=duration)
                book.plan(PlannedEvent(max(now, not_before - notice), spec))

        self._change_book(key, act)
        return self._book(key)

    def _change_book(self, key: str, action: Callable[[EventBook], T]) -> T | None:
        """Run ``action`` on the book as the store holds it now, caught up to now; write it; then show it. Returns
        what ``action`` returned, or None when it found nothing to write."""
        results: list[T] = []

        def change(current: dict[str, str]) -> Rows:
            book = EventBook(self._clock_of(current))
            if f"events/{key}" in current:
                book.load_json(current[f"events/{key}"])
            try:
                results.append(action(book))
            except _NothingToWrite:
                return {}
            return {f"events/{key}": book.to_json()}

        self._commit([f"events/{key}", "clock"], change)
        return results[0] if results else None

    # -- clock and faults ----------------------------------------------------------------------------------
    def advance_clock(self, seconds: float) -> float:
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise InvalidChange(f"the clock only moves forward, by a finite number of seconds, not {seconds}")
        self._change_clock(lambda clock: clock.advance(seconds))
        return self.clock.now()

    def set_time(self, when: float) -> float:
        def jump(clock: Clock) -> None:
            if when < clock.now():
                raise InvalidChange("the clock only moves forward")
            clock.advance(when - clock.now())

        self._change_clock(jump)
        return self.clock.now()

    def set_clock_speed(self, speed: float) -> None:
        self._change_clock(lambda clock: clock.set_speed(speed))

    def _clock_of(self, current: dict[str, str]) -> Callable[[], float]:
        """The world's clock as the store holds it in this transaction (another process may have just moved it,
        and this one not yet applied that): what a change to an event book is caught up to."""
        if "clock" not in current:
            return self.clock.now
        clock = Clock(source=self.clock.source)
        clock.restore(_clock_state(current["clock"]))
        return clock.now

    def _change_clock(self, move: Callable[[Clock], object]) -> None:
        def change(current: dict[str, str]) -> Rows:
            clock = Clock(source=self.clock.source)
            clock.restore(_clock_state(current["clock"]) if "clock" in current else self.clock.state())
            try:
                move(clock)
            except ValueError as exc:
                raise InvalidChange(str(exc)) from None
            return {"clock": encode(asdict(clock.state()))}

        self._commit(["clock"], change)

    def add_fault(self, rule: FaultRule) -> None:
        def change(current: dict[str, str]) -> Rows:
            rules = _fault_rules(current["faults"]) if "faults" in current else list(self.faults.rules)
            return {"faults": encode([r.to_mapping() for r in [*rules, rule]])}

        self._commit(["faults"], change)

    def clear_faults(self) -> None:
        self._commit(["faults"], lambda current: {"faults": "[]"})

    # -- whole state -----------------------------------------------------------------------------------------
    def reset(self, profile: Profile | None = None) -> None:
        """Back to the start, with the profile (or a newly loaded one): metadata, faults and the clock; events
        are cancelled (each removal counts, so DocumentIncarnation still only grows). A new profile becomes the
        one the store's state belongs to: a restart with that file keeps the state."""
        mark = None
        if profile is not None and profile is not self.profile:
            if self.store.shared:
                raise Conflict("a world shared by several processes takes a new profile only when they restart "
                               "with it")
            self._rebuild(profile)
            mark = fingerprint(profile)

        def change(current: dict[str, str]) -> Rows:
            rows: Rows = {key: None for key in current if key.startswith(("vm/", "claims/"))}
            for key in {k for k in current if k.startswith("events/")} | {f"events/{b}" for b in self._books}:
                if key.startswith("events/vm:") and not self._has_vm(key[10:]):
                    rows[key] = None  # the book of a VM the new profile does not have
                    continue
                book = EventBook(self.clock.now)
                if key in current:
                    book.load_json(current[key])
                book.clear()
                book.pending = []
                rows[key] = book.to_json()
            clock = Clock(source=self.clock.source)
            clock.restart(self._clock_start)
            rows["clock"] = encode(asdict(clock.state()))
            rows["faults"] = encode([r.to_mapping() for r in self.base_faults])
            if mark is not None and current.get("profile") != mark:
                rows["profile"] = mark
            return rows

        self._commit(None, change)

    def _rebuild(self, profile: Profile) -> None:
        """A new profile's VMs, keeping the event books (their DocumentIncarnation must never go down)."""
        self.profile = profile
        self.first = self._make_vm(profile.vm, None)
        self.fleet = self._new_fleet(profile)
        self.per_vm_limits = self.fleet is not None
        self.fixed_peers = self.fleet is None or not self.fleet.dynamic_sets
        self._moved()  # once the new VMs are in place: an answer found from the old ones before is not kept
        self._versions = {key: v for key, v in self._versions.items() if not key.startswith(("vm/", "claims/"))}

    def _new_fleet(self, profile: Profile) -> Fleet | None:
        if profile.fleet is None:
            return None
        return Fleet(self.first, profile, self._make_vm, self._book, let_go=self._moved)

    def _moved(self) -> None:
        self.stamp = object()

    def _make_vm(self, model: VmModel, book: EventBook | None) -> VmState:
        key = next((k for k, b in self._books.items() if b is book), None) if book is not None else None
        key = key or f"vm:{model.name}"
        return VmState(model, self._book(key), self.faults, key, self.approve_events, self._reveal, self._moved)

    @staticmethod
    def _reveal(vm: VmState) -> None:
        """The VM rebooted since its tags changed: show them (every process computes the same from the rows)."""
        if vm.source is None or vm.pending is None:
            return
        source = _with_tags(vm.source, vm.pending)
        _, instance, loadbalancer = _validated(deepcopy(source))
        vm.replace(instance, loadbalancer, source, None)

    def _book(self, key: str) -> EventBook:
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = EventBook(self.clock.now)
        return book

    # -- the store ---------------------------------------------------------------------------------------------
    def _commit(self, keys: list[str] | None, change: Callable[[dict[str, str]], Rows]) -> None:
        """One transaction of the store, then its rows applied here (as every other process will)."""
        written: Rows = {}

        def wrapped(current: dict[str, str]) -> Rows:
            written.clear()
            written.update(change(current))
            return written

        version = self.store.update(keys, wrapped)
        if written:  # shown now; ``version`` is left to the listener (rows of others below it may be unapplied)
            self._apply_rows([(key, value, version) for key, value in written.items()], through=None)

    def _initialize(self, scenarios: tuple[ScenarioEntry, ...]) -> None:
        """Once per store: the clock as configured, the scenarios planned from now (a restart continues both)."""
        def change(current: dict[str, str]) -> Rows:
            rows: Rows = {}
            if "clock" not in current:
                rows["clock"] = encode(asdict(self.clock.state()))
            if scenarios and not any(key.startswith("events/") for key in current):
                book = EventBook(self.clock.now)
                for planned in scenario_plan(list(scenarios), self.clock.now(), self.first.name):
                    book.plan(planned)
                rows[f"events/{self.first.book_key}"] = book.to_json()
            return rows

        self._commit(None if scenarios else ["clock"], change)

    def _restore(self, rows: list[tuple[str, str | None, int]]) -> None:
        """Apply what the store holds at start, every row checked first: StateError (nothing applied) for a bad
        one."""
        appliers = []
        for key, value, version in rows:
            try:
                appliers.append((key, version, self._parse(key, value)))
            except (ValueError, ProfileError, NoSuchTarget, RecursionError) as exc:
                where = str(getattr(self.store, "path", self.store.url))
                problem = "; ".join(str(p) for p in exc.problems) if isinstance(exc, ProfileError) else str(exc)
                raise StateError(where, f"row {key!r}: {problem}") from None
        for key, version, apply in appliers:
            apply()
            self._versions[key] = version

    def _apply_rows(self, rows: list[tuple[str, str | None, int]], through: int | None) -> None:
        """Apply rows written by this or another process, each at most once and never an older one; ``through``:
        every row up to that version is now applied (None: these are only this process's own rows)."""
        for key, value, version in rows:
            if version <= self._versions.get(key, 0):
                continue
            try:
                self._parse(key, value)()
            except (ValueError, ProfileError, NoSuchTarget, RecursionError) as exc:
                print(f"azimds: a change to {key!r} in the store cannot be applied here: {exc}", file=sys.stderr)
            self._versions[key] = version
        if through is not None:
            self.version = max(self.version, through)

    def _parse(self, key: str, value: str | None) -> Callable[[], None]:
        """What applying a row does; ValueError (or ProfileError, NoSuchTarget) when it is not a valid one."""
        if key == "profile":
            return lambda: None
        if key == "clock":
            if value is None:
                return lambda: None
            state = _clock_state(value)
            return lambda: self.clock.restore(state)
        if key == "faults":
            rules = _fault_rules(value) if value is not None else list(self.base_faults)
            return lambda: self.faults.replace(rules)
        if key.startswith("vm/"):
            vm = self.vm(key[3:])
            if value is None:
                return lambda: vm.replace(vm.model.instance, vm.model.loadbalancer)
            source, (instance, loadbalancer), pending = _saved_source(value)

            def apply_vm() -> None:
                vm.replace(instance, loadbalancer, source, pending)
                if self.fleet is not None:
                    self.fleet.pin(vm)
            return apply_vm
        if key.startswith("claims/"):
            fleet = self.fleet
            scale_set = fleet.scale_set(key[7:]) if fleet is not None else None
            if fleet is None or scale_set is None or not scale_set.dynamic:
                raise ValueError(f"no dynamic scale set named {key[7:]!r}")
            claims = _claims_row(value, scale_set)
            return lambda: fleet.set_claims(scale_set.name, claims)
        if key.startswith("events/"):
            book_key = key[7:]
            if not book_key.startswith(("vm:", "vmss:", "avset:")):
                raise ValueError(f"no event book {book_key!r}")
            if value is None:
                return lambda: None
            if book_key.startswith("vm:"):
                self.vm(book_key[3:])
            parse_saved(value)
            return lambda: self._book(book_key).load_json(value)
        raise ValueError("not a part of the world azimds keeps")

    # -- other processes ---------------------------------------------------------------------------------------
    def listen(self, schedule: Callable[[Callable[[], None]], None]) -> None:
        """Follow the changes other processes write, applying them through ``schedule`` (which runs a function
        on the thread that owns this world), and ship this process's journal (on a thread of its own, so that
        a shipment never delays a change); until ``close``."""
        if not self.store.shared or self._listener is not None:
            return

        def follow() -> None:
            seen = self.version
            lost = False
            while not self._stop.is_set():
                try:
                    if self.store.wait(seen, SHIP_EVERY):
                        seen, rows = self.store.changes(seen)
                        if rows:
                            schedule(functools.partial(self._apply_rows, rows, seen))
                    if lost:
                        lost = False
                        print(f"azimds: the state engine is back; caught up to version {seen}", file=sys.stderr,
                              flush=True)
                except EngineUnavailable as exc:  # answering from memory meanwhile; changes are refused (503)
                    if not lost:
                        lost = True
                        print(f"azimds: answering from memory, changes refused until the state engine is back: "
                              f"{exc.message}", file=sys.stderr, flush=True)
                    self._stop.wait(RETRY_EVERY)
                except Exception as exc:  # noqa: BLE001 - the listener must outlive a bad moment of the engine
                    print(f"azimds: following the store's changes: {type(exc).__name__}: {exc}", file=sys.stderr)
                    self._stop.wait(RETRY_EVERY)

        def ship() -> None:
            while not self._stop.wait(SHIP_EVERY):
                try:
                    self.ship()
                except EngineUnavailable:
                    pass  # the listener says so; the entries wait here for the engine
                except Exception as exc:  # noqa: BLE001 - shipping must outlive a bad moment of the engine
                    print(f"azimds: shipping the journal: {type(exc).__name__}: {exc}", file=sys.stderr)

        self._listener = threading.Thread(target=follow, name="azimds-listener", daemon=True)
        self._shipper = threading.Thread(target=ship, name="azimds-shipper", daemon=True)
        self._listener.start()
        self._shipper.start()

    def ship(self) -> None:
        """Send the journal entries not yet shipped, and the metrics, to a shared store (from the listener and
        from the control plane's thread, one at a time, while the serving thread goes on recording)."""
        if not self.store.shared:
            return
        with self._ship_lock:
            fresh, total = self.journal.shipment(self._shipped, SHIP_MOST)
            self.store.ship(self.node, fresh, json.dumps(self.journal.metrics().to_mapping()))
            self._shipped = total

    def journal_entries(self, since: float = 0.0) -> list[JournalEntry]:
        """The requests answered from ``since`` (emulated time), oldest first: this process's, or in a shared world
        every process's (as shipped to the store, this one's first shipped now)."""
        if not self.store.shared:
            return [entry for entry in self.journal.entries() if entry.time >= since]
        self.ship()
        return [JournalEntry(*row) for row in self.store.journal(since, self.journal.size)]

    def metrics(self) -> Metrics:
        """The request counts: this process's, or in a shared world the sum of every process's."""
        if not self.store.shared:
            return self.journal.metrics()
        self.ship()
        total = Metrics()
        for text in self.store.metrics().values():
            total.add(json.loads(text))
        return total

    def close(self) -> None:
        self._stop.set()
        for thread in (self._listener, self._shipper):
            if thread is not None:
                thread.join(timeout=5)
        try:
            self.ship()
        except EngineUnavailable:
            pass


class _NothingToWrite(Exception):
    """Raised inside a change to write nothing (and say why through the caller's own state)."""


_MISSING: Any = object()  # what the profile says of a node it leaves out


class _Draft:
    """A change being made to a VM: ``source`` (what the VM is, before defaults: the profile's tree with every
    change so far, its load balancer under ``loadbalancer``) being edited, ``shown`` (its documents as served
    now) and ``profile`` (what the profile says: where a removed member goes back to)."""

    def __init__(self, source: dict[str, Any], shown: dict[str, Any], profile: dict[str, Any]):
        self.source, self.shown, self.profile = source, shown, profile

    def shown_node(self, path: list[str]) -> Any:
        """The node at ``path`` as the VM shows it; NoSuchTarget when it has none."""
        return _walk(self.shown, path)

    def walk(self, path: list[str], create: bool = False) -> Any:
        """The node at ``path`` in ``source``, made there from what the VM shows where ``source`` leaves it out (a
        list is copied whole, a mapping begun empty); with ``create``, mappings the VM lacks are made too."""
        node: Any = self.source
        shown: Any = self.shown
        for depth, key in enumerate(path):
            if isinstance(node, list):
                index = _index(key, len(node))
                node = node[index]
                shown = shown[index] if isinstance(shown, list) and index < len(shown) else None
                continue
            if not isinstance(node, dict):
                raise InvalidChange(f"{'/'.join(path[:depth])} is a value, not a mapping or a list")
            there = shown.get(key) if isinstance(shown, dict) else None
            if key not in node:
                if isinstance(there, list):
                    node[key] = deepcopy(there)
                elif isinstance(there, dict) or create:
                    node[key] = {}
                else:
                    raise NoSuchTarget(f"no such node: {'/'.join(path)}")
            node, shown = node[key], there
        return node

    def original(self, path: list[str]) -> Any:
        """What the profile says at ``path`` (``_MISSING`` when it says nothing there)."""
        node: Any = self.profile
        for key in path:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return _MISSING
        return node


def _validated(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """A VM's source (its tree before defaults, with ``loadbalancer``) validated: (the validated source, the
    completed instance document, the load balancer document). Raises InvalidChange."""
    _check_text(doc)
    extra = sorted(set(doc) - set(_DOC_PARTS))
    if extra:
        raise InvalidChange(_CONTROL, [(extra[0], "unknown field")])
    try:
        validated = validate_tree(doc, "")
    except ProfileError as exc:
        raise InvalidChange(_CONTROL, exc.problems) from None
    tree = dict(validated)
    loadbalancer = tree.pop("loadbalancer", None)
    problems = public_ip_problems(tree, loadbalancer)
    instance = complete(tree, problems)
    if problems:
        raise InvalidChange(_CONTROL, problems)
    return validated, instance, loadbalancer


_TAG_FIELDS = ("tags", "tagsList")


def _tag_fields(tree: dict[str, Any]) -> dict[str, Any]:
    """The tags a source gives (None for a form it leaves to be derived)."""
    compute = tree.get("compute")
    return {name: compute.get(name) if isinstance(compute, dict) else None for name in _TAG_FIELDS}


def _with_tags(tree: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``tree`` whose tags are ``fields``'s (None: the form is derived from the other)."""
    tree = deepcopy(tree)
    compute = tree.setdefault("compute", {})
    for name in _TAG_FIELDS:
        if fields.get(name) is None:
            compute.pop(name, None)
        else:
            compute[name] = deepcopy(fields[name])
    return tree


def _without_lb(source: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in source.items() if key != "loadbalancer"}


def _saved_source(value: str) -> tuple[dict[str, Any], tuple[dict[str, Any], dict[str, Any] | None],
                                       dict[str, Any] | None]:
    """A VM's row: (its source with ``loadbalancer``, (instance, loadbalancer) as shown, its pending tags).
    ValueError (or InvalidChange) when the row is not one. Rows of earlier versions held the completed documents
    (``instance``): they are read as a source that gives every field."""
    doc = json.loads(value)
    if not isinstance(doc, dict) or not isinstance(doc.get("loadbalancer"), (dict, type(None))):
        raise ValueError("not a VM's documents")
    lb = doc["loadbalancer"]
    if set(doc) == {"instance", "loadbalancer"} and isinstance(doc["instance"], dict):
        source, pending = {**doc["instance"], **({"loadbalancer": lb} if lb is not None else {})}, None
    elif set(doc) == {"source", "loadbalancer", "pending"} and isinstance(doc["source"], dict):
        source, pending = {**doc["source"], **({"loadbalancer": lb} if lb is not None else {})}, doc["pending"]
    else:
        raise ValueError("not a VM's documents")
    validated, instance, loadbalancer = _validated(deepcopy(source))
    if validated != source or loadbalancer != lb:
        raise ValueError("not a VM's documents, as azimds keeps them")
    if "instance" in doc and instance != doc["instance"]:
        raise ValueError("not a complete VM document, as azimds keeps them")
    if pending is not None:
        since = pending.get("since") if isinstance(pending, dict) else None
        if (not isinstance(since, (int, float)) or isinstance(since, bool) or not math.isfinite(since)
                or set(pending) != {"since", *_TAG_FIELDS}):
            raise ValueError("not a VM's pending tags")
        _validated(_with_tags(source, pending))
    return source, (instance, loadbalancer), pending


def _claims_row(value: str | None, scale_set: ScaleSet) -> dict[str, Claim]:
    """A dynamic scale set's claims as written (``{address: {instance, since, seen}}``); ValueError when the row is
    not one azimds writes."""
    if value is None:
        return {}
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError("not a scale set's claims")
    claims: dict[str, Claim] = {}
    for address, item in data.items():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"a claim by {address!r}, which is not an address") from None
        if not isinstance(item, dict) or set(item) != {"instance", "since", "seen"}:
            raise ValueError(f"not a claim: {item!r}")
        index, since, seen = item["instance"], item["since"], item["seen"]
        if (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < scale_set.capacity
                or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
                           for t in (since, seen))):
            raise ValueError(f"not a claim of one of {scale_set.name}'s {scale_set.capacity} instances: {item!r}")
        claims[address] = Claim(index, float(since), float(seen))
    if len({c.instance for c in claims.values()}) != len(claims):
        raise ValueError(f"two addresses claim the same instance of {scale_set.name}")
    return claims


def _encode_claims(claims: dict[str, Claim]) -> str | None:
    """A set's claims as its row (None: no claim, no row)."""
    if not claims:
        return None
    return encode({address: c._asdict() for address, c in sorted(claims.items(), key=lambda pair: pair[1].instance)})


def _fault_rules(value: str) -> list[FaultRule]:
    items = json.loads(value)
    if not isinstance(items, list):
        raise ValueError("not a list of faults")
    return [FaultRule.from_mapping(item) for item in items]


def _clock_state(text: str) -> ClockState:
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) != {"mode", "speed", "anchor", "real_anchor"}:
        raise ValueError("not a clock")
    numbers = [data["speed"], data["anchor"], data["real_anchor"]]
    if data["mode"] not in ("real", "scaled", "manual") or not all(
            isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) for n in numbers):
        raise ValueError("not a clock")
    if not 0 <= data["speed"] <= 1_000_000 or not 0 <= data["anchor"] <= LATEST:
        raise ValueError("a clock outside what the emulator can run")
    return ClockState(data["mode"], float(data["speed"]), float(data["anchor"]), float(data["real_anchor"]))


def _check_text(value: Any) -> None:
    """Refuse text the answers could not be written with (lone surrogates from JSON escapes)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidChange("text that is not valid Unicode (a lone surrogate) cannot be served") from None
    except (TypeError, ValueError) as exc:
        raise InvalidChange(f"not a JSON value: {exc}") from None


def _tag_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _walk(doc: Any, path: list[str], create: bool = False) -> Any:
    try:
        return render.walk(doc, path, create=create)
    except render.NotFound:
        raise NoSuchTarget(f"no such node: {'/'.join(path)}") from None


def _index(key: str, length: int) -> int:
    try:
        return render.index(key, length)
    except render.NotFound:
        raise NoSuchTarget(f"no such node: no item {key}") from None


def _merge_patch(target: Any, patch: Any, original: Any = _MISSING) -> Any:
    """JSON merge patch (RFC 7396), where ``null`` undoes a member's changes: it goes back to ``original``'s
    (what the profile says there), or is removed when the profile says nothing."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        before = original.get(key, _MISSING) if isinstance(original, dict) else _MISSING
        if value is None:
            if before is _MISSING:
                result.pop(key, None)
            else:
                result[key] = deepcopy(before)
        else:
            result[key] = _merge_patch(result.get(key), value, before)
    return result


def _untangle_tags(doc: dict[str, Any], path: list[str]) -> None:
    """After a change to one form of the tags, drop the other so defaults derive it again."""
    compute = doc.get("compute", {})
    if not isinstance(compute, dict):
        return
    if path[:2] == ["compute", "tags"] or (path == ["compute"] and "tagsList" not in compute):
        compute.pop("tagsList", None)
    elif path[:2] == ["compute", "tagsList"]:
        compute.pop("tags", None)
