"""The store's own suite, run alike against every engine (in memory, SQLite, PostgreSQL): versioned rows,
transactions that write all or nothing, tombstones, changes in version order, no increment lost and no version
committed out of order under concurrent writers (threads, and two store objects as two processes would hold),
``wait`` woken by another writer, the shipped journal and its retention. Then what only the PostgreSQL engine
has to show: passwords never shown, one line when it cannot start, the engine lost and found again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from azimds.emulator.world.engine import JOURNAL_KEEP
from azimds.emulator.world.store import MemoryStore, Rows, SqliteStore, Store, open_store
from azimds.errors import EngineUnavailable, StateError
from tests.support_postgres import new_cluster


@dataclass
class Engine:
    """One engine's storage, and a way to open another store object on it (another process's view)."""

    kind: str
    make: Callable[[], Store]
    opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        store = self.make()
        if store not in self.opened:
            self.opened.append(store)
        return store


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from _engine(request, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The engines several processes share (the in-memory store serves one process, whose journal stays in it)."""
    yield from _engine(request, tmp_path)


def _engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "memory":
        memory = MemoryStore()
        made = Engine("memory", lambda: memory)  # one process: every "other" view is the same store
    elif request.param == "sqlite":
        made = Engine("sqlite", lambda: SqliteStore(tmp_path / "state.sqlite", shared=True))
    else:
        url = request.getfixturevalue("postgres_url")
        made = Engine("postgresql", lambda: open_store(url))
    yield made
    for store in made.opened:
        store.close()


def bump(key: str = "n", also: Rows | None = None) -> Callable[[dict[str, str]], Rows]:
    """A change that adds one to the counter row ``key`` (and writes ``also``)."""
    def change(current: dict[str, str]) -> Rows:
        return {key: str(int(current.get(key, "0")) + 1), **(also or {})}
    return change


# -- rows, versions, transactions -------------------------------------------------------------------------------

def test_rows_get_increasing_versions_and_changes_come_in_version_order(engine):
    store = engine.open()
    assert store.load() == (0, {})
    assert store.changes(0) == (0, [])
    assert store.update(["a"], lambda current: {"a": '"1"'}) == 1
    assert store.update(["b", "c"], lambda current: {"b": '"2"', "c": '"3"'}) == 2
    assert store.update(["a"], lambda current: {"a": '"4"'}) == 3
    version, rows = store.changes(0)
    assert version == 3
    assert [(key, value, v) for key, value, v in rows] == [("b", '"2"', 2), ("c", '"3"', 2), ("a", '"4"', 3)] or \
        [(key, value, v) for key, value, v in rows] == [("c", '"3"', 2), ("b", '"2"', 2), ("a", '"4"', 3)]
    assert store.changes(2) == (3, [("a", '"4"', 3)])
    assert store.changes(3) == (3, [])
    assert store.load() == (3, {"a": '"4"', "b": '"2"', "c": '"3"'})
    assert store.save({"d": "5"}) == 4


def test_update_reads_only_the_wanted_live_rows_and_nothing_written_is_no_version(engine):
    store = engine.open()
    store.save({"a": "1", "b": "2", "gone": "3"})
    store.save({"gone": None})
    seen: list[dict[str, str]] = []

    def look(current: dict[str, str]) -> None:
        seen.append(dict(current))

    assert store.update(["a", "gone", "absent"], look) == 2  # nothing written: the current version
    assert store.update(None, look) == 2
    assert store.update((), look) == 2
    assert store.update(["b"], lambda current: {}) == 2
    assert seen == [{"a": "1"}, {"a": "1", "b": "2"}, {}]
    assert store.changes(2) == (2, [])


def test_a_change_that_raises_writes_nothing_and_the_error_comes_through(engine):
    store = engine.open()
    store.save({"a": "1"})

    def half(current: dict[str, str]) -> dict[str, str | None]:
        raise ValueError("refused halfway")

    with pytest.raises(ValueError, match="refused halfway"):
        store.update(["a"], half)
    assert store.load() == (1, {"a": "1"})
    assert store.update(["a"], bump("a")) == 2  # the version refused was not used up, nor any lock kept
    assert engine.open().load() == (2, {"a": "2"})


def test_a_deleted_row_is_a_tombstone_others_learn_of(engine):
    store = engine.open()
    store.save({"a": "1", "b": "2"})
    other = engine.open()
    seen, _ = other.changes(0)
    assert store.save({"a": None}) == 2
    assert store.load() == (2, {"b": "2"})
    assert other.changes(seen) == (2, [("a", None, 2)])
    assert store.update(["a"], lambda current: {"a": current.get("a", "fresh")}) == 3
    assert other.load() == (3, {"a": "fresh", "b": "2"})


