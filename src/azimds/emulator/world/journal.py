"""What the metadata port answered: the journal of recent requests and the cumulative metrics."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ..service.metadata import endpoint_label
from ..service.ports import JournalEntry

__all__ = ["Journal", "JournalEntry", "Metrics"]


class Metrics:
    """Cumulative request counts by endpoint and status, and a latency histogram, for /metrics."""

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency_counts = [0] * (len(self.BUCKETS) + 1)
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

    def observe(self, endpoint: str, status: int, latency: float) -> None:
        key = (endpoint, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency_counts[bisect.bisect_left(self.BUCKETS, latency)] += 1
        self.latency_sum += latency


class Journal:
    """The last ``size`` requests, oldest first, and the metrics of all of them."""

    def __init__(self, size: int = 10_000) -> None:
        self.entries: deque[JournalEntry] = deque(maxlen=size)
        self.metrics = Metrics()
        self.log: Callable[[JournalEntry], None] | None = None  # a structured log line per request
        self.total = 0  # entries ever recorded (the deque keeps the last ``size``)

    def record(self, entry: JournalEntry) -> None:
        self.entries.append(entry)
        self.total += 1
        self.metrics.observe(endpoint_label(entry.url), entry.status, entry.latency)
        if self.log is not None:
            self.log(entry)

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)
