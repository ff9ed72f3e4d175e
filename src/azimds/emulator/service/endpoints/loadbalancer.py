"""/metadata/loadbalancer: the Standard load balancer's view of this VM, from the profile."""

from __future__ import annotations

from typing import Any

from ....azure import ENDPOINT_INTRODUCED
from ...model import catalog
from .. import render, responses
from ..http import Response
from ..ports import VmView
from .base import Endpoint, Outcome

__all__ = ["LoadBalancerEndpoint", "document"]


class LoadBalancerEndpoint(Endpoint):
    name = "loadbalancer"
    introduced = ENDPOINT_INTRODUCED["loadbalancer"]

    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        if keys:
            return responses.UNKNOWN_PATH
        if query.get("format", "json") != "json":
            return responses.BAD_PARAMETER
        if vm.loadbalancer is None:
            return responses.NO_LOADBALANCER_404
        return Response(200, render.to_json({"loadbalancer": document(vm.loadbalancer)}))


def document(lb: dict[str, Any]) -> dict[str, Any]:
    """Every rule list present (possibly empty), every string member present (possibly "")."""
    out: dict[str, Any] = {}
    for path in catalog.LOADBALANCER_FIELDS:
        group, _, member = path.partition("/*/")
        out.setdefault(group, [])
    for group in out:
        items = []
        for item in lb.get(group, []):
            full = dict(item)
            for path, kind in catalog.LOADBALANCER_FIELDS.items():
                g, _, member = path.partition("/*/")
                if g == group and kind == "string":
                    full.setdefault(member, "")
            items.append(full)
        out[group] = items
    return out
