"""/metadata/loadbalancer: the Standard load balancer's view of this VM, from the profile, in the service's own
key order and with its own error messages (the load balancer API answers behind the IMDS front door, which has
already checked the Metadata header and the api-version)."""

from __future__ import annotations

from typing import Any

from ....azure import ENDPOINT_INTRODUCED
from ...model import catalog
from .. import render, responses
from ..http import Request, Response
from ..ports import VmView
from .base import Endpoint, Outcome

__all__ = ["LoadBalancerEndpoint", "document"]


class LoadBalancerEndpoint(Endpoint):
    name = "loadbalancer"
    introduced = ENDPOINT_INTRODUCED["loadbalancer"]

    def refuse_method(self, request: Request) -> Response:
        return responses.loadbalancer_error(405, request)

    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        if keys:
            return lambda request: responses.loadbalancer_error(404, request)
        fmt = query.get("format", "json")
        if fmt != "json":
            return responses.loadbalancer_bad_value("format", fmt)
        if vm.loadbalancer is None:
            return responses.NO_LOADBALANCER_404
        return Response(200, render.to_json({"loadbalancer": document(vm.loadbalancer)}, sort_keys=False))


def document(lb: dict[str, Any]) -> dict[str, Any]:
    """The real document: every rule list present (possibly empty), each item's members in the service's order
    (the catalogue's), strings present (possibly ""), an inbound rule's protocol ``Tcp`` unless it says."""
    out: dict[str, list[dict[str, Any]]] = {}
    members: dict[str, list[tuple[str, str]]] = {}
    for path, kind in catalog.LOADBALANCER_FIELDS.items():
        group, _, member = path.partition("/*/")
        members.setdefault(group, []).append((member, kind))
    for group, fields in members.items():
        out[group] = [
            {member: item.get(member, catalog.LOADBALANCER_DEFAULTS.get(member, "")) for member, kind in fields
             if member in item or kind == "string"}
            for item in lb.get(group, [])
        ]
    return out
