"""The control plane: JSON over HTTP on its own port, for tests and people to steer the emulated world.

Every request needs ``Authorization: Bearer <token>``; without it the answer is 401 and nothing changes.
Routes are described by the OpenAPI document served at ``/openapi.json``; each change goes through
``state.Emulation``, which validates it and persists it before the answer is written.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
import re
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote

from .clock import check_speed
from .events import EventError
from .faults import parse_fault
from .http import Request, Response
from .profile import ProfileError
from .state import Emulation, NodeError

__all__ = ["ControlPlane", "openapi"]

JSON = "application/json"
Route = tuple[str, re.Pattern[str], Callable[..., Response]]


class ControlPlane:
    """The control plane's request handler (give it to an HttpServer)."""

    def __init__(self, emulation: Emulation, token: str, reload: Callable[[], Any] | None = None,
                 fleet: Any = None):
        self.emulation = emulation
        self.fleet = fleet  # fleet.Fleet, when the profile describes many VMs: ?vm=NAME picks one
        self._token = ("Bearer " + token).encode()
        self._reload = reload
        self.routes: list[Route] = [
            ("GET", re.compile(r"/openapi\.json"), self.get_openapi),
            ("GET", re.compile(r"/metrics"), self.get_metrics),
            ("GET", re.compile(r"/v1/metadata(?:/(?P<path>.*))?"), self.get_node),
            ("PUT", re.compile(r"/v1/metadata/(?P<path>.+)"), self.put_node),
            ("PATCH", re.compile(r"/v1/metadata(?:/(?P<path>.*))?"), self.patch_node),
            ("DELETE", re.compile(r"/v1/metadata/(?P<path>.+)"), self.delete_node),
            ("PUT", re.compile(r"/v1/tags"), self.put_tags),
            ("GET", re.compile(r"/v1/events"), self.get_events),
            ("POST", re.compile(r"/v1/events"), self.post_event),
            ("POST", re.compile(r"/v1/events/(?P<event_id>[^/]+)/(?P<action>approve|start|complete|cancel)"),
             self.event_action),
            ("POST", re.compile(r"/v1/fleet/walk"), self.walk_update_domains),
            ("GET", re.compile(r"/v1/clock"), self.get_clock),
            ("POST", re.compile(r"/v1/clock"), self.post_clock),
            ("GET", re.compile(r"/v1/faults"), self.get_faults),
            ("POST", re.compile(r"/v1/faults"), self.post_fault),
            ("DELETE", re.compile(r"/v1/faults"), self.delete_faults),
            ("GET", re.compile(r"/v1/journal"), self.get_journal),
            ("POST", re.compile(r"/v1/reset"), self.post_reset),
            ("POST", re.compile(r"/v1/reload"), self.post_reload),
        ]

    def __call__(self, request: Request) -> Response:
        auth = request.headers.get(b"authorization", b"")
        if not hmac.compare_digest(auth, self._token):
            return _error(401, "a bearer token is required (Authorization: Bearer <token>)",
                          headers=(("WWW-Authenticate", 'Bearer realm="azimds"'),))
        raw_path, _, raw_query = request.url.decode("latin-1").partition("?")
        path = unquote(raw_path).rstrip("/") or "/"
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        allowed = []
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            try:
                return handler(request, query, **match.groupdict())
            except ProfileError as exc:
                return _error(400, "the change is invalid; nothing was changed",
                              problems=[f"{where}: {what}" if where else what for where, what in exc.problems])
            except NodeError as exc:
                return _error(404, f"no such node: {exc}")
            except EventError as exc:
                return _error(exc.status, str(exc))
            except _BadRequest as exc:
                return _error(400, str(exc))
        if allowed:
            return _error(405, f"use {', '.join(allowed)}", headers=(("Allow", ", ".join(allowed)),))
        return _error(404, f"no route {path}")

    # -- documents ------------------------------------------------------------------------------------
    def get_openapi(self, request: Request, query: dict[str, str]) -> Response:
        return _json(200, openapi())

    def get_metrics(self, request: Request, query: dict[str, str]) -> Response:
        metrics = self.emulation.metrics
        lines = ["# HELP azimds_requests_total Requests answered on the metadata port.",
                 "# TYPE azimds_requests_total counter"]
        for (endpoint, status), count in sorted(metrics.requests.items()):
            lines.append(f'azimds_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}')
        lines += ["# HELP azimds_request_seconds Time to answer a metadata request.",
                  "# TYPE azimds_request_seconds histogram"]
        cumulative = 0
        for bound, count in zip(metrics.BUCKETS, metrics.latency_counts):
            cumulative += count
            lines.append(f'azimds_request_seconds_bucket{{le="{bound}"}} {cumulative}')
        total = cumulative + metrics.latency_counts[-1]
        lines += [f'azimds_request_seconds_bucket{{le="+Inf"}} {total}', f"azimds_request_seconds_sum {metrics.latency_sum}",
                  f"azimds_request_seconds_count {total}",
                  "# HELP azimds_events Scheduled events by state.", "# TYPE azimds_events gauge"]
        events = self.emulation.events.current()
        for state in ("Scheduled", "Started"):
            lines.append(f'azimds_events{{state="{state}"}} {sum(1 for e in events if e.status == state)}')
        lines += ["# HELP azimds_events_incarnation DocumentIncarnation of the events document.",
                  "# TYPE azimds_events_incarnation gauge", f"azimds_events_incarnation {self.emulation.events.incarnation}"]
        return Response(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _target(self, query: dict[str, str]) -> Emulation:
        """The VM a request is about: ``?vm=NAME`` in a fleet, else the profile's own VM."""
        name = query.get("vm")
        if name is None:
            return self.emulation
        found = self.fleet.by_name(name) if self.fleet is not None else (
            self.emulation if name == self.emulation.vm.instance["compute"]["name"] else None)
        if found is None:
            raise NodeError(f"no VM named {name!r}")
        return found

    # -- metadata --------------------------------------------------------------------------------------
    def get_node(self, request: Request, query: dict[str, str], path: str | None = None) -> Response:
        return _json(200, self._target(query).read_node(_split(path)))

    def put_node(self, request: Request, query: dict[str, str], path: str) -> Response:
        return _json(200, self._target(query).set_node(_split(path), _body(request)))

    def patch_node(self, request: Request, query: dict[str, str], path: str | None = None) -> Response:
        patch = _body(request)
        if not _split(path) and not isinstance(patch, dict):
            raise _BadRequest("a patch of the whole document is a JSON object")
        return _json(200, self._target(query).patch_node(_split(path), patch))

    def delete_node(self, request: Request, query: dict[str, str], path: str) -> Response:
        self._target(query).delete_node(_split(path))
        return Response(204)

    def put_tags(self, request: Request, query: dict[str, str]) -> Response:
        tags = _body(request)
        if not isinstance(tags, dict) or not all(isinstance(v, (str, int, float, bool)) for v in tags.values()):
            raise _BadRequest("tags are a JSON object of names to string values")
        return _json(200, {"tags": self._target(query).set_tags(tags)})

    # -- events ----------------------------------------------------------------------------------------
    def get_events(self, request: Request, query: dict[str, str]) -> Response:
        book = self._target(query).events
        return _json(200, {"incarnation": book.incarnation, "events": [_event(e) for e in book.current()]})

    def post_event(self, request: Request, query: dict[str, str]) -> Response:
        body = _body(request)
        if not isinstance(body, dict):
            raise _BadRequest("an event is a JSON object")
        names = {"type": "type", "resources": "resources", "source": "source", "notBefore": "not_before",
                 "notice": "notice", "durationInSeconds": "duration", "active": "active",
                 "description": "description", "eventId": "event_id", "started": "started",
                 "approval": "approval"}
        unknown = set(body) - set(names)
        if unknown:
            raise _BadRequest(f"unknown field {sorted(unknown)[0]!r}; known: {', '.join(names)}")
        kwargs = {names[k]: v for k, v in body.items()}
        target = self._target(query)
        kwargs.setdefault("resources", [target.vm.instance["compute"]["name"]])
        _check_types(kwargs)
        if "type" not in kwargs:
            raise _BadRequest("an event needs a type")
        event = target.events.schedule(kwargs.pop("type"), kwargs.pop("resources"), **kwargs)
        return _json(201, _event(event))

    def walk_update_domains(self, request: Request, query: dict[str, str]) -> Response:
        """A platform update walking a scale set's update domains: one event per domain, ``gap`` apart."""
        body = _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("set"), str) or set(body) - {"set", "type", "gap", "durationInSeconds"}:
            raise _BadRequest("give set (a scale set name), and optionally type, gap (seconds) and durationInSeconds")
        if self.fleet is None:
            raise NodeError("this emulator has no fleet")
        try:
            groups = self.fleet.update_domain_groups(body["set"])
        except KeyError:
            raise NodeError(f"no scale set named {body['set']!r}") from None
        gap, kind = body.get("gap", 1800), body.get("type", "Freeze")
        if isinstance(gap, bool) or not isinstance(gap, (int, float)) or gap < 0 or not isinstance(kind, str):
            raise _BadRequest("gap is a number of seconds, type an event type")
        book = self.fleet.book_of_set(body["set"])
        from .events import MIN_NOTICE, TYPES

        if kind not in TYPES:
            raise _BadRequest(f"type must be one of {', '.join(TYPES)}")
        now = self.emulation.clock.now()
        for index, names in enumerate(groups):
            not_before = now + MIN_NOTICE[kind] + index * gap
            item = {"publish": max(now, not_before - MIN_NOTICE[kind]), "type": kind, "resources": names,
                    "not_before": not_before}
            if "durationInSeconds" in body:
                item["duration"] = body["durationInSeconds"]
            book.plan(item)
        return _json(200, {"incarnation": book.incarnation, "events": [_event(e) for e in book.current()]})

    def event_action(self, request: Request, query: dict[str, str], event_id: str, action: str) -> Response:
        book = self._target(query).events
        if action == "approve":
            book.approve(event_id, by=query.get("by"))
        else:
            getattr(book, action)(event_id)
        return _json(200, {"incarnation": book.incarnation, "events": [_event(e) for e in book.current()]})

    # -- clock, faults, journal ------------------------------------------------------------------------
    def get_clock(self, request: Request, query: dict[str, str]) -> Response:
        return _json(200, self.emulation.clock.to_dict())

    def post_clock(self, request: Request, query: dict[str, str]) -> Response:
        body = _body(request)
        if not isinstance(body, dict) or not body or set(body) - {"advance", "speed", "time"}:
            raise _BadRequest("give one or more of advance (seconds), speed (0 = manual) and time (epoch seconds)")
        for key, value in body.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _BadRequest(f"{key} must be a number")
        try:  # validate everything before changing anything
            if "speed" in body:
                check_speed(body["speed"], allow_zero=True)
            if "time" in body and body["time"] < self.emulation.clock.now():
                raise ValueError("the clock only moves forward")
            if "advance" in body and not body["advance"] >= 0:
                raise ValueError("the clock only moves forward")
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None
        if "time" in body:
            self.emulation.advance_clock(body["time"] - self.emulation.clock.now())
        if "advance" in body:
            self.emulation.advance_clock(body["advance"])
        if "speed" in body:
            self.emulation.set_clock_speed(body["speed"])
        return _json(200, self.emulation.clock.to_dict())

    def get_faults(self, request: Request, query: dict[str, str]) -> Response:
        return _json(200, {"faults": [f.to_dict() for f in self.emulation.faults.faults]})

    def post_fault(self, request: Request, query: dict[str, str]) -> Response:
        body = _body(request)
        try:
            if isinstance(body, dict) and set(body) == {"spec"} and isinstance(body["spec"], str):
                fault = parse_fault(body["spec"])
            elif isinstance(body, dict):
                from .faults import from_profile

                _check_fault_types(body)
                [fault] = from_profile([body])
            else:
                raise ValueError("a fault is a JSON object")
        except (ValueError, TypeError) as exc:
            raise _BadRequest(str(exc)) from None
        self.emulation.add_fault(fault)
        return _json(201, fault.to_dict())

    def delete_faults(self, request: Request, query: dict[str, str]) -> Response:
        self.emulation.clear_faults()
        return Response(204)

    def get_journal(self, request: Request, query: dict[str, str]) -> Response:
        entries = list(self.emulation.journal)
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
        selected = [e for e in entries if e.time >= since and (status is None or e.status == status)
                    and (peer is None or e.peer == peer)
                    and (pattern is None or fnmatch.fnmatchcase(e.url.partition("?")[0], pattern))]
        selected = selected[-limit:] if limit else []
        return _json(200, {"entries": [e._asdict() for e in selected]})

    def post_reset(self, request: Request, query: dict[str, str]) -> Response:
        self.emulation.reset()
        return _json(200, {"reset": True})

    def post_reload(self, request: Request, query: dict[str, str]) -> Response:
        if self._reload is None:
            return _error(409, "this emulator was not started from a profile file")
        self.emulation.reset(self._reload())
        return _json(200, {"reloaded": True})


