"""/metadata/scheduledevents: GET the events document this VM sees, POST approvals (``StartRequests``)."""

from __future__ import annotations

import json
from typing import Any

from ....azure import EVENTS_VERSIONS, INSTANCE_VERSIONS
from ....errors import EngineUnavailable
from .. import responses
from ..http import Request, Response
from ..ports import VmView
from .base import Endpoint, Outcome

__all__ = ["EventsEndpoint", "render_document"]


class EventsEndpoint(Endpoint):
    name = "scheduledevents"
    methods = frozenset({"GET", "POST"})
    introduced = EVENTS_VERSIONS[0]

    def __init__(self) -> None:
        super().__init__(None, EVENTS_VERSIONS)
        self._instance_only = frozenset(set(INSTANCE_VERSIONS) - set(EVENTS_VERSIONS))

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

        def answer(request: Request) -> Response:
            if request.method == "POST":
                return _approve(vm, request.body)
            return Response(200, render_document(vm.events_document(version, prefix)))

        return answer


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
