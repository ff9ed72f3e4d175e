"""azimds: an Azure Instance Metadata Service emulator, and a client for the real one.

Public API: ``Client`` and its errors (``ImdsError``, ``NotFound``, ``ImdsUnavailable``) to read IMDS;
``verify_attested`` to check an attested document; ``Emulator`` to run an emulator in-process;
``ProfileError`` and ``AzimdsError``, the root of every error azimds raises. Imported lazily, so that
``import azimds`` stays cheap for the CLI.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs milliseconds on every CLI call
if TYPE_CHECKING:
    from typing import Any

    from .client import Client, verify_attested
    from .emulator.testing import Emulator
    from .errors import AzimdsError, ImdsError, ImdsUnavailable, NotFound, ProfileError

__version__ = "0.2.0"
__all__ = ["AzimdsError", "Client", "Emulator", "ImdsError", "ImdsUnavailable", "NotFound", "ProfileError",
           "__version__", "verify_attested"]

_LAZY = {"Client": "client", "verify_attested": "client", "ImdsError": "errors", "ImdsUnavailable": "errors",
         "NotFound": "errors", "ProfileError": "errors", "AzimdsError": "errors", "Emulator": "emulator.testing"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'azimds' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
