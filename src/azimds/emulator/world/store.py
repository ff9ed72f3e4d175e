"""Durable state: what the control plane changed, the events, the clock and the faults, in SQLite.

Each ``save`` is one transaction committed with ``synchronous=FULL`` (WAL) before it returns, so a change
the control plane acknowledged survives ``kill -9``. Keys name the parts of the world (``vm/NAME``,
``events/BOOK``, ``clock``, ``faults``); values are JSON documents.
"""

from __future__ import annotations

import threading
from pathlib import Path

__all__ = ["Store"]


class Store:
    """A small key/value table of JSON documents; keys name the parts of the emulated state."""

    def __init__(self, path: str | Path):
        import sqlite3

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def save(self, items: dict[str, str]) -> None:
        """Write every item in one committed transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", items.items())
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM state").fetchall())

    def clear(self, keys: list[str] | None = None) -> None:
        with self._lock:
            if keys is None:
                self._db.execute("DELETE FROM state")
            else:
                self._db.executemany("DELETE FROM state WHERE key = ?", [(k,) for k in keys])

    def close(self) -> None:
        with self._lock:
            self._db.close()
