"""The emulated world: everything that changes while the emulator runs — its VMs, their events, the clock, the
faults, the journal — and the only way to change it.

The metadata service reads it (it is a ``service.ports.WorldView``); the control plane, the in-process
``Emulator.control`` calls and scenarios change it, only through the methods here, each of which validates
first (a bad change is refused whole and changes nothing: ``InvalidChange``, ``NoSuchTarget``, ``Conflict``)
and persists to the store before it returns.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from copy import deepcopy
from dataclasses import asdict
from typing import Any

from ...azure import EVENT_MIN_NOTICE
from ...errors import InvalidChange, NoSuchTarget, ProfileError, StateError
from ..model.defaults import complete
from ..model.events import EventSpec, PlannedEvent, ScenarioEntry, scenario_plan
from ..model.faults import FaultRule
from ..model.fleet import with_tags
from ..model.profile import Profile, VmModel, validate_tree
from ..service import render
from .clock import LATEST, Clock, ClockState
from .events import Event, EventBook, parse_saved
from .faults import FaultSet
from .fleet import Fleet
from .journal import Journal
from .store import Store
from .vm import VmState

__all__ = ["World", "fingerprint"]

_DOC_PARTS = ("compute", "network", "extended", "loadbalancer")
_CONTROL = "the change is invalid; nothing was changed"


def fingerprint(profile: Profile) -> str:
    """What a store's state belongs to: the profile's VMs and fleet (its state is not this profile's else)."""
    described = {"tree": profile.tree, "loadbalancer": profile.loadbalancer, "identity": profile.identity_section,
                 "fleet": repr(profile.fleet)}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


class World:
    """The world of one profile: its first VM, its fleet, the clock, the faults, the journal."""

    def __init__(self, profile: Profile, *, clock: Clock | None = None, faults: Iterable[FaultRule] = (),
                 store: Store | None = None, journal_size: int = 10_000,
                 scenarios: Iterable[ScenarioEntry] = ()):
        self.profile = profile
        self.clock = clock or Clock()
        self.store = store
        self.journal = Journal(journal_size)
        self.record = self.journal.record  # keep a request in the journal and the metrics (a WorldView method)
        self.base_faults = tuple(faults)
        self.faults = FaultSet(self.base_faults)  # first-seconds count real time since start
        self._books: dict[str, EventBook] = {}
        self.now = self.clock.now  # the emulated time, epoch seconds (a WorldView method, read on every request)
        self._clock_start = self.clock.state()  # where reset takes the clock back to
        self.first = self._make_vm(profile.vm, None)
        self.fleet = Fleet(self.first, profile, self._make_vm, self._book) if profile.fleet is not None else None
        self.per_vm_limits = self.fleet is not None  # rate limits per VM (a fleet) or per source address
        saved = store.load() if store is not None else {}
        if saved:
            self._restore(saved)
        if store is not None and "clock" not in saved:  # so a restart continues this clock, manual ones too
            self._save_clock()
        planned = tuple(profile.scenarios) + tuple(scenarios)
        if planned and not any(key.startswith("events/") for key in saved):  # planned once; a restart has them
            self.plan_scenarios(planned)

    # -- what the metadata service asks (service.ports.WorldView) ------------------------------------------
    def vm_for(self, peer: str) -> VmState | None:
        """The fleet VM a source address belongs to; the first VM for strangers, unless the fleet is strict."""
        if self.fleet is None:
            return self.first
        member = self.fleet.for_peer(peer)
        if member is None and not self.fleet.strict:
            return self.first
        return member

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
        doc = deepcopy(vm.document())
        parent = _walk(doc, path[:-1], create=True)
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
        _untangle_tags(doc, path)
        self._apply(vm, doc)
        return self.read_node(vm, path)

    def patch_node(self, vm: VmState, path: list[str], patch: Any) -> Any:
        """JSON merge patch (RFC 7396) of the node at ``path``."""
        if not path:
            if not isinstance(patch, dict):
                raise InvalidChange("a patch of the whole document is a JSON object")
            merged = _merge_patch(deepcopy(vm.document()), patch)
            compute_patch = patch.get("compute")
            _untangle_tags(merged, ["compute", "tags"] if isinstance(compute_patch, dict) and "tags" in compute_patch
                           else [])
            self._apply(vm, merged)
            return vm.document()
        current = deepcopy(self.read_node(vm, path))
        return self.set_node(vm, path, _merge_patch(current, patch))

    def delete_node(self, vm: VmState, path: list[str]) -> None:
        """Remove the node at ``path``; defaults fill it again where the real service always has it."""
        if not path:
            raise InvalidChange("give a path below the document, e.g. compute/userData")
        doc = deepcopy(vm.document())
        parent = _walk(doc, path[:-1])
        if isinstance(parent, list):
            del parent[_index(path[-1], len(parent))]
        elif isinstance(parent, dict) and path[-1] in parent:
            del parent[path[-1]]
        else:
            raise NoSuchTarget(f"no such node: {'/'.join(path)}")
        _untangle_tags(doc, path)
        self._apply(vm, doc)

    def set_tags(self, vm: VmState, tags: dict[str, Any]) -> str:
        """Replace the VM's tags (both the ``tags`` string and ``tagsList``); returns the ``tags`` string."""
        if not isinstance(tags, dict) or not all(isinstance(v, (str, int, float, bool)) for v in tags.values()):
            raise InvalidChange("tags are a mapping of names to string values")
        doc = deepcopy(vm.document())
        with_tags(doc["compute"], {str(k): _tag_text(v) for k, v in tags.items()})
        _check_text(doc)
        self._apply(vm, doc)
        return str(vm.instance["compute"]["tags"])

    def _apply(self, vm: VmState, doc: dict[str, Any]) -> None:
        """Validate and complete a whole new document, persist it, then swap it in."""
        _check_text(doc)
        extra = sorted(set(doc) - set(_DOC_PARTS))
        if extra:
            raise InvalidChange(_CONTROL, [(extra[0], "unknown field")])
        tree = {k: v for k, v in doc.items() if k in _DOC_PARTS and k != "loadbalancer"}
        lb = doc.get("loadbalancer")
        try:
            validated = validate_tree({**tree, **({"loadbalancer": lb} if lb is not None else {})}, "")
        except ProfileError as exc:
            raise InvalidChange(_CONTROL, exc.problems) from None
        loadbalancer = validated.pop("loadbalancer", None)
        problems: list[tuple[str, str]] = []
        instance = complete(validated, problems)
        if problems:
            raise InvalidChange(_CONTROL, problems)
        self._save({f"vm/{vm.name}": json.dumps({"instance": instance, "loadbalancer": loadbalancer})})
        vm.replace(instance, loadbalancer)
        if self.fleet is not None:
            self.fleet.pin(vm)

    # -- events --------------------------------------------------------------------------------------------
    def schedule(self, vm: VmState, spec: EventSpec) -> Event:
        """Publish an event in ``vm``'s book; its resources default to ``vm``."""
        if spec.resources is None:
            spec = spec.model_copy(update={"resources": [vm.name]})
        _check_text(spec.to_mapping())
        return vm.events.schedule(spec)

    def event_action(self, vm: VmState, event_id: str, action: str, by: str | None = None) -> EventBook:
        """``approve`` (by a VM, or by every VM it lists), ``start``, ``complete`` or ``cancel`` an event."""
        book = vm.events
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
        return book

    def walk(self, set_name: str, kind: str = "Freeze", gap: float = 1800.0, duration: int | None = None) -> EventBook:
        """A platform update walking a scale set's update domains: one event per domain, ``gap`` apart."""
        scale_set = self.fleet.scale_set(set_name) if self.fleet is not None else None
        if scale_set is None:
            raise NoSuchTarget(f"no scale set named {set_name!r}" if self.fleet is not None
                               else "this emulator has no fleet")
        book = self._book(f"vmss:{set_name}")
        now = self.clock.now()
        notice = EVENT_MIN_NOTICE[kind]
        for index, names in enumerate(scale_set.update_domain_groups()):
            not_before = now + notice + index * gap
            spec = EventSpec(type=kind, resources=names, not_before=not_before, duration=duration)
            book.plan(PlannedEvent(max(now, not_before - notice), spec))
        return book

    def plan_scenarios(self, entries: Iterable[ScenarioEntry]) -> None:
        """Queue scenario events in the first VM's book, their times counted from now."""
        for planned in scenario_plan(list(entries), self.clock.now(), self.first.name):
            self.first.events.plan(planned)

    # -- clock and faults ----------------------------------------------------------------------------------
    def advance_clock(self, seconds: float) -> float:
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise InvalidChange(f"the clock only moves forward, by a finite number of seconds, not {seconds}")
        try:
            now = self.clock.advance(seconds)
        except ValueError as exc:
            raise InvalidChange(str(exc)) from None
        self._save_clock()
        for book in self._books.values():
            book.catch_up()
        return now

    def set_time(self, when: float) -> float:
        current = self.clock.now()
        if when < current:
            raise InvalidChange("the clock only moves forward")
        return self.advance_clock(when - current)

    def set_clock_speed(self, speed: float) -> None:
        try:
            self.clock.set_speed(speed)
        except ValueError as exc:
            raise InvalidChange(str(exc)) from None
        self._save_clock()

    def add_fault(self, rule: FaultRule) -> None:
        self._save({"faults": json.dumps([r.to_mapping() for r in [*self.faults.rules, rule]])})
        self.faults.add(rule)

    def clear_faults(self) -> None:
        self._save({"faults": "[]"})
        self.faults.clear()

    # -- whole state -----------------------------------------------------------------------------------------
    def reset(self, profile: Profile | None = None) -> None:
        """Back to the start, with the profile (or a newly loaded one): metadata, faults and the clock; events
        are cancelled (each removal counts, so DocumentIncarnation still only grows)."""
        if profile is not None and profile is not self.profile:
            self._rebuild(profile)
        self.clock.restart(self._clock_start)
        self._save_clock()
        for book in self._books.values():
            book.clear()
        self.faults.replace(self.base_faults)
        if self.store is not None:
            self.store.clear([key for key in self.store.load() if key.startswith("vm/") or key == "faults"])
            self._save({"faults": json.dumps([r.to_mapping() for r in self.base_faults])})
        for vm in self.vms():
            vm.replace(vm.model.instance, vm.model.loadbalancer)

    def _rebuild(self, profile: Profile) -> None:
        """A new profile's VMs, keeping the event books (their DocumentIncarnation must never go down)."""
        self.profile = profile
        self.first = self._make_vm(profile.vm, None)
        self.fleet = Fleet(self.first, profile, self._make_vm, self._book) if profile.fleet is not None else None
        self.per_vm_limits = self.fleet is not None

    def _make_vm(self, model: VmModel, book: EventBook | None) -> VmState:
        return VmState(model, book or self._book(f"vm:{model.name}"), self.faults)

    def _book(self, key: str) -> EventBook:
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = EventBook(self.clock.now, on_change=lambda b: self._save(
                {f"events/{key}": b.to_json()}))
        return book

    def _save(self, items: dict[str, str]) -> None:
        if self.store is not None:
            self.store.save(items)

    def _save_clock(self) -> None:
        self._save({"clock": json.dumps(asdict(self.clock.state()))})

    def _restore(self, saved: dict[str, str]) -> None:
        """Apply what the store kept, every row checked first: StateError (nothing applied) for a bad one."""
        where = str(self.store.path) if self.store is not None else "state"
        clock = None
        rules: list[FaultRule] | None = None
        documents: list[tuple[VmState, dict[str, Any], dict[str, Any] | None]] = []
        books: list[tuple[str, str]] = []
        for key, value in saved.items():
            try:
                if key == "profile":
                    continue
                if key == "clock":
                    clock = _clock_state(value)
                elif key == "faults":
                    items = json.loads(value)
                    if not isinstance(items, list):
                        raise ValueError("not a list of faults")
                    rules = [FaultRule.from_mapping(item) for item in items]
                elif key.startswith("vm/"):
                    documents.append(self._saved_documents(key[3:], value))
                elif key.startswith("events/"):
                    book_key = key[7:]
                    if not book_key.startswith(("vm:", "vmss:", "avset:")):
                        raise ValueError(f"no event book {book_key!r}")
                    if book_key.startswith("vm:"):
                        self.vm(book_key[3:])
                    parse_saved(value)
                    books.append((book_key, value))
                else:
                    raise ValueError("not a part of the world azimds keeps")
            except (ValueError, ProfileError, NoSuchTarget, RecursionError) as exc:
                problem = "; ".join(str(p) for p in exc.problems) if isinstance(exc, ProfileError) else str(exc)
                raise StateError(where, f"row {key!r}: {problem}") from None
        if clock is not None:
            self.clock.restore(clock)
        if rules is not None:
            self.faults.replace(rules)
        for vm, instance, loadbalancer in documents:
            vm.replace(instance, loadbalancer)
            if self.fleet is not None:
                self.fleet.pin(vm)
        for book_key, value in books:
            self._book(book_key).load_json(value)

    def _saved_documents(self, name: str, value: str) -> tuple[VmState, dict[str, Any], dict[str, Any] | None]:
        vm = self.vm(name)
        doc = json.loads(value)
        if not isinstance(doc, dict) or set(doc) != {"instance", "loadbalancer"}:
            raise ValueError("not a VM's documents")
        if not isinstance(doc["instance"], dict):
            raise ValueError("not a VM's documents")
        lb = doc["loadbalancer"]
        checked = validate_tree({**doc["instance"], **({"loadbalancer": lb} if lb is not None else {})}, "")
        loadbalancer = checked.pop("loadbalancer", None)
        problems: list[tuple[str, str]] = []
        if complete(checked, problems) != doc["instance"] or problems or loadbalancer != lb:
            raise ValueError("not a complete VM document, as azimds keeps them")
        return vm, doc["instance"], loadbalancer


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


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
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