def test_every_store_object_on_one_storage_sees_the_same_rows(engine, tmp_path):
    first = engine.open()
    first.save({"vm/x": '{"k": "v"}'})
    if engine.kind == "memory":
        return
    first.close()
    engine.opened.remove(first)
    again = engine.open()
    assert again.load() == (1, {"vm/x": '{"k": "v"}'})


# -- concurrent writers ---------------------------------------------------------------------------------------------

def test_concurrent_writers_lose_no_increment_and_commit_versions_in_order(engine):
    """Four writer threads on two store objects (two processes' views) add one to a shared counter 60 times
    each, every increment also writing a row of its own. A reader polling ``changes`` must see every version
    exactly once, never one lower than one it saw: a version committed after a higher one would be skipped."""
    stores = [engine.open(), engine.open()]
    reader = engine.open()
    writers, rounds = 4, 60
    total = writers * rounds
    seen_versions: list[int] = []
    problems: list[str] = []
    done = threading.Event()

    def write(index: int) -> None:
        store = stores[index % 2]
        try:
            for i in range(rounds):
                store.update(["n"], bump("n", {f"log/{index}/{i}": "x"}))
        except Exception as exc:  # noqa: BLE001 - reported below
            problems.append(f"writer {index}: {exc!r}")

    def read() -> None:
        since = 0
        while True:
            finished = done.is_set()
            version, rows = reader.changes(since)
            for key, _, row_version in rows:
                if row_version <= since:
                    problems.append(f"version {row_version} after {since}")
                if key.startswith("log/"):
                    seen_versions.append(row_version)
            if rows and rows != sorted(rows, key=lambda row: row[2]):
                problems.append("a batch out of version order")
            if version < since:
                problems.append(f"the reader went back from {since} to {version}")
            since = version
            if finished:
                return

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    reading = threading.Thread(target=read)
    reading.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    reading.join(timeout=60)
    assert problems == []
    assert stores[0].load()[1]["n"] == str(total)
    assert sorted(seen_versions) == list(range(1, total + 1))  # none skipped, none twice


# -- waiting for changes --------------------------------------------------------------------------------------------

def test_wait_is_woken_by_another_writer_within_100_ms(engine, capsys):
    waiter, writer = engine.open(), engine.open()
    writer.save({"x": "0"})
    assert waiter.wait(0, 1.0) is True  # behind already: at once
    delays: list[float] = []
    for round_ in range(20):
        version = writer.changes(0)[0]
        assert waiter.wait(version, 0.0) is False or round_ == 0
        woken: list[float] = []
        ready = threading.Event()
        thread = threading.Thread(target=wait_once, args=(waiter, version, ready, woken))
        thread.start()
        ready.wait()
        time.sleep(0.02)  # let it block in wait (not needed to pass: a wait that starts late returns at once)
        writer.update(["x"], bump("x"))
        written = time.monotonic()
        thread.join(timeout=10)
        assert woken, f"wait was not woken within 5 s (round {round_})"
        delays.append(woken[0] - written)
    delays.sort()
    with capsys.disabled():
        print(f"\n{engine.kind}: wait woken after p50 {delays[10] * 1000:.1f} ms, max {delays[-1] * 1000:.1f} ms")
    assert delays[-1] < 0.1


def wait_once(store: Store, version: int, ready: threading.Event, woken: list[float]) -> None:
    ready.set()
    if store.wait(version, 5.0):
        woken.append(time.monotonic())


def test_wait_times_out_when_nothing_is_written(engine):
    store = engine.open()
    store.save({"a": "1"})
    started = time.monotonic()
    assert store.wait(1, 0.3) is False
    assert 0.25 <= time.monotonic() - started < 2.0


# -- the journal -------------------------------------------------------------------------------------------------------

def entry(when: float, n: int) -> tuple[float, str, str, str, int, float]:
    return (when, "127.0.0.1", "GET", f"/metadata/instance?n={n}", 200, 0.001)


