"""The interface of the store every engine implements: rows of JSON by key, each write one versioned
transaction, changes since a version, a wait for the next change, and the shipped journal.

See ``store`` for what the world keeps there and for the engines (``SqliteStore`` and the in-memory one);
``postgres`` holds the PostgreSQL engine.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["JOURNAL_KEEP", "Rows", "Store", "encode"]

#: Rows as read or written: key -> JSON text, or None for a row deleted (kept as a tombstone, so that other
#: processes learn of the deletion).
Rows = dict[str, "str | None"]
#: Journal entries kept per process in the store; older ones are dropped as new ones come.
JOURNAL_KEEP = 20_000
TABLES = {"state": [("key", "TEXT"), ("value", "TEXT"), ("version", "INTEGER")],
           "meta": [("name", "TEXT"), ("value", "INTEGER")],
           "journal": [("node", "TEXT"), ("seq", "INTEGER"), ("time", "REAL"), ("peer", "TEXT"), ("method", "TEXT"),
                       ("url", "TEXT"), ("status", "INTEGER"), ("latency", "REAL")],
           "metrics": [("node", "TEXT"), ("value", "TEXT")]}


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
    def ship(self, node: str, entries: list[tuple[Any, ...]], metrics: str | None) -> None:
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


def rows_of(mapping: Mapping[str, object]) -> Rows:
    return {key: None if value is None else encode(value) for key, value in mapping.items()}
