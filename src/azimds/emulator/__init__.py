"""The emulator side: what a VM is (``model``), the metadata port (``service``), what changes while it runs
(``world``), the control plane (``control``), one configuration (``config``), the wiring (``app``) and the
in-process ``Emulator`` for test suites (``testing``). Needs the ``emulator`` extra; imported lazily."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Config", "Emulator"]


def __getattr__(name: str) -> Any:
    if name == "Emulator":
        from .testing import Emulator

        return Emulator
    if name == "Config":
        from .config import Config

        return Config
    raise AttributeError(f"module 'azimds.emulator' has no attribute {name!r}")
