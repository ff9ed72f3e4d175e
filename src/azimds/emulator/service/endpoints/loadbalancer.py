"""/metadata/loadbalancer: the Standard load balancer's view of this VM, from the profile."""

from __future__ import annotations

from typing import Any

from .. import catalog, render
from ..choices import BAD_PARAMETER_BODY, UNKNOWN_PATH_BODY
from ..http import Response
from ..profile import Vm
from . import Endpoint, Outcome

#: The real 404 when the VM is behind no Standard load balancer (2023 capture).
NO_LOADBALANCER = Response(404, b'{"error":"No load balancer metadata is found. Please check if your VM is using '
                                b'any non-basic SKU load balancer and retry later."}')


class LoadBalancerEndpoint(Endpoint):
    name = "loadbalancer"
    introduced = catalog.ENDPOINT_INTRODUCED["loadbalancer"]

    def resolve(self, vm: Vm, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        if keys:
            return Response(404, UNKNOWN_PATH_BODY)
        if query.get("format", "json") != "json":
            return Response(400, BAD_PARAMETER_BODY)
        if vm.loadbalancer is None:
            return NO_LOADBALANCER
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
