"""The state directory: used by one emulator at a time (an OS lock that dies with its holder), checked before
use, and set aside (never deleted) when asked to start afresh.

It holds ``state.sqlite`` (the world's changes), ``pki/`` (the emulator's CA and token keys),
``control-token`` and ``lock``. The lock is ``flock`` on ``lock``, which also names the holder's PID, so a
second ``serve`` on the same directory is refused with one line saying who holds it, and ``kill -9`` never
leaves a stale lock behind.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
from pathlib import Path

from ..errors import StateError

__all__ = ["STATE_FILES", "StateDir"]

#: What belongs to the emulator in a state directory (what ``set_aside`` moves).
STATE_FILES = ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm", "pki", "control-token")


class StateDir:
    """A state directory, locked by this process while it is ``open``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def database(self) -> Path:
        return self.path / "state.sqlite"

    def open(self) -> StateDir:
        """Make the directory if need be and take its lock. Raises StateError saying what is wrong."""
        self._make()
        lock = self.path / "lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(str(self.path), f"cannot use it as a state directory: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateError(str(self.path), f"cannot lock it: {exc.strerror or exc}") from None
            who = f"process {holder}" if holder else "another process"
            raise StateError(str(self.path), f"in use by {who} (another azimds serve); stop it, or give this one "
                                             "another --state-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def fileno(self) -> int | None:
        """The locked descriptor while open (a process that inherits it keeps the directory locked), else None."""
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def holder(self) -> int | None:
        """The PID that holds the lock, or None when nobody does."""
        lock = self.path / "lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(fd) or -1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def set_aside(self, names: tuple[str, ...] = STATE_FILES) -> Path | None:
        """Move the emulator's files (``names``) into ``aside-YYYYMMDD-HHMMSS/`` beside them; the new name, or None
        when there was nothing to move. Refuses (StateError) while another process holds the directory."""
        if not self.path.is_dir():
            if self.path.exists():
                raise StateError(str(self.path), "not a directory")
            return None
        if self._fd is None:
            holder = self.holder()
            if holder is not None:
                who = f"process {holder}" if holder > 0 else "another process"
                raise StateError(str(self.path), f"in use by {who}; stop it before setting its state aside")
        present = [name for name in names if (self.path / name).exists()]
        if not present:
            return None
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = self.path / f"aside-{stamp}"
        suffix = 1
        while aside.exists():
            suffix += 1
            aside = self.path / f"aside-{stamp}-{suffix}"
        try:
            aside.mkdir(mode=0o700)
            for name in present:
                os.replace(self.path / name, aside / name)
        except OSError as exc:
            raise StateError(str(self.path), f"cannot set its state aside: {exc.strerror or exc}") from None
        return aside

    def _make(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise StateError(str(self.path), "not a directory; give --state-dir a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(str(self.path), f"cannot make it a state directory: {exc.strerror or exc}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise StateError(str(self.path), "cannot use it as a state directory: not writable")


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
