"""/metadata itself, the root endpoint: it names no document, but checks the header and api-version like the
rest, so clients that probe the root learn the newest versions from its 400 (as on a real VM, 2025)."""

from __future__ import annotations

from ....azure import ENDPOINT_INTRODUCED
from .. import responses
from ..ports import VmView
from .base import Endpoint, Outcome

__all__ = ["RootEndpoint"]


class RootEndpoint(Endpoint):
    name = ""
    introduced = ENDPOINT_INTRODUCED["instance"]

    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        return responses.ROOT_WITH_VERSION
