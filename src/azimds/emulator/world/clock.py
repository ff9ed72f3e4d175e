"""One clock for everything time-based in the emulator: real, scaled (runs fast) or manual (moves when told).

Tokens, attested windows and scheduled events all read ``Clock.now()``, so a test that moves the clock moves
them all together. The clock's whole state is three numbers, which is what gets persisted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LATEST", "Clock", "ClockState"]

MODES = ("real", "scaled", "manual")
#: The emulated clock stays within what every answer can write (RFC 1123 dates, attested timeStamps 6 hours on,
#: token expiry a day on): it never passes 9999-12-31 00:00:00 UTC, a day before the last representable second.
LATEST = 253402214400.0


@dataclass(frozen=True)
class ClockState:
    """Emulated time ``anchor`` at real time ``real_anchor``, running at ``speed`` (0 while manual)."""

    mode: str
    speed: float
    anchor: float  # emulated epoch seconds at real_anchor
    real_anchor: float  # real epoch seconds


class Clock:
    """Emulated wall-clock time in epoch seconds. Thread-safe; cheap to read."""

    def __init__(self, mode: str = "real", speed: float = 1.0, start: float | None = None,
                 source: Callable[[], float] = time.time):
        if mode not in MODES:
            raise ValueError(f"clock mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "real":
            speed = 1.0
        check_speed(speed)
        self._source = source
        self._lock = threading.Lock()
        now = source()
        self._state = ClockState(mode, 0.0 if mode == "manual" else speed,
                                 now if start is None else float(start), now)

    @property
    def source(self) -> Callable[[], float]:
        """The real time it counts from."""
        return self._source

    @property
    def mode(self) -> str:
        return self._state.mode

    @property
    def speed(self) -> float:
        return self._state.speed

    def now(self) -> float:
        state = self._state
        if state.speed == 0.0:
            return state.anchor
        now = state.anchor + (self._source() - state.real_anchor) * state.speed
        return now if now < LATEST else LATEST

    def advance(self, seconds: float) -> float:
        """Move emulated time forward (never back); returns the new time."""
        if not seconds >= 0:
            raise ValueError(f"the clock only moves forward; cannot advance by {seconds}")
        with self._lock:
            now = self.now()
            if not now + seconds <= LATEST:
                raise ValueError(f"the clock stops at 9999-12-31 (epoch {LATEST:.0f}); cannot advance by {seconds}")
            self._state = ClockState(self._state.mode, self._state.speed, now + seconds, self._source())
            return now + seconds

    def set_time(self, when: float) -> float:
        """Jump to ``when`` (epoch seconds), which must not be in the emulated past."""
        current = self.now()
        if when < current:
            raise ValueError("the clock only moves forward")
        return self.advance(when - current)

    def set_speed(self, speed: float) -> None:
        """Run at ``speed`` emulated seconds per real second: 0 stops it (manual), 1 is real time."""
        check_speed(speed, allow_zero=True)
        with self._lock:
            now = self.now()
            mode = "manual" if speed == 0 else "real" if speed == 1 else "scaled"
            self._state = ClockState(mode, float(speed), now, self._source())

    def state(self) -> ClockState:
        """A snapshot that ``restore`` turns back into the same clock (for persistence)."""
        with self._lock:
            return ClockState(self._state.mode, self._state.speed, self.now(), self._source())

    def restore(self, state: ClockState) -> None:
        """Continue from a snapshot: emulated time resumes from where it was, at the saved speed.

        Time that passed while the emulator was down is counted at the saved speed, as if it had been
        running, except for a manual clock, which stays where it was.
        """
        with self._lock:
            self._state = state

    def restart(self, start: ClockState) -> None:
        """Back to how ``start`` (a ``state()`` taken when the emulator started) set the clock: a manual clock
        at the time it started at, a running one at the current time, at the speed it started with."""
        with self._lock:
            now = self._source()
            self._state = ClockState(start.mode, start.speed, start.anchor if start.mode == "manual" else now, now)

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "speed": self.speed, "now": self.now()}


def check_speed(speed: float, allow_zero: bool = False) -> None:
    if not (speed > 0 or (allow_zero and speed == 0)) or speed > 1_000_000:
        raise ValueError(f"clock speed must be {'0 or ' if allow_zero else ''}more than 0 and at most 1000000, "
                         f"not {speed}")
