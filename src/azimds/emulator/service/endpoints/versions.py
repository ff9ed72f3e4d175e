"""/metadata/versions: the api-versions this emulator accepts, unversioned itself."""

from __future__ import annotations

import json

from ....azure import ENDPOINT_INTRODUCED, INSTANCE_VERSIONS
from ...model.catalog import Versions
from .. import responses
from ..http import Response
from ..ports import VmView
from .base import Endpoint, Outcome

__all__ = ["VersionsEndpoint"]


class VersionsEndpoint(Endpoint):
    name = "versions"

    def __init__(self, newest: str | None = None):
        super().__init__(newest)
        # The versions /metadata/instance accepts: what it lists and what it answers agree (choices).
        accepted = Versions(INSTANCE_VERSIONS, newest=newest, oldest=ENDPOINT_INTRODUCED["instance"]).accepted
        self.answer = Response(200, json.dumps({"apiVersions": list(accepted)}, separators=(",", ":")).encode())

    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        return responses.UNKNOWN_PATH if keys else self.answer
