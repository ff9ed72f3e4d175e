"""The control plane's OpenAPI 3.1 document, generated from its routes and their declared bodies."""

from __future__ import annotations

import re
from typing import Any

import pydantic

from .bodies import ErrorView
from .routes import Route

__all__ = ["openapi"]

JSON = "application/json"
_ERRORS = ("400", "401", "404", "405", "409", "413", "414", "431")


def openapi(routes: tuple[Route, ...]) -> dict[str, Any]:
    """The document: every route, its parameters, body and answers, with shared schemas under components."""
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for route in routes:
        operation: dict[str, Any] = {"summary": route.summary, "operationId": _operation_id(route),
                                     "description": route.summary}
        parameters = [{"name": name, "in": "path", "required": True, "schema": _path_schema(route, name)}
                      for name in re.findall(r"{(\w+)}", route.path)]
        if route.per_vm:
            parameters.append({"name": "vm", "in": "query", "schema": {"type": "string"},
                               "description": "in a fleet, the VM to act on (default: the profile's own VM)"})
        parameters += [{"name": name, "in": "query", "schema": {"type": kind}, "description": text}
                       for name, kind, text in route.query]
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {JSON: {"schema": _schema(route.body, schemas)}}}
        operation["responses"] = _responses(route, schemas)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    schemas["Error"] = _schema(ErrorView, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "azimds control plane", "version": "1",
                 "description": "Steer the emulated world: metadata, scheduled events, clock, faults, journal."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "refused; nothing was changed",
                                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": schemas,
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _operation_id(route: Route) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", route.path) if w and w != "v1"]
    return route.method.lower() + "".join(w[:1].upper() + w[1:] for w in words)


def _path_schema(route: Route, name: str) -> dict[str, Any]:
    return {"type": "string"}


def _responses(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if route.status == 204:
        out["204"] = {"description": "done"}
    elif route.answer is str:
        out[str(route.status)] = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    else:
        out[str(route.status)] = {"description": "OK", "content": {JSON: {"schema": _schema(route.answer, schemas)}}}
    out.update({code: {"$ref": "#/components/responses/Error"} for code in _ERRORS})
    return out


def _schema(declared: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of a declared type; named parts go to ``schemas`` and are referenced."""
    if declared is Any:
        return {}
    adapter = pydantic.TypeAdapter(declared)
    schema = adapter.json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    return schema