def test_the_journal_of_every_process_is_kept_with_bounded_retention(shared_engine):
    engine = shared_engine
    one, two = engine.open(), engine.open()
    one.ship("a", [entry(100.0 + i, i) for i in range(JOURNAL_KEEP - 100)], '{"requests": []}')
    two.ship("b", [entry(150.5, -1)], '{"b": 1}')
    one.ship("a", [entry(100.0 + i, i) for i in range(JOURNAL_KEEP - 100, JOURNAL_KEEP + 400)], '{"a": 2}')
    kept = two.journal(0.0, 3 * JOURNAL_KEEP)
    of_a = [row for row in kept if row[1] == "127.0.0.1" and not row[3].endswith("n=-1")]
    assert len(of_a) == JOURNAL_KEEP  # the oldest 400 of "a" are gone, "b"'s one is kept
    assert of_a[0][3] == "/metadata/instance?n=400" and of_a[-1][3] == f"/metadata/instance?n={JOURNAL_KEEP + 399}"
    assert [row[3] for row in kept].count("/metadata/instance?n=-1") == 1  # retention is per process
    newest = two.journal(100.0 + JOURNAL_KEEP + 398, 10)
    assert [row[3] for row in newest] == [f"/metadata/instance?n={JOURNAL_KEEP + n}" for n in (398, 399)]
    assert [tuple(row) for row in two.journal(0.0, 2)] == [entry(100.0 + JOURNAL_KEEP + 398, JOURNAL_KEEP + 398),
                                                          entry(100.0 + JOURNAL_KEEP + 399, JOURNAL_KEEP + 399)]
    assert one.metrics() == {"a": '{"a": 2}', "b": '{"b": 1}'}
    one.ship("a", [], None)  # nothing to keep: nothing changes
    assert two.metrics()["a"] == '{"a": 2}'


def test_a_shipment_is_one_row_and_a_damaged_one_is_passed_over(shared_engine):
    engine = shared_engine
    one = engine.open()
    one.ship("a", [entry(10.0 + i, i) for i in range(500)], None)
    one.ship("a", [entry(600.0, 500)], None)
    assert len(one.journal(0.0, 1000)) == 501
    assert [row[0] for row in one.journal(509.0, 10)] == [509.0, 600.0]
    assert [row[0] for row in one.journal(550.0, 10)] == [600.0]
    if engine.kind == "sqlite":
        import sqlite3

        db = sqlite3.connect(one.path)  # type: ignore[attr-defined]
        assert db.execute("SELECT count(*) FROM journal_batches").fetchone() == (2,)
        db.execute("UPDATE journal_batches SET entries = '[[' WHERE seq = 501")
        db.commit()
        db.close()
        kept = one.journal(0.0, 1000)
        assert len(kept) == 500 and kept[-1][3] == "/metadata/instance?n=499"


