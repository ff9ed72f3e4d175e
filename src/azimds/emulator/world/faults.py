"""Faults on demand: make chosen requests fail the way the real service fails, to test clients' retries.

A fault matches request paths by glob (``/metadata/identity/*``) and does one or more of: answer with a
status (404, 410, 429, 500, 503, …, with Retry-After if asked), wait before answering, or drop the
connection unanswered. It may apply to every matching request, a random share of them, the first N of
them, or those in the first N seconds after the emulator started.
"""

from __future__ import annotations

import fnmatch
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .http import REASONS, Response

__all__ = ["Fault", "FaultSet", "parse_fault"]


@dataclass
class Fault:
    """One fault rule. Exactly one of status/latency/drop must be set (status and latency may combine)."""

    path: str = "*"
    status: int | None = None
    latency: float = 0.0
    drop: bool = False
    retry_after: int | None = None
    probability: float = 1.0
    first: int | None = None
    first_seconds: float | None = None
    matched: int = field(default=0, compare=False)  # requests this fault has applied to so far

    def __post_init__(self) -> None:
        problems = []
        if not self.path.startswith(("/", "*")):
            problems.append(f"path pattern must start with / or *, not {self.path!r}")
        if self.status is not None and not 400 <= self.status <= 599:
            problems.append(f"status must be 400-599, not {self.status}")
        if self.latency < 0 or self.latency > 3600:
            problems.append(f"latency must be 0-3600 seconds, not {self.latency}")
        if not 0.0 < self.probability <= 1.0:
            problems.append(f"probability must be in (0, 1], not {self.probability}")
        if self.first is not None and self.first < 1:
            problems.append(f"first must be 1 or more, not {self.first}")
        if self.first_seconds is not None and self.first_seconds <= 0:
            problems.append(f"first-seconds must be more than 0, not {self.first_seconds}")
        if self.retry_after is not None and (self.retry_after < 0 or self.status is None):
            problems.append("retry-after needs a status and 0 or more seconds")
        if self.status is None and not self.latency and not self.drop:
            problems.append("a fault needs status, latency or drop")
        if self.drop and self.status is not None:
            problems.append("drop and status exclude each other")
        if problems:
            raise ValueError("; ".join(problems))
        self._regex = re.compile(fnmatch.translate(self.path))
        headers = (("Retry-After", str(self.retry_after)),) if self.retry_after is not None else ()
        self._response = None
        if self.status is not None:
            reason = REASONS.get(self.status, "Error")
            self._response = Response(self.status, f'{{"error":"{reason}"}}'.encode(), headers=headers)
        elif self.drop:
            self._response = Response(0, drop=True)

    def applies(self, path: str, elapsed: float, rng: Callable[[], float]) -> bool:
        if not self._regex.match(path):
            return False
        if self.first_seconds is not None and elapsed >= self.first_seconds:
            return False
        if self.first is not None and self.matched >= self.first:
            return False
        if self.probability < 1.0 and rng() >= self.probability:
            return False
        self.matched += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        for key in ("status", "retry_after", "first", "first_seconds"):
            if getattr(self, key) is not None:
                out[_camel(key)] = getattr(self, key)
        if self.latency:
            out["latency"] = self.latency
        if self.drop:
            out["drop"] = True
        if self.probability != 1.0:
            out["probability"] = self.probability
        return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class FaultSet:
    """The active faults; the first that applies to a request decides its fate."""

    def __init__(self, faults: list[Fault] | None = None, *, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.faults: list[Fault] = list(faults or [])
        self._clock = clock
        self.started = clock()
        self._rng = random.Random(seed).random

    def __bool__(self) -> bool:
        return bool(self.faults)

    def match(self, path: str) -> Fault | None:
        elapsed = self._clock() - self.started
        for fault in self.faults:
            if fault.applies(path, elapsed, self._rng):
                return fault
        return None

    @staticmethod
    def response(fault: Fault) -> Response | None:
        """The answer the fault gives, or None when it only delays the normal answer."""
        return fault._response


_KEYS = {"status": int, "latency": float, "retry-after": int, "probability": float, "first": int,
         "first-seconds": float}


def parse_fault(text: str) -> Fault:
    """Parse ``PATTERN=SPEC`` as the ``--fault`` flag takes it, e.g. ``/metadata/*=status:410,first-seconds:70``.

    SPEC is a comma-separated list of ``status:N``, ``latency:SECONDS``, ``drop``, ``retry-after:SECONDS``,
    ``probability:P``, ``first:N`` and ``first-seconds:SECONDS``. Raises ValueError saying what is wrong.
    """
    pattern, sep, spec = text.partition("=")
    if not sep or not spec:
        raise ValueError(f"a fault is PATTERN=SPEC, e.g. '/metadata/*=status:500', not {text!r}")
    kwargs: dict[str, Any] = {"path": pattern.strip() or "*"}
    for item in spec.split(","):
        key, _, value = item.strip().partition(":")
        if key == "drop" and not value:
            kwargs["drop"] = True
            continue
        if key not in _KEYS:
            raise ValueError(f"unknown fault option {key!r}; known: drop, {', '.join(_KEYS)}")
        try:
            kwargs[key.replace("-", "_")] = _KEYS[key](value)
        except ValueError:
            raise ValueError(f"fault option {key} takes a number, not {value!r}") from None
    return Fault(**kwargs)


def from_profile(items: list[dict[str, Any]]) -> list[Fault]:
    """Faults from a profile's ``azimds.faults`` list (camelCase keys, as validated there)."""
    names = {"retryAfter": "retry_after", "firstSeconds": "first_seconds"}
    return [Fault(**{names.get(k, k): v for k, v in item.items()}) for item in items]
