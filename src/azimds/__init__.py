"""azimds: an Azure Instance Metadata Service emulator, and a client for the real one.

Public API: ``Emulator`` (run an emulator in-process), ``ProfileError``. Imported lazily so that
``import azimds`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Emulator", "ProfileError", "__version__"]

if TYPE_CHECKING:
    from .emulator import Emulator
    from .profile import ProfileError


def __getattr__(name: str) -> Any:
    if name == "Emulator":
        from .emulator import Emulator

        return Emulator
    if name == "ProfileError":
        from .profile import ProfileError

        return ProfileError
    raise AttributeError(f"module 'azimds' has no attribute {name!r}")
