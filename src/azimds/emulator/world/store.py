"""Durable state: what the control plane changed, the events, the clock and the faults, in SQLite.

Each ``save`` is one transaction committed with ``synchronous=FULL`` (WAL) before it returns, so a change
the control plane acknowledged survives ``kill -9``. Keys name the parts of the world (``vm/NAME``,
``events/BOOK``, ``clock``, ``faults``); values are JSON documents. An existing file is checked read-only
before anything is written to it: a file that is not this store's (garbage, truncated, empty, another
database) is refused with a ``StateError`` naming it, and left as it was.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ...errors import StateError

__all__ = ["Store"]


class Store:
    """A small key/value table of JSON documents; keys name the parts of the emulated state."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists():
            _check(self.path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except sqlite3.Error as exc:
            raise StateError(str(self.path), f"cannot open the state database: {exc}") from None

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


def _check(path: Path) -> None:
    """Refuse a file that is not this store's, reading it only."""
    size = path.stat().st_size
    if size == 0:
        raise StateError(str(path), "an empty file, not a state database (azimds state reset sets it aside)")
    with open(path, "rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise StateError(str(path), "not an azimds state database (not an SQLite file; azimds state reset sets it "
                                    "aside)")
    page_size = int.from_bytes(header[16:18], "big")
    pages = int.from_bytes(header[28:32], "big")
    if header[92:96] == header[96:100] and size < (65536 if page_size == 1 else page_size) * pages:
        raise StateError(str(path), f"truncated: {size} bytes where its header says {pages} pages (azimds state "
                                    "reset sets it aside)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StateError(str(path), f"cannot read it: {exc}") from None
    try:
        tables = sorted(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        if tables != ["state"]:
            raise StateError(str(path), f"not an azimds state database (its tables: {', '.join(tables) or 'none'})")
        columns = [(name, kind) for _, name, kind, *_ in db.execute("PRAGMA table_info(state)")]
        if columns != [("key", "TEXT"), ("value", "TEXT")]:
            raise StateError(str(path), "not an azimds state database (its state table has other columns)")
        (verdict,) = db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise StateError(str(path), f"the database is damaged: {verdict}")
        for key, value in db.execute("SELECT key, value FROM state"):
            if not isinstance(key, str) or not isinstance(value, str):
                raise StateError(str(path), f"a row that is not text: {key!r}")
    except sqlite3.Error as exc:
        raise StateError(str(path), f"not an azimds state database: {exc}") from None
    finally:
        db.close()