class _BadRequest(ValueError):
    pass


def _split(path: str | None) -> list[str]:
    return [part for part in (path or "").split("/") if part]


def _body(request: Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BadRequest(f"the body is not JSON: {exc}") from None


_EVENT_TYPES: dict[str, tuple[type, ...]] = {
    "type": (str,), "resources": (list,), "source": (str,), "not_before": (int, float), "notice": (int, float),
    "duration": (int,), "active": (int, float), "description": (str,), "event_id": (str,), "started": (bool,),
    "approval": (str,),
}


def _check_types(kwargs: dict[str, Any]) -> None:
    for key, value in kwargs.items():
        ok = isinstance(value, _EVENT_TYPES[key]) and (key == "started" or not isinstance(value, bool))
        if not ok:
            raise _BadRequest(f"{key} has the wrong type")
    if not all(isinstance(r, str) for r in kwargs.get("resources", [])):
        raise _BadRequest("resources are VM names (strings)")


def _check_fault_types(body: dict[str, Any]) -> None:
    kinds = {"path": str, "status": int, "latency": (int, float), "drop": bool, "retryAfter": int,
             "probability": (int, float), "first": int, "firstSeconds": (int, float)}
    for key, value in body.items():
        if key not in kinds:
            raise ValueError(f"unknown fault field {key!r}")
        if not isinstance(value, kinds[key]) or (isinstance(value, bool) and key != "drop"):  # type: ignore[arg-type]
            raise ValueError(f"fault field {key} has the wrong type")


def _event(event: Any) -> dict[str, Any]:
    return {"eventId": event.id, "type": event.type, "status": event.status, "source": event.source,
            "resources": event.resources, "notBefore": event.not_before, "durationInSeconds": event.duration,
            "description": event.description, "approvals": event.approvals, "published": event.published,
            "started": event.started, "active": event.active}


def _json(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value, separators=(",", ":")).encode(), "application/json")


