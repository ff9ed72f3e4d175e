"""A world shared by several processes through one store (SQLite shared, PostgreSQL): each sees every other's
changes even when its own commit lands in between, a change to events is caught up to the world's clock as the
store holds it, and the journal reaches the store once per entry while requests keep coming."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from azimds.emulator.model.events import EventSpec
from azimds.emulator.model.profile import from_tree
from azimds.emulator.world.clock import Clock
from azimds.emulator.world.store import SqliteStore, Store, open_store
from azimds.emulator.world.world import World
from tests.support import wait_until

PROFILE = {"compute": {"name": "first"},
           "fleet": {"vms": [{"addresses": ["127.0.0.2"], "compute": {"name": "db-1"}}]}}


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Open another store object on one storage (another process's view of it)."""
    opened: list[Store] = []
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None

    def open_one() -> Store:
        store = open_store(url) if url else SqliteStore(tmp_path / "state.sqlite", shared=True)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def make_world(store: Store, **kwargs) -> World:
    return World(from_tree(PROFILE, "<test>"), store=store, clock=Clock("manual", start=1_800_000_000), **kwargs)


def test_a_commit_of_its_own_does_not_hide_an_earlier_one_of_another(stores):
    mine, other = make_world(stores()), make_world(stores())
    other.set_tags(other.vm("db-1"), {"by": "other"})  # a version this world has not applied
    mine.set_tags(mine.vm(), {"by": "mine"})  # a later version, applied here at once
    mine.listen(lambda apply: apply())
    try:
        wait_until(lambda: mine.vm("db-1").instance["compute"]["tags"] == "by:other", timeout=5)
        assert mine.vm().instance["compute"]["tags"] == "by:mine"
    finally:
        mine.close()
        other.close()


def test_a_change_to_events_is_caught_up_to_the_clock_the_store_holds(stores):
    mine, other = make_world(stores()), make_world(stores())
    try:
        other.advance_clock(3600)  # not yet applied by ``mine``, which does not listen
        assert mine.clock.now() == 1_800_000_000
        event = mine.schedule(mine.vm(), EventSpec(type="Reboot"))
        assert event.published == 1_800_003_600  # the world's time, not this process's stale copy of it
    finally:
        mine.close()
        other.close()


def test_the_journal_is_shipped_once_per_entry_while_requests_come(stores):
    store = stores()
    world = make_world(store, node="n1")
    total = 3000
    recording = threading.Event()

    def serve() -> None:  # the serving thread, recording requests while others ship
        recording.set()
        for n in range(total):
            world.record((float(n), "127.0.0.1", "GET", f"/metadata/instance?n={n}".encode(), 200, 0.0))
            if n % 100 == 0:
                time.sleep(0.001)

    def ship() -> None:
        while not done.is_set():
            world.ship()

    done = threading.Event()
    threads = [threading.Thread(target=serve), threading.Thread(target=ship), threading.Thread(target=ship)]
    for thread in threads:
        thread.start()
    threads[0].join(timeout=60)
    done.set()
    for thread in threads[1:]:
        thread.join(timeout=60)
    world.ship()
    urls = [row[3] for row in store.journal(0.0, 10 * total)]
    assert urls == [f"/metadata/instance?n={n}" for n in range(total)]
    world.close()


def test_a_shipment_carries_the_newest_entries_and_the_metrics_count_them_all(stores):
    """Past SHIP_MOST entries between two shipments (more than 10,000 requests a second), the store keeps the
    newest of them; the metrics still count every request."""
    from azimds.emulator.world.world import SHIP_MOST

    store = stores()
    world = make_world(store, node="n1")
    total = SHIP_MOST + 500
    for n in range(total):
        world.record((float(n), "127.0.0.1", "GET", f"/metadata/instance?n={n}".encode(), 200, 0.0))
    world.ship()
    urls = [row[3] for row in store.journal(0.0, 10 * total)]
    assert urls == [f"/metadata/instance?n={n}" for n in range(500, total)]
    world.record((float(total), "127.0.0.1", "GET", b"/metadata/versions", 200, 0.0))
    world.ship()
    assert [row[3] for row in store.journal(float(total), 10)] == ["/metadata/versions"]
    assert sum(n for (_, status), n in world.metrics().requests.items() if status == 200) == total + 1
    world.close()
