"""The faults in force, and what each has done so far: which rule a request meets, counted as it goes.

A rule (``model.faults.FaultRule``) says what to do; a FaultSet keeps the rules in force for a VM, how many
requests each has hit (for ``first``), the random draws (for ``probability``) and the time since start (for
``firstSeconds``, counted in real seconds by the set's own clock).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable

from ..model.faults import FaultRule

__all__ = ["FaultSet"]


class FaultSet:
    """The active fault rules of a VM; the first that applies to a request decides its fate."""

    def __init__(self, rules: Iterable[FaultRule] = (), *, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.started = clock()
        self._rng = random.Random(seed).random
        self._rules: list[tuple[FaultRule, re.Pattern[str], list[int]]] = []
        self.active = False  # some rule is in force (read on every request: an attribute, not a call)
        self.replace(rules)

    def __bool__(self) -> bool:
        return self.active

    @property
    def rules(self) -> list[FaultRule]:
        return [rule for rule, _, _ in self._rules]

    def matched(self, rule: FaultRule) -> int:
        """How many requests ``rule`` (the first such rule) has applied to."""
        return next((count[0] for r, _, count in self._rules if r == rule), 0)

    def replace(self, rules: Iterable[FaultRule]) -> None:
        self._rules = [(rule, rule.regex(), [0]) for rule in rules]
        self.active = bool(self._rules)

    def add(self, rule: FaultRule) -> None:
        self._rules.append((rule, rule.regex(), [0]))
        self.active = True

    def clear(self) -> None:
        self._rules = []
        self.active = False

    def match(self, path: str) -> FaultRule | None:
        elapsed = self._clock() - self.started
        for rule, regex, count in self._rules:
            if not regex.match(path):
                continue
            if rule.first_seconds is not None and elapsed >= rule.first_seconds:
                continue
            if rule.first is not None and count[0] >= rule.first:
                continue
            if rule.probability < 1.0 and self._rng() >= rule.probability:
                continue
            count[0] += 1
            return rule
        return None
