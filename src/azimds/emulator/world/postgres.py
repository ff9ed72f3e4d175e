"""The PostgreSQL engine of the store (``--state postgresql://…``): one world shared by nodes on many machines.

The same rows as the SQLite engine (tables ``state``, ``meta``, ``journal``, ``metrics``, created when absent),
through a small ``psycopg_pool`` pool. Every ``update`` first takes the lock of the version counter's row, so
that transactions commit in the order of their versions: a reader that has seen version v never later finds a
row committed with a lower one. The rows it reads are locked too, what the caller makes of them is written,
and ``NOTIFY azimds_changes, '<version>'`` is sent, all in one transaction. ``wait`` listens on a connection of
its own and looks at the version again whenever that connection is made anew (a NOTIFY sent while it was
away is lost).

When the engine goes away, every method raises ``EngineUnavailable`` with a one-line reason, at once (a caller
never waits for a timeout): the pool is closed, and a thread of the store's own tries the engine again every
``PROBE_EVERY`` seconds until it answers, when a new pool is made. A pooled connection found dead (the engine
restarted while it was idle) is tried again once, on a fresh one. Passwords are never shown: ``url`` and every
message leave them out.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ...errors import EngineUnavailable, StateError
from .engine import JOURNAL_KEEP, Rows, Store, journal_batch, pick_journal

__all__ = ["CHANNEL", "PostgresStore", "redact"]

#: The channel every write is announced on, its payload the version written.
CHANNEL = "azimds_changes"
#: The columns of the tables, as information_schema names their types (a table with others is not ours).
COLUMNS = {"state": [("key", "text"), ("value", "text"), ("version", "bigint")],
           "meta": [("name", "text"), ("value", "bigint")],
           "journal_batches": [("node", "text"), ("seq", "bigint"), ("latest", "double precision"),
                               ("entries", "text")],
           "metrics": [("node", "text"), ("value", "text")]}
#: Tables an older azimds made (see ``engine.RETIRED_TABLES``), dropped at start when they have these columns.
RETIRED_COLUMNS = {"journal": [("node", "text"), ("seq", "bigint"), ("time", "double precision"), ("peer", "text"),
                               ("method", "text"), ("url", "text"), ("status", "integer"),
                               ("latency", "double precision")]}
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS state (key text PRIMARY KEY, value text, version bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS state_version ON state (version)",
    "CREATE TABLE IF NOT EXISTS meta (name text PRIMARY KEY, value bigint NOT NULL)",
    "INSERT INTO meta (name, value) VALUES ('version', 0) ON CONFLICT (name) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS journal_batches (node text NOT NULL, seq bigint NOT NULL, latest double precision, "
    "entries text, PRIMARY KEY (node, seq))",
    "CREATE INDEX IF NOT EXISTS journal_batches_latest ON journal_batches (latest)",
    # A shipment is up to a megabyte of JSON every 0.2 s: stored as it is, not compressed on the server's CPU.
    "ALTER TABLE journal_batches ALTER COLUMN entries SET STORAGE EXTERNAL",
    "CREATE TABLE IF NOT EXISTS metrics (node text PRIMARY KEY, value text)",
]
#: Advisory lock keys: (class, object). The schema is made by one process at a time; a node's journal is
#: appended by one transaction at a time.
_SCHEMA_LOCK = (0x617A, 1)
_JOURNAL_LOCK = 0x617B
# The rows a transaction wrote and their announcement, in one statement (a data-modifying WITH always runs).
_WRITE = ("WITH written AS (INSERT INTO state (key, value, version) SELECT r.key, r.value, %(version)s "
          "FROM unnest(%(keys)s::text[], %(values)s::text[]) AS r (key, value) "
          "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version RETURNING 1) "
          f"SELECT pg_notify('{CHANNEL}', %(payload)s), (SELECT count(*) FROM written)")
#: Connection settings used unless the URL gives its own: a dead engine or host is noticed in seconds.
DEFAULTS = {"connect_timeout": "5", "keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2",
            "keepalives_count": "3", "tcp_user_timeout": "10000", "application_name": "azimds"}
#: Server settings for every session: a lock or an open transaction is never waited on for long.
OPTIONS = "-c lock_timeout=10000 -c idle_in_transaction_session_timeout=60000"

T = TypeVar("T")
Connection = psycopg.Connection[Any]

# The pool reports each failed reconnection as a warning; the world says once that the engine is gone.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


def redact(url: str) -> str:
    """The URL without its password (in the user part, or as a ``password`` parameter)."""
    match = re.match(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@(?P<rest>.*)", url, re.DOTALL)
    if match:
        user = match["userinfo"].split(":", 1)[0]
        url = f"{match['scheme']}{user}@{match['rest']}" if user else f"{match['scheme']}{match['rest']}"
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class PostgresStore(Store):
    """The shared engine: PostgreSQL through psycopg 3, a pool of 1 to ``MAX_CONNECTIONS`` connections for reads
    and transactions, and one more connection that LISTENs."""

    shared = True
    MAX_CONNECTIONS = 4
    #: Seconds a caller waits for a pooled connection before the engine counts as gone.
    TIMEOUT = 5.0
    #: While the engine is gone, seconds between two attempts to reach it (callers meanwhile fail at once).
    PROBE_EVERY = 0.25

    def __init__(self, url: str) -> None:
        self.url = redact(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StateError(self.url, f"not a PostgreSQL URL: {self._scrub(str(exc))}") from None
        self._password = str(params.get("password") or "")
        for name, value in DEFAULTS.items():
            params.setdefault(name, value)
        params["options"] = f"{params['options']} {OPTIONS}" if params.get("options") else OPTIONS
        self._conninfo = make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
        self._lock = threading.Lock()  # guards the pool and the state of the engine below
        self._pool: ConnectionPool[Connection] | None = None
        self._down: str | None = None  # why the engine counts as gone (None: it is reachable)
        self._prober: threading.Thread | None = None  # tries the engine again while it is gone
        self._closing = threading.Event()
        self._listen_lock = threading.Lock()
        self._listener: Connection | None = None
        self._notified = 0  # the highest version announced on the listening connection
        self._closed = False
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StateError(self.url, f"cannot reach the PostgreSQL engine: {self._reason(exc)}") from None
        try:
            self._prepare(conn)
        except psycopg.Error as exc:
            raise StateError(self.url, f"cannot use the PostgreSQL engine: {self._reason(exc)}") from None
        finally:
            conn.close()
        self._pool = self._new_pool()

    # -- the interface -------------------------------------------------------------------------------------
    def load(self) -> tuple[int, dict[str, str]]:
        rows = self._read(lambda conn: conn.execute("SELECT key, value, version FROM state").fetchall())
        return max((int(v) for _, _, v in rows), default=0), {k: v for k, v, _ in rows if v is not None}

    def update(self, keys: Iterable[str] | None, change: Callable[[dict[str, str]], Rows | None]) -> int:
        wanted = None if keys is None else list(keys)

        def work(conn: Connection) -> tuple[int, bool]:
            # The counter's row lock first: every other writer waits here until this one commits, so versions
            # commit in their order.
            row = conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'version' RETURNING value").fetchone()
            if row is None:
                raise EngineUnavailable("the state database has no version counter (was its meta table emptied?)")
            version = int(row[0])
            if wanted is None:
                current = dict(conn.execute("SELECT key, value FROM state WHERE value IS NOT NULL FOR UPDATE"))
            elif wanted:
                current = dict(conn.execute("SELECT key, value FROM state WHERE key = ANY(%s) AND value IS NOT NULL "
                                            "FOR UPDATE", (wanted,)))
            else:
                current = {}
            rows = change(current)
            if not rows:
                return version - 1, False  # nothing to write: the counter goes back with the rollback
            conn.execute(_WRITE, {"version": version, "keys": list(rows), "values": list(rows.values()),
                                  "payload": str(version)})
            return version, True

        return self._transaction(work)

    def changes(self, since: int) -> tuple[int, list[tuple[str, str | None, int]]]:
        # One statement, one snapshot: every version up to the highest seen is in it (versions commit in order).
        rows = self._read(lambda conn: conn.execute("SELECT key, value, version FROM state WHERE version > %s "
                                                    "ORDER BY version", (since,)).fetchall())
        found = [(str(key), value, int(version)) for key, value, version in rows]
        return max(since, found[-1][2] if found else since), found

    def wait(self, version: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._listen_lock:
            if self._notified > version:
                return True
            if self._listener is None:
                self._gate()
                try:
                    conn = psycopg.connect(self._conninfo, autocommit=True)
                except psycopg.Error as exc:
                    raise self._lost(exc) from None
                try:
                    conn.execute(f"LISTEN {CHANNEL}")
                    current = self._version(conn)  # what was announced while nobody listened
                except psycopg.Error as exc:
                    conn.close()
                    raise self._lost(exc) from None
                self._listener = conn
                self._notified = max(self._notified, current)
                if current > version:
                    return True
            conn = self._listener
            try:
                for notify in conn.notifies(timeout=max(0.0, deadline - time.monotonic())):
                    try:
                        self._notified = max(self._notified, int(notify.payload))
                    except ValueError:
                        continue
                    if self._notified > version:
                        return True
                # Nothing announced: look once (cheap, and a connection that died silently shows here).
                self._notified = max(self._notified, self._version(conn))
            except psycopg.Error as exc:
                self._listener = None
                conn.close()
                raise self._lost(exc) from None
            return self._notified > version

    def ship(self, node: str, entries: Sequence[tuple[Any, ...]], metrics: str | None) -> None:
        if not entries and metrics is None:
            return

        def work(conn: Connection) -> tuple[None, bool]:
            if entries:
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_JOURNAL_LOCK, node))
                row = conn.execute("SELECT coalesce(max(seq), 0) FROM journal_batches WHERE node = %s",
                                   (node,)).fetchone()
                last = int(row[0]) if row else 0
                conn.execute("INSERT INTO journal_batches (node, seq, latest, entries) VALUES (%s, %s, %s, %s)",
                             (node, last + len(entries), *journal_batch(entries)))
                conn.execute("DELETE FROM journal_batches WHERE node = %s AND seq <= %s",
                             (node, last + len(entries) - JOURNAL_KEEP))
            if metrics is not None:
                conn.execute("INSERT INTO metrics (node, value) VALUES (%s, %s) ON CONFLICT (node) DO UPDATE SET "
                             "value = excluded.value", (node, metrics))
            return None, True

        self._transaction(work)

    def journal(self, since: float, limit: int) -> list[tuple[Any, ...]]:
        def read(conn: Connection) -> tuple[list[tuple[str, int, str]], dict[str, int]]:
            with conn.transaction():  # one snapshot for both
                batches = conn.execute("SELECT node, seq, entries FROM journal_batches WHERE latest >= %s",
                                       (since,)).fetchall()
                newest = conn.execute("SELECT node, max(seq) FROM journal_batches GROUP BY node").fetchall()
            return [(str(n), int(s), str(e)) for n, s, e in batches], {str(n): int(s) for n, s in newest}

        batches, newest = self._read(read)
        return pick_journal(batches, newest, since, limit)

    def metrics(self) -> dict[str, str]:
        return self._read(lambda conn: {str(node): str(value) for node, value in
                                        conn.execute("SELECT node, value FROM metrics")})

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        self._closing.set()
        if pool is not None:
            pool.close(timeout=1.0)
        got = self._listen_lock.acquire(timeout=2.0)
        try:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        finally:
            if got:
                self._listen_lock.release()

    # -- connections -------------------------------------------------------------------------------------------
    def _prepare(self, conn: Connection) -> None:
        """Create the tables that are absent (one process at a time); refuse tables that are not ours."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _SCHEMA_LOCK)
            found: dict[str, list[tuple[str, str]]] = {}
            for table, column, kind in conn.execute(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = "
                    "current_schema() AND table_name = ANY(%s) ORDER BY table_name, ordinal_position",
                    ([*COLUMNS, *RETIRED_COLUMNS],)):
                found.setdefault(str(table), []).append((str(column), str(kind)))
            for table, columns in found.items():
                if table in RETIRED_COLUMNS:
                    if columns == RETIRED_COLUMNS[table]:  # ours, from an older azimds; someone else's is left be
                        conn.execute(f"DROP TABLE {table}")  # a name of ours
                elif columns != COLUMNS[table]:
                    raise StateError(self.url, f"not this azimds's state database (its {table} table has other "
                                               "columns; give another database, or drop the table)")
            for statement in SCHEMA:
                conn.execute(statement)

    def _new_pool(self) -> ConnectionPool[Connection]:
        return ConnectionPool(self._conninfo, min_size=1, max_size=self.MAX_CONNECTIONS, timeout=self.TIMEOUT,
                              kwargs={"autocommit": True}, open=True, name="azimds", num_workers=1)

    def _gate(self) -> ConnectionPool[Connection]:
        """The pool, or EngineUnavailable at once while the engine is gone."""
        with self._lock:
            if self._closed:
                raise EngineUnavailable("the state store is closed")
            if self._down is not None:
                raise EngineUnavailable(self._down)
            if self._pool is None:
                self._pool = self._new_pool()
            return self._pool

    def _lost(self, exc: BaseException | str, *, committing: bool = False) -> EngineUnavailable:
        """Count the engine as gone (the pool closed, the prober started), and say so."""
        reason = exc if isinstance(exc, str) else self._reason(exc)
        with self._lock:
            pool, self._pool = self._pool, None
            self._down = self._unreachable(reason)
            message = self._down if not committing else (
                f"the state engine {self.url} was lost while committing ({reason}); the change may or may not "
                "have been kept")
            if self._prober is None and not self._closed:
                self._prober = threading.Thread(target=self._probe, name="azimds-engine-probe", daemon=True)
                self._prober.start()
        if pool is not None:
            pool.close(timeout=0)
        return EngineUnavailable(message)

    def _unreachable(self, reason: str) -> str:
        return f"the state engine {self.url} is unreachable ({reason}); nothing was changed"

    def _probe(self) -> None:
        """The prober: try the engine every PROBE_EVERY seconds until it answers (or the store is closed)."""
        while not self._closing.wait(self.PROBE_EVERY):
            with self._lock:
                if self._closed or self._down is None:
                    self._prober = None
                    return
            self._reach()

    def _reach(self) -> bool:
        """One attempt to reach the engine: True, and it counts as back, when it answers."""
        try:
            psycopg.connect(self._conninfo, autocommit=True).close()
        except psycopg.Error as exc:
            with self._lock:
                if self._down is not None:
                    self._down = self._unreachable(self._reason(exc))
            return False
        with self._lock:
            self._down = None
        return True

    def _failed(self, conn: Connection | None, exc: psycopg.Error, *, committing: bool = False) -> EngineUnavailable:
        """The EngineUnavailable a psycopg error becomes (a lost connection also counts the engine as gone)."""
        if conn is None or conn.broken or conn.closed or (isinstance(exc, psycopg.OperationalError)
                                                          and exc.sqlstate is None):
            return self._lost(exc, committing=committing)
        return EngineUnavailable(f"the state engine {self.url} refused it ({self._reason(exc)}); nothing was changed")

    def _borrow(self) -> tuple[ConnectionPool[Connection], Connection]:
        pool = self._gate()
        try:
            return pool, pool.getconn()
        except PoolTimeout:
            raise self._lost(f"no connection within {self.TIMEOUT:g} s") from None
        except PoolClosed:  # closed meanwhile by another thread, which found the engine gone
            raise EngineUnavailable(self._down or "the state store is closed") from None
        except psycopg.Error as exc:
            raise self._lost(exc) from None

    def _read(self, work: Callable[[Connection], T]) -> T:
        """A read in autocommit (one statement, one snapshot), tried again once on a connection found dead."""
        for attempt in (1, 2):
            pool, conn = self._borrow()
            try:
                return work(conn)
            except psycopg.Error as exc:
                error = self._failed(conn, exc)
                if attempt == 2 or not (conn.broken or conn.closed) or not self._reach():
                    raise error from None
            finally:
                pool.putconn(conn)
        raise AssertionError("unreachable")

    def _transaction(self, work: Callable[[Connection], tuple[T, bool]]) -> T:
        """One transaction: ``work`` returns (result, whether to commit). Tried again only when the connection
        is found dead before anything was sent in it (a pooled connection the engine dropped while idle)."""
        for attempt in (1, 2):
            pool, conn = self._borrow()
            try:
                try:
                    conn.execute("BEGIN")
                except psycopg.Error as exc:  # nothing sent yet in it: safe to try again if the engine answers
                    error = self._failed(conn, exc)
                    if attempt == 2 or not (conn.broken or conn.closed) or not self._reach():
                        raise error from None
                    continue
                try:
                    result, commit = work(conn)
                except BaseException as exc:
                    if not conn.broken:
                        try:
                            conn.execute("ROLLBACK")
                        except psycopg.Error:
                            pass
                    if isinstance(exc, psycopg.Error):
                        raise self._failed(conn, exc) from None
                    raise
                try:
                    conn.execute("COMMIT" if commit else "ROLLBACK")
                except psycopg.Error as exc:
                    raise self._failed(conn, exc, committing=commit) from None
                return result
            finally:
                pool.putconn(conn)
        raise AssertionError("unreachable")

    @staticmethod
    def _version(conn: Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
        return int(row[0]) if row else 0

    def _reason(self, exc: BaseException) -> str:
        return self._scrub(_one_line(str(exc)) or type(exc).__name__)

    def _scrub(self, text: str) -> str:
        password = getattr(self, "_password", "")
        if password:
            text = text.replace(password, "***").replace(quote(password, safe=""), "***")
        return text