def test_an_older_azimds_s_journal_table_is_dropped_and_other_tables_left(tmp_path, postgres_url):
    """State written by an azimds that journalled a row per request opens (its journal is dropped); a table of
    that name with other columns is someone else's: SQLite refuses the file, PostgreSQL leaves the table be."""
    import sqlite3

    import psycopg

    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT, version INTEGER NOT NULL)")
    db.execute("CREATE TABLE journal (node TEXT NOT NULL, seq INTEGER NOT NULL, time REAL, peer TEXT, method TEXT, "
               "url TEXT, status INTEGER, latency REAL)")
    db.execute("INSERT INTO state VALUES ('k', '1', 1)")
    db.commit()
    db.close()
    store = SqliteStore(path, shared=True)
    try:
        assert store.load() == (1, {"k": "1"})
        store.ship("a", [entry(1.0, 1)], None)
        assert [row[3] for row in store.journal(0.0, 10)] == ["/metadata/instance?n=1"]
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert "journal" not in {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.execute("CREATE TABLE journal (x TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="journal table has other columns"):
        SqliteStore(path, shared=True)

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE journal (node text NOT NULL, seq bigint NOT NULL, time double precision, peer text, "
                     "method text, url text, status integer, latency double precision, PRIMARY KEY (node, seq))")
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('journal')").fetchone() == (None,)
        conn.execute("CREATE TABLE journal (x text)")
        conn.execute("INSERT INTO journal VALUES ('theirs')")
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT x FROM journal").fetchall() == [("theirs",)]


def test_the_first_layout_is_brought_forward_in_the_order_it_was_written_and_a_mixed_one_refused(tmp_path):
    """The first azimds that kept its world wrote rows without versions: opened, they are numbered as written
    (so every process applies them in that order) and writes go on past them. Beside tables of today's, the
    same table is no layout azimds ever wrote: refused, and left as it was."""
    import sqlite3

    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.executemany("INSERT INTO state VALUES (?, ?)", [("profile", "p"), ("clock", "c"), ("faults", "[]")])
    db.close()
    store = SqliteStore(path)
    try:
        assert store.load() == (3, {"profile": "p", "clock": "c", "faults": "[]"})
        assert [(key, version) for key, _, version in store.changes(0)[1]] == [("profile", 1), ("clock", 2),
                                                                               ("faults", 3)]
        store.update(["clock"], lambda current: {"clock": "d"})
        assert store.load() == (4, {"profile": "p", "clock": "d", "faults": "[]"})
    finally:
        store.close()

    mixed = tmp_path / "mixed.sqlite"
    db = sqlite3.connect(mixed)
    with db:
        db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE metrics (node TEXT PRIMARY KEY, value TEXT)")
    db.close()
    before = mixed.read_bytes()
    with pytest.raises(StateError, match="state table has other columns"):
        SqliteStore(mixed)
    assert mixed.read_bytes() == before


# -- the PostgreSQL engine's own -----------------------------------------------------------------------------------

def test_a_password_is_never_shown(postgres_cluster):
    from azimds.emulator.world.postgres import redact

    assert redact("postgresql://me:Sekr3t@db.example:5432/w?sslmode=require") == \
        "postgresql://me@db.example:5432/w?sslmode=require"
    assert redact("postgresql://me:p%40ss@db/w?password=Sekr3t&x=1") == "postgresql://me@db/w?password=***&x=1"
    assert redact("postgresql://db/w") == "postgresql://db/w"
    url = postgres_cluster.create_database().replace("postgres@", "postgres:Sekr3t@")  # trusted: not checked
    store = open_store(url)
    try:
        assert "Sekr3t" not in store.url and store.url.startswith("postgresql://postgres@127.0.0.1:")
    finally:
        store.close()
    with pytest.raises(StateError) as refused:
        open_store("postgresql://me:Sekr3t@127.0.0.1:1/w")
    message = str(refused.value)
    assert "Sekr3t" not in message and "\n" not in message
    assert message.startswith("postgresql://me@127.0.0.1:1/w: cannot reach the PostgreSQL engine: ")
    assert "Connection refused" in message


def test_tables_that_are_not_azimds_s_are_refused_and_left_alone(postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE state (key text PRIMARY KEY, colour text)")
    with pytest.raises(StateError, match="not this azimds's state database"):
        open_store(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                            ).fetchone() == (1,)


def test_two_stores_starting_at_once_make_the_tables_once(postgres_url):
    stores: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(open_store(postgres_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == [] and len(stores) == 4
        assert stores[0].save({"a": "1"}) == 1 and stores[3].load() == (1, {"a": "1"})
    finally:
        for store in stores:
            store.close()


@pytest.fixture
def own_cluster():
    """A cluster of this test's own: it is stopped and started again."""
    cluster = new_cluster()
    yield cluster
    cluster.destroy()


def test_the_engine_lost_refuses_at_once_and_found_again_catches_up(own_cluster):
    """Stopped: every call refused at once with the reason. Started again: writes work, and a write another
    store made while this one's LISTEN connection was gone wakes its wait (the version looked at again)."""
    url = own_cluster.create_database()
    store, other = open_store(url), open_store(url)
    try:
        store.save({"a": "1"})
        assert store.wait(0, 1.0) is True
        seen = store.changes(0)[0]
        own_cluster.stop("fast")
        started = time.monotonic()
        with pytest.raises(EngineUnavailable) as lost:
            store.update(["a"], bump("a"))
        assert time.monotonic() - started < 2.0
        assert "unreachable" in lost.value.message and "\n" not in lost.value.message
        for call in (lambda: store.update(["a"], bump("a")), lambda: store.changes(0), store.load,
                     lambda: store.wait(seen, 1.0), lambda: store.ship("n", [entry(1.0, 1)], "{}")):
            started = time.monotonic()
            with pytest.raises(EngineUnavailable):
                call()
            assert time.monotonic() - started < 1.0  # refused at once, never a wait for a timeout
        own_cluster.start()
        deadline = time.monotonic() + 20
        while True:  # the other writes first: this one's listener missed its NOTIFY
            try:
                version = other.update(["a"], bump("a"))
                break
            except EngineUnavailable:
                assert time.monotonic() < deadline, "the engine came back but writes are still refused"
                time.sleep(0.05)
        assert version == seen + 1
        deadline = time.monotonic() + 20
        while True:
            try:
                assert store.wait(seen, 2.0) is True
                break
            except EngineUnavailable:
                assert time.monotonic() < deadline, "the engine came back but wait still fails"
                time.sleep(0.05)
        assert store.changes(seen) == (version, [("a", "2", version)])
        assert store.update(["a"], bump("a")) == version + 1
        # Restarted while nobody asked: the pooled connections are dead, and the first calls take fresh ones.
        own_cluster.stop("fast")
        own_cluster.start()
        assert other.update(["a"], bump("a")) == version + 2
        assert store.changes(version + 1) == (version + 2, [("a", "4", version + 2)])
    finally:
        store.close()
        other.close()
