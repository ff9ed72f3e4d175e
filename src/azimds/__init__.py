"""azimds: an Azure Instance Metadata Service emulator, and a client for the real one.

Public API: ``Client`` and its errors (``ImdsError``, ``NotFound``, ``ImdsUnavailable``) to read IMDS;
``Emulator`` to run an emulator in-process; ``ProfileError``. Imported lazily, so that ``import azimds``
stays cheap for the CLI.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs milliseconds on every CLI call
if TYPE_CHECKING:
    from typing import Any

    from .client import Client, ImdsError, ImdsUnavailable, NotFound
    from .emulator import Emulator
    from .profile import ProfileError

__version__ = "0.1.0"
__all__ = ["Client", "Emulator", "ImdsError", "ImdsUnavailable", "NotFound", "ProfileError", "__version__"]

_LAZY = {"Client": "client", "ImdsError": "client", "ImdsUnavailable": "client", "NotFound": "client",
         "Emulator": "emulator", "ProfileError": "profile"}


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'azimds' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
