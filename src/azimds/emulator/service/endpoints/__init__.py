"""The metadata endpoints, one module each, behind a common shape the service dispatches to.

An endpoint turns (VM, path below it, query, api-version) into a Response, or into a function of the
request when its answer depends on more than the URL (tokens, events). What only depends on the URL is
cached by the service, per VM, until the VM changes.
"""

from __future__ import annotations

from typing import Any, Callable, Union

from .. import catalog
from ..choices import METHOD_NOT_ALLOWED_BODY
from ..http import Request, Response
from ..profile import Vm

Outcome = Union[Response, Callable[[Request], Any]]

#: Missing Metadata header on the instance family (real, captured raw by curl; note the odd ": .").
MISSING_HEADER = Response(400, b'{ "error": "Bad request: . Required metadata header not specified" }')


def api_version_error(versions: catalog.Versions) -> Response:
    """The real 400 for a missing or unknown api-version, naming the three newest versions."""
    newest = ",".join(f'"{v}"' for v in versions.newest)
    return Response(400, (
        '{"error":"Bad request. api-version is invalid or was not specified in the request. '
        'For more information refer to aka.ms/azureimds","newest-versions":[' + newest + "]}").encode())


class Endpoint:
    """One path family under /metadata. Subclasses set the class attributes and implement ``resolve``."""

    name: str = ""
    methods: frozenset[str] = frozenset({"GET"})
    introduced: str | None = None  # None: takes no api-version
    missing_header: Response = MISSING_HEADER

    def __init__(self, newest: str | None = None, family: tuple[str, ...] = catalog.INSTANCE_VERSIONS):
        self.versions = catalog.Versions(family, newest=newest, oldest=self.introduced) if self.introduced else None
        self.version_error = api_version_error(self.versions) if self.versions else None
        allow = ", ".join(sorted(self.methods))
        self.not_allowed = Response(405, METHOD_NOT_ALLOWED_BODY, headers=(("Allow", allow),))

    def version_response(self, version: str | None) -> Response:
        """The answer to a missing or unaccepted api-version."""
        return self.version_error  # type: ignore[return-value]

    def resolve(self, vm: Vm, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        raise NotImplementedError
