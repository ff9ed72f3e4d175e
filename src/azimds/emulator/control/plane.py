"""The control plane: JSON over HTTP on its own port, for tests and people to steer the emulated world.

Every request needs ``Authorization: Bearer <token>``; without it the answer is 401 and nothing changes (the
dashboard's static files, which hold no data, are the exception: see ``static``).
Routes are data (``ROUTES``): each names its method, path, handler, body declaration and answer, and the
OpenAPI document at ``/openapi.json`` is generated from them. Each change goes through ``world.World``, which
validates it and persists it before the answer is written; its typed errors get their HTTP status here.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

import pydantic

from ...errors import ChangeError, Conflict, EngineUnavailable, InvalidChange, NoSuchTarget, ProfileError
from ..model.events import EventSpec
from ..model.faults import FaultRule
from ..model.values import nesting_depth
from ..model.values import problems as validation_problems
from ..service.http import Request, Response
from ..world.world import World
from . import bodies, static
from .routes import ROUTES, Route

__all__ = ["ControlPlane"]

JSON = "application/json"
MAX_NESTING = 64  # JSON bodies nested deeper are refused before they are parsed
MAX_OFFSET = 100_000_000  # past any fleet's size


_STATUS = {InvalidChange: 400, NoSuchTarget: 404, Conflict: 409, EngineUnavailable: 503}


class _BadRequest(Exception):
    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.problems = problems or []


class ControlPlane:
    """The control plane's request handler (give it to an HttpServer)."""

    def __init__(self, world: World, token: str, reload: Callable[[], Any] | None = None):
        self.world = world
        self._token = ("Bearer " + token).encode()
        self._reload = reload
        self._routes = [(route, route.pattern(), getattr(self, route.handler)) for route in ROUTES]
        self._adapters: dict[Any, pydantic.TypeAdapter[Any]] = {}

    def __call__(self, request: Request) -> Response:
        page = static.asset(request)  # the dashboard's files hold no data: served without the token
        if page is not None:
            return page
        answer = self._answer(request)
        return Response(answer.status, answer.body, answer.content_type, answer.headers + static.API_HEADERS,
                        close=answer.close, drop=answer.drop)

    def _answer(self, request: Request) -> Response:
        auth = request.headers.get(b"authorization", b"")
        if not hmac.compare_digest(auth, self._token):
            return _error(401, "a bearer token is required (Authorization: Bearer <token>)",
                          headers=(("WWW-Authenticate", 'Bearer realm="azimds"'),))
        raw_path, _, raw_query = request.url.decode("latin-1").partition("?")
        path = unquote(raw_path).rstrip("/") or "/"
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        allowed = []
        for route, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            try:
                args: dict[str, Any] = {**match.groupdict(), **dict(route.fixed)}
                if route.body is not None:
                    args["body"] = self._parse(route, request.body)
                result: Response = handler(query, **args)
                return result
            except _BadRequest as exc:
                return _error(400, exc.message, exc.problems)
            except ChangeError as exc:
                status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
                return _error(status, exc.message, [str(p) for p in exc.problems])
        if allowed:
            return _error(405, f"use {', '.join(allowed)}", headers=(("Allow", ", ".join(allowed)),))
        return _error(404, f"no route {path}")

    def _parse(self, route: Route, raw: bytes) -> Any:
        """The body, validated against the route's declaration."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadRequest("the body is not UTF-8") from None
        if nesting_depth(text) > MAX_NESTING:
            raise _BadRequest(f"the body nests deeper than {MAX_NESTING} levels")
        try:
            value = json.loads(text or "null")
        except ValueError as exc:
            raise _BadRequest(f"the body is not JSON: {exc}") from None
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _BadRequest("the body holds text that is not valid Unicode (a lone surrogate)") from None
        if route.body is Any:
            return value
        adapter = self._adapters.get(route.body)
        if adapter is None:
            adapter = self._adapters[route.body] = pydantic.TypeAdapter(route.body)
        try:
            return adapter.validate_python(value, strict=True, context={"lax": False})
        except pydantic.ValidationError as exc:
            problems = [f"{where}: {what}" if where else what for where, what in validation_problems(exc)]
            raise _BadRequest("the body is invalid; nothing was changed", problems) from None

    # -- documents ------------------------------------------------------------------------------------
    def get_openapi(self, query: dict[str, str]) -> Response:
        from .openapi import openapi

        return _json(200, openapi(ROUTES))

    def get_metrics(self, query: dict[str, str]) -> Response:
        from .metrics import prometheus

        return Response(200, prometheus(self.world).encode(), "text/plain; version=0.0.4; charset=utf-8")

    # -- metadata --------------------------------------------------------------------------------------
    def get_node(self, query: dict[str, str], path: str | None = None) -> Response:
        vm = self.world.vm(query.get("vm"))
        return _json(200, self.world.read_node(vm, _split(path)))

    def put_node(self, query: dict[str, str], path: str, body: Any) -> Response:
        vm = self.world.vm(query.get("vm"))
        return _json(200, self.world.set_node(vm, _split(path), body))

    def patch_node(self, query: dict[str, str], body: Any, path: str | None = None) -> Response:
        vm = self.world.vm(query.get("vm"))
        return _json(200, self.world.patch_node(vm, _split(path), body))

    def delete_node(self, query: dict[str, str], path: str) -> Response:
        self.world.delete_node(self.world.vm(query.get("vm")), _split(path))
        return Response(204)

    def put_tags(self, query: dict[str, str], body: bodies.Tags) -> Response:
        return _json(200, {"tags": self.world.set_tags(self.world.vm(query.get("vm")), body.root)})

    def reprovision(self, query: dict[str, str], body: dict[str, Any] | None) -> Response:
        return _json(200, self.world.reprovision(self.world.vm(query.get("vm")), body))

    def reboot(self, query: dict[str, str]) -> Response:
        self.world.reboot(self.world.vm(query.get("vm")))
        return Response(204)

    # -- events ----------------------------------------------------------------------------------------
    def get_events(self, query: dict[str, str]) -> Response:
        return _json(200, _events(self.world.vm(query.get("vm")).events))

    def post_event(self, query: dict[str, str], body: EventSpec) -> Response:
        event = self.world.schedule(self.world.vm(query.get("vm")), body)
        return _json(201, event.to_mapping())

    def event_action(self, query: dict[str, str], eventId: str, action: str) -> Response:
        book = self.world.event_action(self.world.vm(query.get("vm")), eventId, action, by=query.get("by"))
        return _json(200, _events(book))

    # -- the fleet -------------------------------------------------------------------------------------
    def get_fleet(self, query: dict[str, str]) -> Response:
        offset = _whole(query, "offset", 0, MAX_OFFSET)
        limit = _whole(query, "limit", 100, 1000, least=1)
        return _json(200, self.world.fleet_view(offset, limit))

    def walk(self, query: dict[str, str], body: bodies.Walk) -> Response:
        return _json(200, _events(self.world.walk(body.set, body.type, body.gap, body.duration)))

    # -- clock, faults, journal ------------------------------------------------------------------------
    def get_clock(self, query: dict[str, str]) -> Response:
        return _json(200, self.world.clock.to_dict())

    def post_clock(self, query: dict[str, str], body: bodies.ClockChange) -> Response:
        if body.time is not None and body.time < self.world.clock.now():  # validate all before changing any
            raise InvalidChange("the clock only moves forward")
        if body.speed is not None and body.speed != 0 and not 0 < body.speed <= 1_000_000:
            raise InvalidChange(f"clock speed must be 0 or more than 0 and at most 1000000, not {body.speed}")
        if body.time is not None:
            self.world.set_time(body.time)
        if body.advance is not None:
            self.world.advance_clock(body.advance)
        if body.speed is not None:
            self.world.set_clock_speed(body.speed)
        return _json(200, self.world.clock.to_dict())

    def get_faults(self, query: dict[str, str]) -> Response:
        return _json(200, {"faults": [rule.to_mapping() for rule in self.world.faults.rules]})

    def post_fault(self, query: dict[str, str], body: FaultRule | bodies.FaultSpec) -> Response:
        if isinstance(body, bodies.FaultSpec):
            try:
                body = FaultRule.from_spec(body.spec)
            except ProfileError as exc:
                raise _BadRequest("; ".join(str(p) for p in exc.problems)) from None
        self.world.add_fault(body)
        return _json(201, body.to_mapping())

    def delete_faults(self, query: dict[str, str]) -> Response:
        self.world.clear_faults()
        return Response(204)

    def get_journal(self, query: dict[str, str]) -> Response:
        try:
            limit = int(query.get("limit", "1000"))
            since = float(query.get("since", "0"))
            status = int(query["status"]) if "status" in query else None
        except ValueError:
            raise _BadRequest("limit and status are integers, since a number") from None
        if limit < 0:
            raise _BadRequest("limit must be 0 or more")
        pattern = query.get("path")
        peer = query.get("peer")
        selected = [e for e in self.world.journal_entries(since) if (status is None or e.status == status)
                    and (peer is None or e.peer == peer)
                    and (pattern is None or fnmatch.fnmatchcase(e.url.partition("?")[0], pattern))]
        selected = selected[-limit:] if limit else []
        return _json(200, {"entries": [e._asdict() for e in selected]})

    def post_reset(self, query: dict[str, str]) -> Response:
        self.world.reset()
        return _json(200, {"reset": True})

    def post_reload(self, query: dict[str, str]) -> Response:
        if self._reload is None:
            raise Conflict("this emulator was not started from a profile file")
        try:
            profile = self._reload()
        except ProfileError as exc:
            raise InvalidChange("the change is invalid; nothing was changed", exc.problems) from None
        self.world.reset(profile)
        return _json(200, {"reloaded": True})


def _whole(query: dict[str, str], name: str, default: int, most: int, least: int = 0) -> int:
    """A whole-number query parameter, from ``least`` to ``most``."""
    text = query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not least <= int(text) <= most:
        raise _BadRequest(f"{name} is a whole number from {least} to {most}, not {text[:40]!r}")
    return int(text)


def _split(path: str | None) -> list[str]:
    return [part for part in (path or "").split("/") if part]


def _events(book: Any) -> dict[str, Any]:
    return {"incarnation": book.incarnation, "events": [e.to_mapping() for e in book.current()]}


def _json(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value, separators=(",", ":")).encode(), JSON)


def _error(status: int, message: str, problems: list[str] | None = None,
           headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = problems
    return Response(status, json.dumps(body).encode(), JSON, headers=headers)