def _error(status: int, message: str, problems: list[str] | None = None,
           headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = problems
    return Response(status, json.dumps(body).encode(), "application/json", headers=headers)


def openapi() -> dict[str, Any]:
    """The control plane's OpenAPI 3.0 description."""
    error = {"$ref": "#/components/responses/Error"}
    any_json: dict[str, Any] = {}
    event = {"type": "object", "required": ["eventId", "type", "status", "resources"], "properties": {
        "eventId": {"type": "string"}, "type": {"type": "string", "enum": ["Freeze", "Reboot", "Redeploy", "Preempt", "Terminate"]},
        "status": {"type": "string", "enum": ["Scheduled", "Started"]}, "source": {"type": "string"},
        "resources": {"type": "array", "items": {"type": "string"}}, "notBefore": {"type": "number"},
        "durationInSeconds": {"type": "integer"}, "description": {"type": "string"},
        "approvals": {"type": "array", "items": {"type": "string"}}, "published": {"type": "number"},
        "started": {"type": "number", "nullable": True}, "active": {"type": "number"}}}
    events = {"type": "object", "required": ["incarnation", "events"], "properties": {
        "incarnation": {"type": "integer"}, "events": {"type": "array", "items": event}}}
    clock = {"type": "object", "required": ["mode", "speed", "now"], "properties": {
        "mode": {"type": "string", "enum": ["real", "scaled", "manual"]}, "speed": {"type": "number"},
        "now": {"type": "number"}}}
    fault = {"type": "object", "properties": {
        "path": {"type": "string"}, "status": {"type": "integer"}, "latency": {"type": "number"},
        "drop": {"type": "boolean"}, "retryAfter": {"type": "integer"}, "probability": {"type": "number"},
        "first": {"type": "integer"}, "firstSeconds": {"type": "number"}, "spec": {"type": "string"}}}

    def ok(schema: dict[str, Any], status: str = "200", description: str = "OK") -> dict[str, Any]:
        return {status: {"description": description, "content": {JSON: {"schema": schema}}}}

    def body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
        return {"required": required, "content": {JSON: {"schema": schema}}}

    errors = {code: error for code in ("400", "401", "404", "405", "409", "413", "414", "431")}
    node_path = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
                 "description": "slash-separated keys and indexes, e.g. compute/tags"}
    event_id = {"name": "eventId", "in": "path", "required": True, "schema": {"type": "string"}}
    empty = {"204": {"description": "done"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "azimds control plane", "version": "1",
                 "description": "Steer the emulated VM: metadata, scheduled events, clock, faults, journal."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error", "content": {JSON: {"schema": {
                "type": "object", "required": ["error"], "properties": {
                    "error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "string"}}}}}}}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/metadata": {
                "get": {"summary": "the whole document (newest shape)", "responses": {**ok(any_json), **errors}},
                "patch": {"summary": "JSON merge patch of the whole document", "requestBody": body({"type": "object"}),
                          "responses": {**ok(any_json), **errors}}},
            "/v1/metadata/{path}": {
                "parameters": [node_path],
                "get": {"summary": "read a node", "responses": {**ok(any_json), **errors}},
                "put": {"summary": "replace a node (validated like a profile)", "requestBody": body(any_json),
                        "responses": {**ok(any_json), **errors}},
                "patch": {"summary": "merge-patch a node", "requestBody": body(any_json), "responses": {**ok(any_json), **errors}},
                "delete": {"summary": "remove a node (defaults fill it again)", "responses": {**empty, **errors}}},
            "/v1/tags": {"put": {"summary": "replace the tags", "requestBody": body(
                {"type": "object", "additionalProperties": {"type": "string"}}),
                "responses": {**ok({"type": "object", "properties": {"tags": {"type": "string"}}}), **errors}}},
            "/v1/events": {
                "get": {"summary": "events and DocumentIncarnation", "responses": {**ok(events), **errors}},
                "post": {"summary": "schedule an event", "requestBody": body({"type": "object", "required": ["type"], "properties": {
                    "type": {"type": "string", "enum": ["Freeze", "Reboot", "Redeploy", "Preempt", "Terminate"]},
                    "resources": {"type": "array", "items": {"type": "string"}}, "source": {"type": "string", "enum": ["Platform", "User"]},
                    "notBefore": {"type": "number"}, "notice": {"type": "number"}, "durationInSeconds": {"type": "integer"},
                    "active": {"type": "number"}, "description": {"type": "string"}, "eventId": {"type": "string"},
                    "started": {"type": "boolean"}}}),
                    "responses": {**ok(event, "201", "scheduled"), **errors}}},
            **{f"/v1/events/{{eventId}}/{action}": {"parameters": [event_id], "post": {
                "summary": f"{action} an event", "responses": {**ok(events), **errors}}}
               for action in ("approve", "start", "complete", "cancel")},
            "/v1/clock": {
                "get": {"summary": "the emulated clock", "responses": {**ok(clock), **errors}},
                "post": {"summary": "advance, jump or change speed", "requestBody": body({"type": "object", "properties": {
                    "advance": {"type": "number"}, "speed": {"type": "number"}, "time": {"type": "number"}}}),
                    "responses": {**ok(clock), **errors}}},
            "/v1/faults": {
                "get": {"summary": "active faults", "responses": {**ok({"type": "object", "properties": {
                    "faults": {"type": "array", "items": fault}}}), **errors}},
                "post": {"summary": "add a fault", "requestBody": body(fault), "responses": {**ok(fault, "201", "added"), **errors}},
                "delete": {"summary": "clear all faults", "responses": {**empty, **errors}}},
            "/v1/journal": {"get": {"summary": "requests the metadata port answered", "parameters": [
                {"name": "path", "in": "query", "schema": {"type": "string"}},
                {"name": "status", "in": "query", "schema": {"type": "integer"}},
                {"name": "peer", "in": "query", "schema": {"type": "string"}},
                {"name": "since", "in": "query", "schema": {"type": "number"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
                "responses": {**ok({"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object"}}}}), **errors}}},
            "/v1/fleet/walk": {"post": {"summary": "walk a scale set's update domains: one event per domain, gap seconds apart",
                "requestBody": body({"type": "object", "required": ["set"], "properties": {
                    "set": {"type": "string"}, "type": {"type": "string"}, "gap": {"type": "number"},
                    "durationInSeconds": {"type": "integer"}}}), "responses": {**ok(events), **errors}}},
            "/v1/reset": {"post": {"summary": "back to the profile", "responses": {**ok({"type": "object"}), **errors}}},
            "/v1/reload": {"post": {"summary": "reload the profile file", "responses": {**ok({"type": "object"}), **errors}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, **errors}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {**ok({"type": "object"}), **errors}}},
        },
    }
