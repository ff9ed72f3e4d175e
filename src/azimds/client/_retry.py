"""Microsoft's retry rules for IMDS clients, and the token bucket that keeps a process under 5 requests/second."""

from __future__ import annotations

import _thread
import time

from ..errors import UsageError

TYPE_CHECKING = False  # typing costs milliseconds at import; the CLI imports this module on every call
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PROCESS_LIMITER", "Backoff", "TokenBucket"]


class Backoff:
    """When to retry and how long to wait, as Microsoft documents for IMDS clients.

    Retry ``n`` (0-based) waits ``delta * (2**n - 1)`` seconds, scaled by a random factor within
    ``1 ± jitter`` and capped at ``cap``: about 0, 2, 6, 14, 30 s ("ExponentialBackoff, 5 retries, min 0 s,
    max 60 s, delta 2 s"). No answer, 429 and 5xx get ``retries`` retries; 5xx never sooner than
    ``server_error_min`` ("retry after at least 1 s"); 404 gets ``not_found_retries`` (it means "IMDS is
    updating" but far more often "no such path"); 410 is retried past ``retries`` until ``gone_for`` seconds
    after the call began ("available within 70 s"); other statuses are final. A retry is only made when at
    least ``min_attempt`` seconds remain before the deadline: a wait that would end later is shortened, and
    that retry is the last.
    """

    __slots__ = (
        "cap",
        "delta",
        "gone_for",
        "jitter",
        "min_attempt",
        "not_found_retries",
        "retries",
        "server_error_min",
    )

    def __init__(self, *, delta: float = 2.0, cap: float = 60.0, jitter: float = 0.2, retries: int = 5,
                 not_found_retries: int = 3, gone_for: float = 70.0, server_error_min: float = 1.0,
                 min_attempt: float = 1.0) -> None:
        if delta < 0 or cap < 0 or not 0 <= jitter < 1 or retries < 0 or not_found_retries < 0 or min_attempt < 0:
            raise UsageError("backoff times and counts must be 0 or more, and jitter below 1")
        self.delta, self.cap, self.jitter = delta, cap, jitter
        self.retries, self.not_found_retries, self.gone_for = retries, not_found_retries, gone_for
        self.server_error_min, self.min_attempt = server_error_min, min_attempt

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Backoff({fields})"

    def allows(self, retry: int, status: int | None, elapsed: float) -> bool:
        """Whether a failure (``status`` None: no answer) earns retry number ``retry`` of a call."""
        if status is None or status == 429 or status >= 500:
            return retry < self.retries
        if status == 404:
            return retry < self.not_found_retries
        if status == 410:
            return retry < self.retries or elapsed < self.gone_for
        return False

    def delay(self, retry: int, status: int | None, chance: float) -> float:
        """Seconds before retry number ``retry``; ``chance`` in [0, 1) picks the jitter (0.5: none)."""
        factor = 1.0 + self.jitter * (2.0 * chance - 1.0)
        wait: float = min(self.cap, self.delta * (2.0 ** min(retry, 64) - 1) * factor)  # 2**64: long past any cap
        if status is not None and status >= 500:
            wait = max(wait, self.server_error_min)
        return wait


class TokenBucket:
    """A thread-safe token bucket: bursts of ``burst`` requests, then ``rate`` a second.

    ``acquire`` reserves a token and sleeps until it is due, so concurrent callers queue fairly.
    """

    def __init__(self, rate: float = 5.0, burst: float = 5.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise UsageError("a token bucket needs a rate above 0 and a burst of 1 or more")
        self.rate, self.burst = float(rate), float(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens, self._stamp = self.burst, clock()
        self._lock = _thread.allocate_lock()  # threading's own; importing threading costs the CLI milliseconds

    def acquire(self, timeout: float) -> bool:
        """Take a token, waiting for it if need be; False, taking nothing, if that would exceed ``timeout``."""
        with self._lock:
            now = self._clock()
            tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            wait = max(0.0, (1.0 - tokens) / self.rate)
            if wait > timeout:
                return False
            self._tokens, self._stamp = tokens - 1.0, now
        if wait:
            self._sleep(wait)
        return True


#: Shared by every Client that is not given its own: keeps one process under IMDS's 5 requests/second. A
#: burst one token smaller than the service's leaves it a token to spare, so requests that arrive closer
#: together than they were sent (up to 0.2 s closer) are still under its limit.
PROCESS_LIMITER = TokenBucket(rate=5.0, burst=4.0)
