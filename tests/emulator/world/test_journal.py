"""The journal and metrics: recording only appends, counting is done for many at once, and no reader lags."""

from __future__ import annotations

import bisect
import random
import sys
import threading

from azimds.emulator.service.ports import JournalEntry
from azimds.emulator.world.journal import FOLD_EVERY, Journal, Metrics


def answered(n: int, url: bytes = b"/metadata/instance?api-version=2021-02-01", status: int = 200,
             latency: float = 0.0) -> tuple[float, str, str, bytes, int, float]:
    return (float(n), "10.0.0.4", "GET", url, status, latency)


def test_a_request_is_seen_by_every_reader_at_once():
    journal = Journal(size=100)
    journal.record(answered(1, b"/metadata/versions", 200, 0.002))
    assert journal.entries() == [JournalEntry(1.0, "10.0.0.4", "GET", "/metadata/versions", 200, 0.002)]
    assert journal.metrics().requests == {("versions", 200): 1}
    assert len(journal) == 1 and list(journal) == journal.entries()


def test_the_histogram_counts_each_latency_in_the_bucket_a_prometheus_le_names():
    """Counted in batches, each latency lands where one-at-a-time counting puts it: the first bound it does not
    exceed (a latency equal to a bound is in that bound's bucket), past the last in the overflow bucket."""
    rng = random.Random(7)
    latencies = [*Metrics.BUCKETS, 0.0, 11.0, *(rng.uniform(0, 12) for _ in range(3000)),
                 *(rng.choice(Metrics.BUCKETS) for _ in range(200))]
    journal = Journal(size=10)
    for n, latency in enumerate(latencies):
        journal.record(answered(n, status=200 if n % 3 else 404, latency=latency))
    metrics = journal.metrics()
    expected = [0] * (len(Metrics.BUCKETS) + 1)
    for latency in latencies:
        expected[bisect.bisect_left(Metrics.BUCKETS, latency)] += 1
    assert metrics.latency_counts == expected
    assert abs(metrics.latency_sum - sum(latencies)) < 1e-6
    assert metrics.requests == {("instance", 200): sum(1 for n in range(len(latencies)) if n % 3),
                                ("instance", 404): sum(1 for n in range(len(latencies)) if not n % 3)}
    assert [e.time for e in journal.entries()] == [float(n) for n in range(len(latencies) - 10, len(latencies))]


def test_readers_on_other_threads_lose_and_repeat_nothing():
    """One thread records (as the serving thread does, counting every FOLD_EVERY) while others read and take
    shipments: every request is counted once and shipped once, in order."""
    journal = Journal(size=100_000)
    total = 20 * FOLD_EVERY + 7
    shipped: list[float] = []
    after = 0
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            journal.metrics()
            len(journal)

    readers = [threading.Thread(target=read) for _ in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns as often as they can, so that a race would show
    try:
        for reader in readers:
            reader.start()
        for n in range(total):
            journal.record(answered(n))
            if n % 1000 == 0:
                batch, after = journal.shipment(after, 100_000)
                shipped += [row[0] for row in batch]
    finally:
        sys.setswitchinterval(interval)
        done.set()
        for reader in readers:
            reader.join(timeout=30)
    batch, after = journal.shipment(after, 100_000)
    shipped += [row[0] for row in batch]
    assert shipped == [float(n) for n in range(total)] and after == total
    assert journal.metrics().requests == {("instance", 200): total}


def test_a_shipment_carries_at_most_the_newest_and_says_how_many_were_counted():
    journal = Journal(size=50)
    for n in range(80):
        journal.record(answered(n))
    batch, after = journal.shipment(0, 20)
    assert [row[0] for row in batch] == [float(n) for n in range(60, 80)] and after == 80
    assert batch[0] == (60.0, "10.0.0.4", "GET", "/metadata/instance?api-version=2021-02-01", 200, 0.0)
    assert journal.shipment(after, 20) == ([], 80)


def test_a_log_line_is_written_as_each_request_is_recorded():
    journal = Journal()
    logged: list[JournalEntry] = []
    journal.log = logged.append
    journal.record(answered(5, b"/metadata/identity/oauth2/token?x=%2F", 400))
    assert logged == [JournalEntry(5.0, "10.0.0.4", "GET", "/metadata/identity/oauth2/token?x=%2F", 400, 0.0)]


def test_the_kept_requests_are_the_newest_in_order_however_the_counting_falls_across_the_ring():
    """Requests are kept in a ring: batches that run past its end, batches larger than it and reads between
    batches all see the newest ``size`` requests, oldest first, each as it was recorded."""
    for size, total in ((700, 1_100), (700, 3 * FOLD_EVERY + 13), (FOLD_EVERY, 4 * FOLD_EVERY), (1, 1_030),
                        (3_000, 2_000)):
        journal = Journal(size=size)
        after = 0
        shipped: list[float] = []
        for n in range(total):
            journal.record(answered(n, url=b"/u%d" % (n % 7), status=200 + n % 5, latency=n / 1e6))
            if n % 333 == 0:
                assert [e.time for e in journal.entries()] == [float(m) for m in range(max(0, n + 1 - size), n + 1)]
                batch, after = journal.shipment(after, size)
                shipped += [row[0] for row in batch]
        entries = journal.entries()
        assert entries == [JournalEntry(float(m), "10.0.0.4", "GET", f"/u{m % 7}", 200 + m % 5, m / 1e6)
                           for m in range(max(0, total - size), total)], (size, total)
        assert len(journal) == min(size, total)
        batch, after = journal.shipment(after, size)
        shipped += [row[0] for row in batch]
        assert after == total and shipped[-1] == float(total - 1) and shipped == sorted(set(shipped))
