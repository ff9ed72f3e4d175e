"""``serve --watch``: notice that the profile file changed, and reload it as the control plane's reload does.

Standard library only, no inotify: every ``interval`` seconds the file's identity is read (device, inode, size,
modification time), so an editor that writes a new file and renames it over the old one is seen as well as one
that writes in place. A new identity whose bytes differ from the last ones seen is loaded (read, validated and
completed by ``load``, off the event loop); a file that is not a valid profile is reported in one line and the
running world is kept; a valid one is handed to ``apply`` on the loop — ``App`` gives the same load and the same
``World.reset`` that ``POST /v1/reload`` uses. Each state of the file is reported once, not at every look. (Two
writes of the same size within one tick of the file system's clock look alike: the second is seen at the next
change.)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import AzimdsError, ProfileError
from .model.profile import MAX_BYTES, Profile

__all__ = ["ProfileWatcher"]

#: What says that a file changed: (device, inode, size, modification time in ns); None while it cannot be read.
Identity = tuple[int, int, int, int] | None


class ProfileWatcher:
    """Watches ``path``: ``run()`` (a task on the emulator's loop) looks every ``interval`` seconds until
    cancelled. ``report`` gets one line per event: applied, refused (and why), unreadable."""

    def __init__(self, path: str | Path, *, load: Callable[[], Profile], apply: Callable[[Profile], None],
                 report: Callable[[str], None], interval: float = 0.5):
        self.path = Path(path)
        self.interval = interval
        self._load = load
        self._apply = apply
        self._report = report
        self._identity = _identity(self.path)  # the file as loaded at start
        self._digest = _digest(self.path)
        self.reloads = 0  # edits applied so far

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def check(self) -> None:
        """One look at the file: load and apply it if it changed since the last look."""
        identity = _identity(self.path)
        if identity == self._identity:
            return
        self._identity = identity
        if identity is None:
            self._report(f"{self.path} cannot be read; the running world is kept (--watch)")
            return
        loop = asyncio.get_running_loop()
        digest = await loop.run_in_executor(None, _digest, self.path)
        if digest is None or digest == self._digest:
            return  # touched, or saved unchanged: nothing to reload (a reload resets the world)
        self._digest = digest
        try:
            profile = await loop.run_in_executor(None, self._load)
            self._apply(profile)
        except ProfileError as exc:
            self._report(f"{self.path} changed but is not a valid profile; the running world is kept: "
                         + "; ".join(str(p) for p in exc.problems))
            return
        except AzimdsError as exc:
            self._report(f"{self.path} changed but cannot be applied; the running world is kept: "
                         + " ".join(str(exc).split()))
            return
        self.reloads += 1
        self._report(f"{self.path} changed: reloaded")


def _identity(path: Path) -> Identity:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _digest(path: Path) -> str | None:
    """The SHA-256 of the file's bytes (at most one more than a profile may have), None if it cannot be read."""
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read(MAX_BYTES + 1)).hexdigest()
    except OSError:
        return None
