"""The world's counters as Prometheus text, for ``GET /metrics`` on the control plane."""

from __future__ import annotations

from ..world.world import World

__all__ = ["prometheus"]


def prometheus(world: World) -> str:
    metrics = world.metrics()
    lines = ["# HELP azimds_requests_total Requests answered on the metadata port.",
             "# TYPE azimds_requests_total counter"]
    for (endpoint, status), count in sorted(metrics.requests.items()):
        lines.append(f'azimds_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}')
    lines += ["# HELP azimds_request_seconds Time to answer a metadata request.",
              "# TYPE azimds_request_seconds histogram"]
    cumulative = 0
    for bound, count in zip(metrics.BUCKETS, metrics.latency_counts[:-1], strict=True):
        cumulative += count
        lines.append(f'azimds_request_seconds_bucket{{le="{bound}"}} {cumulative}')
    total = cumulative + metrics.latency_counts[-1]
    lines += [f'azimds_request_seconds_bucket{{le="+Inf"}} {total}',
              f"azimds_request_seconds_sum {metrics.latency_sum}",
              f"azimds_request_seconds_count {total}",
              "# HELP azimds_events Scheduled events by state.", "# TYPE azimds_events gauge"]
    events = world.first.events.current()
    for state in ("Scheduled", "Started"):
        lines.append(f'azimds_events{{state="{state}"}} {sum(1 for e in events if e.status == state)}')
    lines += ["# HELP azimds_events_incarnation DocumentIncarnation of the events document.",
              "# TYPE azimds_events_incarnation gauge", f"azimds_events_incarnation {world.first.events.incarnation}"]
    return "\n".join(lines) + "\n"
