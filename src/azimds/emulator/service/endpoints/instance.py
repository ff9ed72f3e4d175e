"""/metadata/instance: the VM's compute and network document, gated by api-version, filtered by route."""

from __future__ import annotations

from typing import Any

from .. import catalog, render
from ..choices import BAD_PARAMETER_BODY, LEAF_NEEDS_TEXT_BODY, TEXT_CONTENT_TYPE
from ..http import Response
from ..profile import Vm
from . import Endpoint, Outcome

NOT_FOUND = Response(404, b'{ "error": "Not found" }')  # real body for an unknown key under /instance
LEAF_NEEDS_TEXT = Response(400, LEAF_NEEDS_TEXT_BODY)
BAD_PARAMETER = Response(400, BAD_PARAMETER_BODY)
_FLAGS = {"true": True, "false": False}


class InstanceEndpoint(Endpoint):
    name = "instance"
    introduced = catalog.ENDPOINT_INTRODUCED["instance"]

    def resolve(self, vm: Vm, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        assert version is not None
        fmt = query.get("format", "json")
        extended = _FLAGS.get(query.get("extended", "false").lower())
        if fmt not in ("json", "text") or extended is None:
            return BAD_PARAMETER
        try:
            value = render.walk(document(vm, version, extended), keys)
        except render.NotFound:
            return NOT_FOUND
        if fmt == "text":
            return Response(200, render.to_text(value), TEXT_CONTENT_TYPE)
        if render.is_leaf(value):
            return LEAF_NEEDS_TEXT
        return Response(200, render.to_json(value))


def document(vm: Vm, version: str, extended: bool) -> dict[str, Any]:
    """The instance document as served at ``version``; cached on the VM until it changes."""
    key = ("instance", version, extended)
    doc = vm.cache.get(key)
    if doc is None:
        tree = vm.instance if extended else {k: v for k, v in vm.instance.items() if k != "extended"}
        doc = vm.cache[key] = render.gate(tree, catalog.instance_schema(), version)
    return doc
