"""The control plane's routes, as data: method, path, handler, declared body and answer of every operation.

The control plane dispatches on them and the OpenAPI document is generated from them, so neither can drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..model.events import EventSpec
from ..model.faults import FaultRule
from . import bodies

__all__ = ["ROUTES", "Route"]


@dataclass(frozen=True)
class Route:
    """One operation: ``path`` is a template (``/v1/events/{eventId}/{action}``); ``body`` the declared request
    body (a pydantic-validatable type, ``Any`` for any JSON, None for none); ``answer`` the declared answer."""

    method: str
    path: str
    handler: str
    summary: str
    body: Any = None
    answer: Any = None
    status: int = 200
    per_vm: bool = False  # takes ?vm=NAME (a fleet's VM)
    query: tuple[tuple[str, str, str], ...] = ()  # (name, JSON schema type, description)
    fixed: tuple[tuple[str, str], ...] = ()  # arguments the handler always gets from this route

    def pattern(self) -> re.Pattern[str]:
        regex = re.escape(self.path)
        for name in re.findall(r"{(\w+)}", self.path):
            group = ".+" if name == "path" else "[^/]+"
            regex = regex.replace(re.escape("{" + name + "}"), f"(?P<{name}>{group})")
        return re.compile(regex)


_JOURNAL_QUERY = (("path", "string", "only paths matching this glob"), ("status", "integer", "only this status"),
                  ("peer", "string", "only this source address"), ("since", "number", "only from this time"),
                  ("limit", "integer", "only the last N (default 1000)"))

_FLEET_QUERY = (("offset", "integer", "skip the first N VMs"), ("limit", "integer", "at most N VMs (default 100, "
                                                                                   "at most 1000)"))

ROUTES: tuple[Route, ...] = (
    Route("GET", "/openapi.json", "get_openapi", "this document", answer=dict[str, Any]),
    Route("GET", "/metrics", "get_metrics", "Prometheus metrics", answer=str),
    Route("GET", "/v1/metadata", "get_node", "the whole document (newest shape)", answer=Any, per_vm=True),
    Route("PATCH", "/v1/metadata", "patch_node", "JSON merge patch of the whole document", body=dict[str, Any],
          answer=Any, per_vm=True),
    Route("GET", "/v1/metadata/{path}", "get_node", "read a node", answer=Any, per_vm=True),
    Route("PUT", "/v1/metadata/{path}", "put_node", "replace a node (validated like a profile)", body=Any,
          answer=Any, per_vm=True),
    Route("PATCH", "/v1/metadata/{path}", "patch_node", "merge-patch a node", body=Any, answer=Any, per_vm=True),
    Route("DELETE", "/v1/metadata/{path}", "delete_node", "undo a node's changes: back to the profile's value (or "
          "its default); an array item is removed", status=204, per_vm=True),
    Route("POST", "/v1/reprovision", "reprovision", "hand a pre-provisioned VM over: ppsType becomes None and "
          "/metadata/reprovisiondata answers its OVF environment; the body (optional) merge-patches its documents",
          body=dict[str, Any] | None, answer=Any, per_vm=True),
    Route("POST", "/v1/reboot", "reboot", "the VM restarts (or is reimaged, or its disks change): a scale-set "
          "instance then shows the tags changed before", status=204, per_vm=True),
    Route("PUT", "/v1/tags", "put_tags", "replace every tag", body=bodies.Tags, answer=bodies.TagsView,
          per_vm=True),
    Route("GET", "/v1/events", "get_events", "events and DocumentIncarnation", answer=bodies.EventsView,
          per_vm=True),
    Route("POST", "/v1/events", "post_event", "schedule an event", body=EventSpec, answer=bodies.EventView,
          status=201, per_vm=True),
    *(Route("POST", f"/v1/events/{{eventId}}/{action}", "event_action", summary, answer=bodies.EventsView,
            per_vm=True, fixed=(("action", action),),
            query=(("by", "string", "the approving VM (default: every VM it lists)"),) if action == "approve" else ())
      for action, summary in (("approve", "approve an event, as a VM would by POST"),
                              ("start", "start a Scheduled event now"),
                              ("complete", "end a Started event (it disappears)"),
                              ("cancel", "withdraw a Scheduled event (it disappears)"))),
    Route("GET", "/v1/fleet", "get_fleet", "the VMs (a page of them, in a fixed order) with their sets, addresses, "
          "fault and update domains, and the sets; for a dynamic scale set, which source address holds each "
          "instance and when it is let go", answer=bodies.FleetView, query=_FLEET_QUERY),
    Route("POST", "/v1/fleet/walk", "walk", "walk a scale set's update domains: one event per domain, gap "
          "seconds apart", body=bodies.Walk, answer=bodies.EventsView),
    Route("GET", "/v1/clock", "get_clock", "the emulated clock", answer=bodies.ClockView),
    Route("POST", "/v1/clock", "post_clock", "advance, jump or change speed", body=bodies.ClockChange,
          answer=bodies.ClockView),
    Route("GET", "/v1/faults", "get_faults", "active faults", answer=bodies.FaultsView),
    Route("POST", "/v1/faults", "post_fault", "add a fault", body=FaultRule | bodies.FaultSpec, answer=FaultRule,
          status=201),
    Route("DELETE", "/v1/faults", "delete_faults", "clear all faults", status=204),
    Route("GET", "/v1/journal", "get_journal", "requests the metadata port answered", answer=bodies.JournalView,
          query=_JOURNAL_QUERY),
    Route("POST", "/v1/reset", "post_reset", "back to the profile", answer=dict[str, Any]),
    Route("POST", "/v1/reload", "post_reload", "reload the profile file", answer=dict[str, Any]),
)
