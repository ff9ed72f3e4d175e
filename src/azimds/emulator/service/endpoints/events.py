"""/metadata/scheduledevents: GET the events document, POST approvals; its own api-version family."""

from __future__ import annotations

import json
from typing import Any, Callable

from .. import catalog, choices
from ..events import EventBook, EventError, render_document
from ..http import Request, Response
from ..profile import Vm
from . import Endpoint, Outcome

#: The real body for a version of another family (a real VM, api-version=2021-12-13).
WRONG_FAMILY = Response(404, b'{"error": "Not found"}')
MALFORMED = Response(400, choices.EVENTS_MALFORMED_BODY)
APPROVED = Response(200, b"")


class EventsEndpoint(Endpoint):
    name = "scheduledevents"
    methods = frozenset({"GET", "POST"})
    introduced = catalog.EVENTS_VERSIONS[0]

    def __init__(self, book_for: Callable[[Vm], EventBook], name_for: Callable[[Vm], str] | None = None):
        super().__init__(None, catalog.EVENTS_VERSIONS)
        self.book_for = book_for
        self.name_for = name_for or (lambda vm: vm.instance["compute"]["name"])
        instance_only = set(catalog.INSTANCE_VERSIONS) - set(catalog.EVENTS_VERSIONS)
        self._instance_only = frozenset(instance_only)

    def version_response(self, version: str | None) -> Response:
        """A version of the instance family gets the real 404; anything else the usual 400."""
        return WRONG_FAMILY if version in self._instance_only else self.version_error  # type: ignore[return-value]

    def resolve(self, vm: Vm, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        assert version is not None
        if keys:
            return Response(404, choices.UNKNOWN_PATH_BODY)
        if query.get("format", "json") != "json":
            return Response(400, choices.BAD_PARAMETER_BODY)
        prefix = "_" if version < "2017-08-01" else ""  # preview names had a leading underscore

        def answer(request: Request) -> Response:
            book = self.book_for(vm)
            if request.method == "POST":
                return self._approve(book, vm, request.body)
            return Response(200, render_document(book.document(version, prefix)))

        return answer

    def _approve(self, book: EventBook, vm: Vm, body: bytes) -> Response:
        ids = _start_requests(body)
        if ids is None:
            return MALFORMED
        current = {e.id for e in book.current()}
        unknown = [i for i in ids if i.upper() not in current]
        if unknown:
            return Response(400, choices.EVENTS_UNKNOWN_ID_BODY.replace(b"{id}", unknown[0].encode()))
        for event_id in ids:
            try:
                book.approve(event_id, by=self.name_for(vm))
            except EventError:  # it started or finished meanwhile: approving it again is still a success
                pass
        return APPROVED


def _start_requests(body: bytes) -> list[str] | None:
    """The EventIds of a ``{"StartRequests":[{"EventId":…}]}`` body, or None when it is malformed."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("StartRequests"), list) or not data["StartRequests"]:
        return None
    ids = []
    for item in data["StartRequests"]:
        if not isinstance(item, dict) or not isinstance(item.get("EventId"), str) or not item["EventId"]:
            return None
        ids.append(item["EventId"])
    return ids
