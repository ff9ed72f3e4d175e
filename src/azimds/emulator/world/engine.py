"""The interface of the store every engine implements: rows of JSON by key, each write one versioned
transaction, changes since a version, a wait for the next change, and the shipped journal.

See ``store`` for what the world keeps there and for the engines (``SqliteStore`` and the in-memory one);
``postgres`` holds the PostgreSQL engine.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["JOURNAL_KEEP", "RETIRED_TABLES", "Rows", "Store", "encode", "journal_batch", "pick_journal"]

#: Rows as read or written: key -> JSON text, or None for a row deleted (kept as a tombstone, so that other
#: processes learn of the deletion).
Rows = dict[str, "str | None"]
#: Journal entries kept per process in the store; older ones are dropped as new ones come.
JOURNAL_KEEP = 20_000
TABLES = {"state": [("key", "TEXT"), ("value", "TEXT"), ("version", "INTEGER")],
           "meta": [("name", "TEXT"), ("value", "INTEGER")],
           "journal_batches": [("node", "TEXT"), ("seq", "INTEGER"), ("latest", "REAL"), ("entries", "TEXT")],
           "metrics": [("node", "TEXT"), ("value", "TEXT")]}
#: Tables an older azimds made, dropped when a store is opened: the journal kept one row per request, which cost
#: the store several microseconds per request answered (now a row per shipment: ``journal_batches``).
RETIRED_TABLES = {"journal": [("node", "TEXT"), ("seq", "INTEGER"), ("time", "REAL"), ("peer", "TEXT"),
                              ("method", "TEXT"), ("url", "TEXT"), ("status", "INTEGER"), ("latency", "REAL")]}
#: The state table of the first azimds that kept its world (a SQLite file alone): the same rows, without versions.
#: Such a file is brought forward when opened: its rows are numbered in the order they were written.
UNVERSIONED_STATE = [("key", "TEXT"), ("value", "TEXT")]


class Store(ABC):
    """The world's shared state. Thread-safe; every method may raise EngineUnavailable when the engine
    cannot be reached (the caller's change was then not made)."""

    url: str
    #: Whether other processes may write to it (then the world ships its journal and listens for changes).
    shared: bool = False

    @abstractmethod
    def load(self) -> tuple[int, dict[str, str]]:
        """The current version and every live row."""

    @abstractmethod
    def update(self, keys: Iterable[str] | None, change: Callable[[dict[str, str]], Rows | None]) -> int:
        """One transaction: read ``keys`` (None: every row) with a lock, call ``change`` with the live ones,
        write the rows it returns (nothing when it returns None or raises). Returns the version written (or
        the current one). Exceptions from ``change`` roll back and propagate."""

    def save(self, rows: Rows) -> int:
        """Write ``rows`` in one transaction, whatever was there."""
        return self.update((), lambda current: rows)

    @abstractmethod
    def changes(self, since: int) -> tuple[int, list[tuple[str, str | None, int]]]:
        """Every row written after version ``since``, oldest first, as (key, value or None, version); and the
        version they bring the reader to."""

    @abstractmethod
    def wait(self, version: int, timeout: float) -> bool:
        """Block until something may have been written after ``version`` (True), or ``timeout`` passes."""

    @abstractmethod
    def ship(self, node: str, entries: Sequence[tuple[Any, ...]], metrics: str | None) -> None:
        """Keep a batch of a process's journal entries (time, peer, method, url, status, latency) and its
        metrics (JSON); older entries past ``JOURNAL_KEEP`` for that process are dropped."""

    @abstractmethod
    def journal(self, since: float, limit: int) -> list[tuple[Any, ...]]:
        """The journal of every process from ``since``, oldest first, at most ``limit`` (the newest)."""

    @abstractmethod
    def metrics(self) -> dict[str, str]:
        """Every process's last metrics (node -> JSON)."""

    @abstractmethod
    def close(self) -> None: ...




def encode(value: object) -> str:
    """A row's JSON text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def journal_batch(entries: Sequence[tuple[Any, ...]]) -> tuple[float, str]:
    """One shipment of journal entries as its row: the newest entry's time, and the entries as one JSON text
    (a row per shipment, not per request: a busy process ships thousands of entries every 0.2 s)."""
    return max(entry[0] for entry in entries), json.dumps(entries, separators=(",", ":"))


def pick_journal(batches: Iterable[tuple[str, int, str]], newest: Mapping[str, int], since: float,
                 limit: int) -> list[tuple[Any, ...]]:
    """The entries of ``batches`` (node, number of its last entry, JSON text) from ``since``, oldest first, at most
    ``limit`` (the newest); a node's entries older than its newest ``JOURNAL_KEEP`` (``newest``: the number of
    each node's last entry) are left out. Ties in time are ordered by node, then entry number."""
    found: list[tuple[float, str, int, tuple[Any, ...]]] = []
    for node, end, text in batches:
        try:
            entries = json.loads(text)
        except ValueError:
            continue  # the journal is a record, not state: a damaged shipment is passed over
        floor = newest.get(node, end) - JOURNAL_KEEP
        for number, entry in enumerate(entries, end - len(entries) + 1):
            if number > floor and isinstance(entry, list) and len(entry) == 6 and entry[0] >= since:
                found.append((entry[0], node, number, tuple(entry)))
    found.sort(key=lambda item: (-item[0], item[1], -item[2]))
    return [item[3] for item in reversed(found[:limit])]


def rows_of(mapping: Mapping[str, object]) -> Rows:
    return {key: None if value is None else encode(value) for key, value in mapping.items()}
