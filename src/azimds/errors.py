"""One tree of exceptions for the whole project: what callers catch, and what the CLI turns into one line.

Everything azimds raises on purpose is an ``AzimdsError``; anything else that escapes is a bug. Errors carry
what went wrong, never an HTTP status: the metadata port and the control plane choose the status at their
edge (``InvalidChange`` is a 400 there, ``NoSuchTarget`` a 404, ``Conflict`` a 409, ``EngineUnavailable`` a
503). Standard library only: the client imports this module.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds, and the CLI imports this module on every call
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "AttestationError", "AzimdsError", "ChainError", "ChangeError", "Conflict", "EngineUnavailable",
    "ExpiredError", "FormatError", "ImdsError", "ImdsUnavailable", "InvalidChange", "ListenError",
    "NameMismatchError", "NoFreeInstance",
    "NoSuchTarget", "NonceError", "NotFound", "Problem", "ProfileError", "SignatureError", "StateError",
    "UsageError",
]


class AzimdsError(Exception):
    """Every error azimds raises on purpose."""


class UsageError(AzimdsError, ValueError):
    """A bad argument or option: an endpoint that is not a URL, a deadline of 0, an unknown flag value."""


# -- reading IMDS ------------------------------------------------------------------------------------------

class ImdsError(AzimdsError):
    """IMDS refused or failed a request. ``status`` is the HTTP status, None when nothing answered."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class NotFound(ImdsError):
    """The path does not exist (404 after the 404 retries), or the field is not served at this api-version."""


class ImdsUnavailable(ImdsError):
    """No usable answer before the deadline: no connection, timeouts, or 410/429/5xx until the end."""


# -- attested documents ------------------------------------------------------------------------------------

class AttestationError(AzimdsError):
    """An attested document that must not be trusted; ``reason`` says which check failed."""

    reason = "attestation"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.reason}: {message}")
        self.message = message


class FormatError(AttestationError):
    reason = "format"


class SignatureError(AttestationError):
    reason = "signature"


class ChainError(AttestationError):
    reason = "chain"


class NameMismatchError(AttestationError):
    reason = "name"


class ExpiredError(AttestationError):
    reason = "expired"


class NonceError(AttestationError):
    reason = "nonce"


# -- the emulator ------------------------------------------------------------------------------------------

class Problem(tuple[str, str]):
    """One problem: ``where`` (a place such as ``compute.tags`` or ``--rate-limit``; may be empty) and ``what``."""

    __slots__ = ()

    def __new__(cls, where: str, what: str) -> Problem:
        return super().__new__(cls, (where, what))

    @property
    def where(self) -> str:
        return self[0]

    @property
    def what(self) -> str:
        return self[1]

    def __str__(self) -> str:
        return f"{self.where}: {self.what}" if self.where else self.what


class ProfileError(AzimdsError, ValueError):
    """A profile, scenario file or option that cannot be used: names the source and every problem in it."""

    def __init__(self, source: str, problems: Iterable[tuple[str, str]]) -> None:
        self.source = source
        self.problems = [Problem(where, what) for where, what in problems]
        super().__init__("\n".join(f"{source}: {problem}" if source else str(problem) for problem in self.problems))


class StateError(AzimdsError):
    """The state directory or its engine cannot be used as it is (locked, corrupt, unreadable)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class ListenError(AzimdsError):
    """A port the emulator cannot listen on (in use, not allowed, no such address)."""


class ChangeError(AzimdsError):
    """A change to the emulated world that was refused; nothing was changed."""

    def __init__(self, message: str, problems: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems = [Problem(where, what) for where, what in problems]


class InvalidChange(ChangeError):
    """The change itself is wrong: a bad value, a missing field, a time in the past."""


class NoSuchTarget(ChangeError):
    """The change names a node, event, VM or scale set that does not exist."""


class Conflict(ChangeError):
    """The change does not fit the world as it is now: an event that started already, an id that is taken."""


class NoFreeInstance(Conflict):
    """A source address would claim a dynamic scale set's instance, and every one is claimed by another."""


class EngineUnavailable(ChangeError):
    """The state engine cannot be reached: the change was not made, and may be tried again."""
