"""/metadata/instance: the VM's compute and network document, gated by api-version, filtered by route."""

from __future__ import annotations

from typing import Any

from ....azure import ENDPOINT_INTRODUCED
from ...model import catalog
from .. import render, responses
from ..choices import TEXT_CONTENT_TYPE
from ..http import Response
from ..ports import VmView
from .base import Endpoint, Outcome

__all__ = ["InstanceEndpoint", "document"]

_FLAGS = {"true": True, "false": False}


class InstanceEndpoint(Endpoint):
    name = "instance"
    introduced = ENDPOINT_INTRODUCED["instance"]

    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        assert version is not None
        fmt = query.get("format", "json")
        extended = _FLAGS.get(query.get("extended", "false").lower())
        if fmt not in ("json", "text") or extended is None:
            return responses.BAD_PARAMETER
        try:
            value = render.walk(document(vm, version, extended), keys)
        except render.NotFound:
            return responses.INSTANCE_NOT_FOUND
        if fmt == "text":
            return Response(200, render.to_text(value), TEXT_CONTENT_TYPE)
        if render.is_leaf(value):
            return responses.LEAF_NEEDS_TEXT
        return Response(200, render.to_json(value))


def document(vm: VmView, version: str, extended: bool) -> dict[str, Any]:
    """The instance document as served at ``version``; cached on the VM until it changes."""
    key = ("instance", version, extended)
    doc: dict[str, Any] | None = vm.cache.get(key)
    if doc is None:
        tree = vm.instance if extended else {k: v for k, v in vm.instance.items() if k != "extended"}
        doc = vm.cache[key] = render.gate(tree, catalog.instance_schema(), version)
    return doc
