"""What the metadata port answered: the journal of recent requests and the cumulative metrics."""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from ..service.metadata import endpoint_label
from ..service.ports import Answered, JournalEntry

__all__ = ["FOLD_EVERY", "Journal", "JournalEntry", "Metrics"]

#: Requests recorded before they are counted in the metrics and moved into the journal, all at once. Recording
#: is on the path of every request, so it only appends a tuple; the counting, done for many, costs less each.
#: Every read (the journal, the metrics, a shipment) counts what was recorded first, so readers never lag.
FOLD_EVERY = 512

_URL, _STATUS, _LATENCY = itemgetter(3), itemgetter(4), itemgetter(5)


class Metrics:
    """Cumulative request counts by endpoint and status, and a latency histogram, for /metrics."""

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency_counts = [0] * (len(self.BUCKETS) + 1)  # [i]: latency <= BUCKETS[i] and above the one before
        self.latency_sum = 0.0

    def to_mapping(self) -> dict[str, Any]:
        """The counts as JSON values; safe while another thread observes (each container copied at once)."""
        requests = list(self.requests.items())
        return {"requests": [[e, s, n] for (e, s), n in requests], "latency_counts": list(self.latency_counts),
                "latency_sum": self.latency_sum}

    def add(self, mapping: dict[str, Any]) -> None:
        """Add another process's counts (as ``to_mapping`` gives them) to these."""
        for endpoint, status, count in mapping.get("requests", []):
            key = (str(endpoint), int(status))
            self.requests[key] = self.requests.get(key, 0) + int(count)
        for index, count in enumerate(mapping.get("latency_counts", [])[:len(self.latency_counts)]):
            self.latency_counts[index] += int(count)
        self.latency_sum += float(mapping.get("latency_sum", 0.0))

    def observe(self, batch: Sequence[Answered]) -> None:
        """Count requests as the service recorded them: per (endpoint, status), and their latencies."""
        for (url, status), count in Counter(zip(map(_URL, batch), map(_STATUS, batch), strict=True)).items():
            key = (endpoint_label(url.decode("latin-1")), status)
            self.requests[key] = self.requests.get(key, 0) + count
        latencies = sorted(map(_LATENCY, batch))
        below = 0
        for index, bound in enumerate(self.BUCKETS):
            upto = bisect_right(latencies, bound)
            self.latency_counts[index] += upto - below
            below = upto
        self.latency_counts[-1] += len(latencies) - below
        self.latency_sum += sum(latencies)


class Journal:
    """The last ``size`` requests, oldest first, and the metrics of all of them.

    ``record`` is called on the serving thread for every request; the readers (``entries``, ``metrics``,
    ``shipment``) may be on any thread. The requests kept are held in columns (times and latencies as doubles,
    statuses as integers, references to the peer, method and URL each request came with), about 45 bytes each
    rather than a tuple and two floats (about 150): the kept journal is written at every request's pace, and at
    10,000 requests a ring of tuples took most of a core's 2 MiB L2 cache from the answers themselves."""

    def __init__(self, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError(f"the journal keeps at least one request, not {size}")
        self.size = size
        self._fresh: deque[Answered] = deque()  # recorded, not yet counted (fewer than FOLD_EVERY but for a moment)
        # The kept requests: a ring, column by column; the newest is at (_total - 1) % size.
        self._times = array("d", bytes(8 * size))
        self._peers: list[str] = [""] * size
        self._methods: list[str] = [""] * size
        self._urls: list[bytes] = [b""] * size
        self._statuses = array("i", bytes(4 * size))
        self._latencies = array("d", bytes(8 * size))
        self._metrics = Metrics()
        self._total = 0  # requests ever counted (the journal keeps the last ``size``)
        self._lock = threading.Lock()
        self.log: Callable[[JournalEntry], None] | None = None  # a structured log line per request

    def record(self, answered: Answered) -> None:
        fresh = self._fresh
        fresh.append(answered)
        if self.log is not None:
            self.log(_entry(answered))
        if len(fresh) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Count what was recorded and keep it in the journal (thread-safe: only a fold takes from ``_fresh``)."""
        with self._lock:
            self._fold()

    def entries(self) -> list[JournalEntry]:
        """The requests kept, oldest first."""
        with self._lock:
            self._fold()
            kept = self._newest(self.size)
        return [_entry(answered) for answered in kept]

    def metrics(self) -> Metrics:
        """The counts of every request so far (the live object: read it, don't keep it)."""
        self.fold()
        return self._metrics

    def shipment(self, after: int, most: int) -> tuple[list[tuple[Any, ...]], int]:
        """The requests counted after the first ``after`` ever (the newest ``most`` of them), as JSON-ready tuples in
        JournalEntry's order, and how many have been counted in all (the ``after`` of the next shipment)."""
        with self._lock:
            self._fold()
            total = self._total
            kept = self._newest(min(total - after, most))
        return [tuple(_entry(answered)) for answered in kept], total

    def _fold(self) -> None:
        fresh = self._fresh
        batch = [fresh.popleft() for _ in range(len(fresh))]
        if not batch:
            return
        self._metrics.observe(batch)
        size, total = self.size, self._total
        self._total = total + len(batch)
        if len(batch) > size:  # only the newest are kept
            total += len(batch) - size
            batch = batch[-size:]
        times, peers, methods, urls, statuses, latencies = zip(*batch, strict=True)
        at = total % size
        first = min(len(batch), size - at)  # up to the end of the ring; the rest from its start
        for column, values in ((self._peers, peers), (self._methods, methods), (self._urls, urls)):
            column[at:at + first] = values[:first]
            column[:len(values) - first] = values[first:]
        for array_column, values in ((self._times, times), (self._statuses, statuses),
                                     (self._latencies, latencies)):
            array_column[at:at + first] = array(array_column.typecode, values[:first])
            array_column[:len(values) - first] = array(array_column.typecode, values[first:])

    def _newest(self, count: int) -> list[Answered]:
        """The newest ``count`` requests kept (fewer if fewer are), oldest first. Called with the lock held."""
        count = min(count, self._total, self.size)
        if count <= 0:
            return []
        end = self._total % self.size  # one past the newest (0: the end of the ring)
        start = end - count
        parts = [(start, end)] if start >= 0 else [(start + self.size, self.size), (0, end)]
        kept: list[Answered] = []
        for low, high in parts:
            kept += zip(self._times[low:high], self._peers[low:high], self._methods[low:high], self._urls[low:high],
                        self._statuses[low:high], self._latencies[low:high], strict=True)
        return kept

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self.entries())

    def __len__(self) -> int:
        self.fold()
        return min(self._total, self.size)


def _entry(answered: Answered) -> JournalEntry:
    when, peer, method, url, status, latency = answered
    return JournalEntry(when, peer, method, url.decode("latin-1"), status, latency)
