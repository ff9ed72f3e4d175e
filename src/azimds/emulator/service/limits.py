"""Per-caller rate limits: the token buckets that make the emulator answer 429 where Azure would."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """A token bucket per key (a source address): ``rate`` requests a second, bursts of ``rate``.

    ``rate`` 0 turns the limiter off. ``allow`` costs one dict lookup and a little arithmetic.
    """

    __slots__ = ("_buckets", "_clock", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._buckets: dict[str, list[float]] = {}
        self._clock = clock

    def allow(self, key: str) -> float:
        """0.0 when the request may go ahead, else the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 50_000:
                self._prune(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate
        for key in [k for k, (_, last) in self._buckets.items() if now - last > full]:
            del self._buckets[key]
