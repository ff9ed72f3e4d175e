"""Where the world's state lives, shared by every process that serves it: one interface, two engines.

The world is rows of JSON by key (``vm/NAME``, ``events/BOOK``, ``clock``, ``faults``, ``profile``). Every
write is one transaction that gives its rows a new version, higher than any before, committed before it
returns (so a change the control plane acknowledged survives ``kill -9``). ``update`` reads rows with a lock
and writes what the caller makes of them in the same transaction: two processes approving one event start it
once. Every process keeps its own copy of the world in memory and learns of other writers' rows through
``changes(since)``, woken by ``wait`` (SQLite: its ``data_version`` polled; PostgreSQL: ``LISTEN/NOTIFY``).
The journal of every process is shipped here in batches, so any control plane can read the whole of it.

``SqliteStore`` (``sqlite:///PATH``, the embedded default) is in this module; ``PostgresStore``
(``postgresql://…``) is in ``postgres`` and needs the ``postgres`` extra. ``open_store`` picks by URL.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ...errors import EngineUnavailable, StateError
from .engine import (
    JOURNAL_KEEP,
    RETIRED_TABLES,
    TABLES,
    UNVERSIONED_STATE,
    Rows,
    Store,
    encode,
    journal_batch,
    pick_journal,
)

__all__ = ["JOURNAL_KEEP", "MemoryStore", "Rows", "SqliteStore", "Store", "encode", "open_store"]

class MemoryStore(Store):
    """Nothing kept: the world of one process, gone when it ends (an ``Emulator`` in a test suite)."""

    def __init__(self) -> None:
        self.url = "memory:"
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        self._rows: dict[str, tuple[str | None, int]] = {}
        self._version = 0

    def load(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            return self._version, {k: v for k, (v, _) in self._rows.items() if v is not None}

    def update(self, keys: Iterable[str] | None, change: Callable[[dict[str, str]], Rows | None]) -> int:
        with self._lock:
            wanted = self._rows if keys is None else {k: self._rows[k] for k in keys if k in self._rows}
            rows = change({k: v for k, (v, _) in wanted.items() if v is not None})
            if rows:
                self._version += 1
                for key, value in rows.items():
                    self._rows[key] = (value, self._version)
                self._written.notify_all()
            return self._version

    def changes(self, since: int) -> tuple[int, list[tuple[str, str | None, int]]]:
        with self._lock:
            found = sorted(((k, v, n) for k, (v, n) in self._rows.items() if n > since), key=lambda row: row[2])
            return max(self._version, since), found

    def wait(self, version: int, timeout: float) -> bool:
        with self._written:
            return self._written.wait_for(lambda: self._version > version, timeout)

    def ship(self, node: str, entries: Sequence[tuple[Any, ...]], metrics: str | None) -> None:
        return None

    def journal(self, since: float, limit: int) -> list[tuple[Any, ...]]:
        return []

    def metrics(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        return None


def open_store(url: str, *, shared: bool = False) -> Store:
    """The store a ``--state`` URL names: ``sqlite:///PATH`` (or a plain path) or ``postgresql://…``."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise StateError(url.split("@")[-1], f"the PostgreSQL engine needs its extra: pip install "
                                                 f"'azimds[postgres]' ({exc.name} is missing)") from None
        return PostgresStore(url)
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url  # sqlite:////abs or sqlite:///rel
    return SqliteStore(Path(path), shared=shared)


