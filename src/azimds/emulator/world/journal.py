"""What the metadata port answered: the journal of recent requests and the cumulative metrics."""

from __future__ import annotations

import threading
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
    ``shipment``) may be on any thread."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._fresh: deque[Answered] = deque()  # recorded, not yet counted (fewer than FOLD_EVERY but for a moment)
        self._kept: deque[Answered] = deque(maxlen=size)
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
        self.fold()
        return [_entry(answered) for answered in list(self._kept)]

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
            kept = list(self._kept)
        fresh = min(total - after, len(kept), most)
        return [tuple(_entry(answered)) for answered in kept[len(kept) - fresh:]] if fresh > 0 else [], total

    def _fold(self) -> None:
        fresh = self._fresh
        batch = [fresh.popleft() for _ in range(len(fresh))]
        if batch:
            self._kept.extend(batch)
            self._total += len(batch)
            self._metrics.observe(batch)

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self.entries())

    def __len__(self) -> int:
        self.fold()
        return len(self._kept)


def _entry(answered: Answered) -> JournalEntry:
    when, peer, method, url, status, latency = answered
    return JournalEntry(when, peer, method, url.decode("latin-1"), status, latency)
