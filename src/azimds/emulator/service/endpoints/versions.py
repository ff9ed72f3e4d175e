"""/metadata/versions: the api-versions this emulator accepts, unversioned itself."""

from __future__ import annotations

import json

from .. import catalog
from ..choices import UNKNOWN_PATH_BODY
from ..http import Response
from ..profile import Vm
from . import Endpoint, Outcome


class VersionsEndpoint(Endpoint):
    name = "versions"

    def __init__(self, newest: str | None = None):
        super().__init__(newest)
        accepted = catalog.Versions(catalog.INSTANCE_VERSIONS, newest=newest).accepted
        body = json.dumps({"apiVersions": list(accepted)}, separators=(",", ":")).encode()
        self.answer = Response(200, body)
        self.not_found = Response(404, UNKNOWN_PATH_BODY)

    def resolve(self, vm: Vm, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        return self.not_found if keys else self.answer