class SqliteStore(Store):
    """The embedded engine: one SQLite file in WAL mode, ``synchronous=FULL``. Several processes on one host
    may share it (workers): a write takes SQLite's write lock (``BEGIN IMMEDIATE``), and readers learn of
    others' writes by polling ``PRAGMA data_version``, which costs microseconds."""

    POLL = 0.01  # seconds between two looks at data_version while waiting for changes

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.shared = shared
        unversioned = _check(self.path) if self.path.exists() else False
        self._lock = threading.Lock()
        try:
            self._db = self._connect()
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                if unversioned:  # the first layout, brought forward in this transaction (engine.UNVERSIONED_STATE)
                    self._db.execute("ALTER TABLE state RENAME TO state_unversioned")
                self._db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT, "
                                 "version INTEGER NOT NULL)")
                self._db.execute("CREATE INDEX IF NOT EXISTS state_version ON state (version)")
                self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
                if unversioned:
                    self._db.execute("INSERT INTO state (key, value, version) SELECT key, value, "
                                     "row_number() OVER (ORDER BY rowid) FROM state_unversioned")
                    self._db.execute("DROP TABLE state_unversioned")
                self._db.execute("INSERT OR IGNORE INTO meta (name, value) SELECT 'version', count(*) FROM state")
                for table in RETIRED_TABLES:
                    self._db.execute(f"DROP TABLE IF EXISTS {table}")
                self._db.execute("CREATE TABLE IF NOT EXISTS journal_batches (node TEXT NOT NULL, seq INTEGER NOT "
                                 "NULL, latest REAL, entries TEXT)")
                self._db.execute("CREATE INDEX IF NOT EXISTS journal_batches_latest ON journal_batches (latest)")
                self._db.execute("CREATE TABLE IF NOT EXISTS metrics (node TEXT PRIMARY KEY, value TEXT)")
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(str(self.path), f"cannot open the state database: {exc}") from None
        self._watcher: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def load(self) -> tuple[int, dict[str, str]]:
        with self._lock:  # one statement, one snapshot (two would let a write land between them)
            rows = self._db.execute("SELECT key, value, version FROM state").fetchall()
        return max((int(v) for _, _, v in rows), default=0), {k: v for k, v, _ in rows if v is not None}

    def update(self, keys: Iterable[str] | None, change: Callable[[dict[str, str]], Rows | None]) -> int:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if keys is None:
                    current = dict(db.execute("SELECT key, value FROM state WHERE value IS NOT NULL"))
                else:
                    wanted = list(keys)
                    current = {}
                    for key in wanted:
                        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
                        if row is not None and row[0] is not None:
                            current[key] = row[0]
                rows = change(current)
                if rows:
                    (version,) = db.execute("UPDATE meta SET value = value + 1 WHERE name = 'version' "
                                            "RETURNING value").fetchone()
                    db.executemany("INSERT INTO state (key, value, version) VALUES (?, ?, ?) ON CONFLICT (key) "
                                   "DO UPDATE SET value = excluded.value, version = excluded.version",
                                   [(key, value, version) for key, value in rows.items()])
                else:
                    (version,) = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise EngineUnavailable(f"the state database could not commit: {exc}") from None
            return int(version)

    def changes(self, since: int) -> tuple[int, list[tuple[str, str | None, int]]]:
        # One statement, one snapshot: the reader is brought to the highest version in it, never to the counter
        # read afterwards (a write committed between the two would be skipped for good).
        with self._lock:
            rows = self._db.execute("SELECT key, value, version FROM state WHERE version > ? ORDER BY version",
                                    (since,)).fetchall()
        found = [(key, value, int(v)) for key, value, v in rows]
        return (found[-1][2] if found else since), found

    def wait(self, version: int, timeout: float) -> bool:
        if self._watcher is None:
            self._watcher = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        deadline = time.monotonic() + timeout
        while True:
            (now,) = self._watcher.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
            if int(now) > version:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.POLL)

    def ship(self, node: str, entries: Sequence[tuple[Any, ...]], metrics: str | None) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if entries:
                    (last,) = db.execute("SELECT coalesce(max(seq), 0) FROM journal_batches WHERE node = ?",
                                         (node,)).fetchone()
                    db.execute("INSERT INTO journal_batches (node, seq, latest, entries) VALUES (?, ?, ?, ?)",
                               (node, last + len(entries), *journal_batch(entries)))
                    db.execute("DELETE FROM journal_batches WHERE node = ? AND seq <= ?",
                               (node, last + len(entries) - JOURNAL_KEEP))
                if metrics is not None:
                    db.execute("INSERT INTO metrics (node, value) VALUES (?, ?) ON CONFLICT (node) DO UPDATE SET "
                               "value = excluded.value", (node, metrics))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def journal(self, since: float, limit: int) -> list[tuple[Any, ...]]:
        with self._lock:
            batches = self._db.execute("SELECT node, seq, entries FROM journal_batches WHERE latest >= ?",
                                       (since,)).fetchall()
            newest = dict(self._db.execute("SELECT node, max(seq) FROM journal_batches GROUP BY node"))
        return pick_journal(batches, newest, since, limit)

    def metrics(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT node, value FROM metrics"))

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._watcher is not None:
                self._watcher.close()


def _check(path: Path) -> bool:
    """Refuse a file that is not this store's, reading it only; whether it is in the first, unversioned layout."""
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
        if not set(tables) <= set(TABLES) | set(RETIRED_TABLES) or "state" not in tables:
            raise StateError(str(path), f"not an azimds state database (its tables: {', '.join(tables) or 'none'}; "
                                        "azimds state reset sets it aside)")
        unversioned = False
        for table in tables:
            columns = [(name, kind) for _, name, kind, *_ in db.execute(f"PRAGMA table_info({table})")]
            if table == "state" and tables == ["state"] and columns == UNVERSIONED_STATE:
                unversioned = True
            elif columns != {**RETIRED_TABLES, **TABLES}[table]:
                raise StateError(str(path), f"not this azimds's state database (its {table} table has other "
                                            "columns; azimds state reset sets it aside)")
        (verdict,) = db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise StateError(str(path), f"the database is damaged: {verdict}")
        for key, value in db.execute("SELECT key, value FROM state"):
            if not isinstance(key, str) or not (value is None or isinstance(value, str)):
                raise StateError(str(path), f"a row that is not text: {key!r}")
    except sqlite3.Error as exc:
        raise StateError(str(path), f"not an azimds state database: {exc}") from None
    finally:
        db.close()
    return unversioned


