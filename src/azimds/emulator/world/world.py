"""Everything that can change while the emulator runs — the VM, its events, the clock, the faults — in one place.

The metadata service reads it; the control plane changes it, only through the methods here, each of which
validates first (a bad change is refused whole and changes nothing) and persists to the store before it
returns.
"""

from __future__ import annotations

import bisect
import json
from collections import deque
from copy import deepcopy
from dataclasses import asdict
from typing import Any, NamedTuple

from . import profile as profiles
from .clock import Clock, ClockState
from .events import EventBook
from .faults import Fault, FaultSet
from .profile import Profile, ProfileError, Vm
from .store import Store

__all__ = ["Emulation", "JournalEntry", "Metrics", "NodeError"]

_DOC_PARTS = ("compute", "network", "extended", "loadbalancer")


class NodeError(LookupError):
    """A metadata path that names no node."""


class JournalEntry(NamedTuple):
    """One request the metadata port answered: for test assertions and the control plane."""

    time: float  # emulated clock, epoch seconds
    peer: str
    method: str
    url: str
    status: int  # 0 when a fault dropped the connection
    latency: float  # real seconds from request to answer


class Metrics:
    """Cumulative request counts by endpoint and status, and a latency histogram, for /metrics."""

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency_counts = [0] * (len(self.BUCKETS) + 1)
        self.latency_sum = 0.0

    def observe(self, endpoint: str, status: int, latency: float) -> None:
        key = (endpoint, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency_counts[bisect.bisect_left(self.BUCKETS, latency)] += 1
        self.latency_sum += latency


class Emulation:
    """The emulated world of one VM."""

    def __init__(self, profile: Profile, *, clock: Clock | None = None, faults: list[Fault] | None = None,
                 store: Store | None = None, journal_size: int = 10_000,
                 scenarios: list[dict[str, Any]] | None = None, shared: "Emulation | None" = None,
                 events: EventBook | None = None):
        """``shared``: a fleet's first VM, whose clock, journal and metrics this VM uses too; ``events``: the
        book of the availability set or scale set this VM belongs to."""
        self.profile = profile
        self.vm = Vm(profile)
        self.vm.owner = self
        self.clock = shared.clock if shared is not None else clock or Clock()
        self.store = store
        self.events = events or EventBook(self.clock.now, on_change=self._events_changed)
        self.base_faults = list(faults or [])
        self.faults = FaultSet(list(self.base_faults))  # first-seconds count real time since start
        self.journal: deque[JournalEntry] = shared.journal if shared is not None else deque(maxlen=journal_size)
        self.metrics = shared.metrics if shared is not None else Metrics()
        saved = store.load() if store is not None else {}
        if saved:
            self._restore(saved)
        if store is not None and "clock" not in saved:  # so a restart continues this clock, manual ones too
            self._save_clock()
        if scenarios and "events" not in saved:  # planned once; a restart finds them in the saved events
            self.plan_scenarios(scenarios)

    # -- metadata nodes ---------------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        """The VM's whole metadata as the control plane sees it (newest shape, not gated)."""
        doc = dict(self.vm.instance)
        if self.vm.loadbalancer is not None:
            doc["loadbalancer"] = self.vm.loadbalancer
        return doc

    def read_node(self, path: list[str]) -> Any:
        return _walk(self.document(), path)

    def set_node(self, path: list[str], value: Any) -> Any:
        """Replace (or create) the node at ``path``; returns the node as stored after completion."""
        if not path:
            raise NodeError("give a path below the document, e.g. compute/tags")
        doc = deepcopy(self.document())
        parent = _walk(doc, path[:-1], create=True)
        key = path[-1]
        if isinstance(parent, list):
            index = _index(key, len(parent) + 1)
            if index == len(parent):
                parent.append(value)
            else:
                parent[index] = value
        else:
            parent[key] = value
        _untangle_tags(doc, path)
        self._apply(doc)
        return self.read_node(path)

    def patch_node(self, path: list[str], patch: Any) -> Any:
        """JSON merge patch (RFC 7396) of the node at ``path``."""
        current = deepcopy(self.read_node(path)) if path else deepcopy(self.document())
        merged = _merge_patch(current, patch)
        if not path:
            if not isinstance(merged, dict):
                raise NodeError("the document root is a mapping")
            _untangle_tags(merged, ["compute", "tags"] if "tags" in patch.get("compute", {}) else [])
            self._apply(merged)
            return self.document()
        return self.set_node(path, merged)

    def delete_node(self, path: list[str]) -> None:
        """Remove the node at ``path``; defaults fill it again where the real service always has it."""
        if not path:
            raise NodeError("give a path below the document, e.g. compute/userData")
        doc = deepcopy(self.document())
        parent = _walk(doc, path[:-1])
        if isinstance(parent, list):
            del parent[_index(path[-1], len(parent))]
        elif isinstance(parent, dict) and path[-1] in parent:
            del parent[path[-1]]
        else:
            raise NodeError("/".join(path))
        _untangle_tags(doc, path)
        self._apply(doc)

    def set_tags(self, tags: dict[str, Any]) -> dict[str, Any]:
        """Replace the VM's tags (both the ``tags`` string and ``tagsList``)."""
        if not isinstance(tags, dict):
            raise ProfileError("<control>", [("tags", "tags are a mapping of names to values")])
        doc = deepcopy(self.document())
        doc["compute"].pop("tagsList", None)
        doc["compute"]["tags"] = tags
        self._apply(doc)
        return self.vm.instance["compute"]["tags"]

    def _apply(self, doc: dict[str, Any]) -> None:
        """Validate and complete a whole new document, persist it, then swap it in."""
        tree = {k: v for k, v in doc.items() if k in _DOC_PARTS}
        extra = set(doc) - set(_DOC_PARTS)
        if extra:
            raise ProfileError("<control>", [(sorted(extra)[0], "unknown field")])
        fresh = profiles.from_tree(tree, "<control>")
        if self.store is not None:
            self.store.save({"vm": json.dumps({"instance": fresh.instance, "loadbalancer": fresh.loadbalancer})})
        self.vm.replace(fresh.instance, fresh.loadbalancer)

    def plan_scenarios(self, entries: list[dict[str, Any]]) -> None:
        """Queue scenario events, their times counted from now. Raises ValueError naming a bad entry."""
        from .events import scenario_plan

        for item in scenario_plan(entries, self.clock.now(), self.vm.instance["compute"]["name"]):
            self.events.plan(item)

    # -- clock and faults ---------------------------------------------------------------------------------
    def advance_clock(self, seconds: float) -> float:
        self.events.catch_up()
        now = self.clock.advance(seconds)
        self._save_clock()
        self.events.catch_up()
        return now

    def set_clock_speed(self, speed: float) -> None:
        self.clock.set_speed(speed)
        self._save_clock()

    def add_fault(self, fault: Fault) -> None:
        self.faults.faults.append(fault)
        self._save_faults()

    def clear_faults(self) -> None:
        self.faults.faults.clear()
        self._save_faults()

    # -- whole state ----------------------------------------------------------------------------------------
    def reset(self, profile: Profile | None = None) -> None:
        """Back to the profile (or a newly loaded one): metadata, faults; events are cancelled."""
        self.profile = profile or self.profile
        self.events.clear()
        self.faults.faults[:] = list(self.base_faults)
        if self.store is not None:
            self.store.clear(["vm", "faults"])
            self._save_faults()
        self.vm.replace(self.profile.instance, self.profile.loadbalancer)

    def _events_changed(self, book: EventBook) -> None:
        if self.store is not None:
            self.store.save({"events": book.to_json()})

    def _save_clock(self) -> None:
        if self.store is not None:
            self.store.save({"clock": json.dumps(asdict(self.clock.state()))})

    def _save_faults(self) -> None:
        if self.store is not None:
            self.store.save({"faults": json.dumps([f.to_dict() for f in self.faults.faults])})

    def _restore(self, saved: dict[str, str]) -> None:
        from .faults import from_profile

        if "clock" in saved:
            self.clock.restore(ClockState(**json.loads(saved["clock"])))
        if "vm" in saved:
            vm = json.loads(saved["vm"])
            self.vm.replace(vm["instance"], vm["loadbalancer"])
        if "events" in saved:
            self.events.load_json(saved["events"])
        if "faults" in saved:
            self.faults.faults[:] = from_profile(json.loads(saved["faults"]))


def _walk(doc: Any, path: list[str], create: bool = False) -> Any:
    node = doc
    for key in path:
        if isinstance(node, dict):
            if key not in node:
                if not create:
                    raise NodeError("/".join(path))
                node[key] = {}
            node = node[key]
        elif isinstance(node, list):
            node = node[_index(key, len(node))]
        else:
            raise NodeError("/".join(path))
    return node


def _index(key: str, length: int) -> int:
    if not key.isdigit() or int(key) >= length or (len(key) > 1 and key[0] == "0"):
        raise NodeError(f"no item {key}")
    return int(key)


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
    if path[:2] == ["compute", "tags"] or (path == ["compute"] and "tagsList" not in compute):
        compute.pop("tagsList", None)
    elif path[:2] == ["compute", "tagsList"]:
        compute.pop("tags", None)
