"""The shape every metadata endpoint has, which the service dispatches to.

An endpoint turns (VM, path below it, query, api-version) into a Response, or into a function of the request
when its answer depends on more than the URL (tokens, events). What only depends on the URL is cached by the
service, per VM, until the VM changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

from ....azure import INSTANCE_VERSIONS
from ...model.catalog import Versions
from .. import responses
from ..http import Request, Response
from ..ports import VmView

__all__ = ["Endpoint", "Outcome"]

Outcome = Union[Response, Callable[[Request], Any]]


class Endpoint:
    """One path family under /metadata. Subclasses set the class attributes and implement ``resolve``."""

    name: str = ""
    methods: frozenset[str] = frozenset({"GET"})
    introduced: str | None = None  # None: takes no api-version
    missing_header: Response = responses.MISSING_HEADER
    paths: frozenset[tuple[str, ...]] | None = None  # the only paths below it, when it has a fixed set

    def __init__(self, newest: str | None = None, family: tuple[str, ...] = INSTANCE_VERSIONS):
        self.versions = Versions(family, newest=newest, oldest=self.introduced) if self.introduced else None
        self.version_error = responses.api_version_error(self.versions.newest) if self.versions else None
        self.not_allowed = responses.method_not_allowed(", ".join(sorted(self.methods)))

    def needs_header(self, request: Request) -> bool:
        """Whether this request must carry ``Metadata: true`` (asked only of requests without it)."""
        return True

    def refuse_method(self, request: Request) -> Response:
        """The answer to a method the endpoint does not take."""
        return self.not_allowed

    def version_response(self, version: str | None) -> Response:
        """The answer to a missing or unaccepted api-version."""
        assert self.version_error is not None
        return self.version_error

    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        raise NotImplementedError
