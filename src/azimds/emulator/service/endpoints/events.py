"""/metadata/scheduledevents: GET the events document this VM sees, POST approvals (``StartRequests``).

A GET answers with an ``ETag`` naming the document's incarnation, and ``If-None-Match`` with that tag answers 304
without a body: Microsoft's own sample client (Azure/vm-scheduled-events) sends it and handles the 304, and its
log against a real VM shows no answer between document changes (``choices``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ....azure import EVENTS_VERSIONS, INSTANCE_VERSIONS
from ....errors import EngineUnavailable
from .. import choices, responses
from ..http import Request, Response
from ..ports import VmView
from .base import Endpoint, Outcome

__all__ = ["EventsEndpoint", "render_document"]

PREVIEW = EVENTS_VERSIONS[0].encode()  # 2017-03-01


class EventsEndpoint(Endpoint):
    name = "scheduledevents"
    methods = frozenset({"GET", "POST"})
    introduced = EVENTS_VERSIONS[0]

    def __init__(self, first_call_delay: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(None, EVENTS_VERSIONS)
        self._instance_only = frozenset(set(INSTANCE_VERSIONS) - set(EVENTS_VERSIONS))
        self.first_call_delay = first_call_delay
        self.clock = clock
        self._last_call: dict[str, float] = {}  # VM name -> its last request (emulated time), with a delay set

    def needs_header(self, request: Request) -> bool:
        """Not at 2017-03-01: the docs' version table lists "Metadata header requirement enforced for all
        requests" under 2017-08-01, so the preview answered without it."""
        query = request.url.partition(b"?")[2]
        return not any(pair == b"api-version=" + PREVIEW for pair in query.split(b"&"))

    def version_response(self, version: str | None) -> Response:
        """A version of the instance family gets the real 404; anything else the usual 400."""
        return responses.EVENTS_WRONG_FAMILY if version in self._instance_only else super().version_response(version)

    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        assert version is not None
        if keys:
            return responses.UNKNOWN_PATH
        if query.get("format", "json") != "json":
            return responses.BAD_PARAMETER
        prefix = "_" if version < "2017-08-01" else ""  # preview names had a leading underscore

        def answer(request: Request) -> Response | Awaitable[Response]:
            if self.first_call_delay and self._enabling(vm.name):
                return self._late(respond, request)
            return respond(request)

        def respond(request: Request) -> Response:
            if request.method == "POST":
                return _approve(vm, request.body)
            doc = vm.events_document(version, prefix)
            tag = choices.events_etag(doc["DocumentIncarnation"])
            headers = (("ETag", tag),)
            seen = request.headers.get(b"if-none-match")
            if seen is not None and choices.etag_matches(seen.decode("latin-1"), tag):
                return Response(304, headers=headers)
            return Response(200, render_document(doc), headers=headers)

        return answer


    def _enabling(self, name: str) -> bool:
        """Whether this request enables the service for the VM: its first, or its first after 24 h without one
        (SE-doc: "Scheduled Events is disabled for your service if it doesn't make a request … for 24 hours")."""
        now = self.clock()
        last = self._last_call.get(name)
        self._last_call[name] = now
        return last is None or now - last >= choices.EVENTS_IDLE_DISABLES

    async def _late(self, respond: Callable[[Request], Response], request: Request) -> Response:
        await asyncio.sleep(self.first_call_delay)
        return respond(request)


def _approve(vm: VmView, body: bytes) -> Response:
    ids = _start_requests(body)
    if ids is None:
        return responses.EVENTS_MALFORMED
    try:
        unknown = vm.approve_events(ids)
    except EngineUnavailable:  # the world is shared and its engine gone: nothing approved, try again
        return responses.EVENTS_UNAVAILABLE
    if unknown is not None:
        return responses.events_unknown_id(unknown)
    return responses.APPROVED


def _start_requests(body: bytes) -> list[str] | None:
    """The EventIds of a ``{"StartRequests":[{"EventId":…}]}`` body, or None when it is malformed."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("StartRequests"), list) or not data["StartRequests"]:
        return None
    ids = []
    for item in data["StartRequests"]:
        if not isinstance(item, dict) or not isinstance(item.get("EventId"), str) or not item["EventId"]:
            return None
        if not item["EventId"].isascii():  # EventIds are GUIDs; this also keeps lone surrogates out of answers
            return None
        ids.append(item["EventId"])
    return ids


def render_document(doc: dict[str, Any]) -> bytes:
    """Compact JSON in the real service's fixed key order (not sorted, unlike the instance document)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
