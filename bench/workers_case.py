"""The workers case of `make bench`: `azimds serve --workers 2` against one process, on the instance request.

Workers steer each source address to one of them, so the load must come from many addresses, as it does from
a fleet: bind_shim.c (LD_PRELOAD) binds each of wrk's 50 connections to its own loopback address, and the case
prints how many connections each worker gets (the kernel's steering program, computed by ``steer_index``).
Both servers run unpinned (workers need both cores), wrk on core 1 in both runs, one after the other under
the same load; the rate limiter stays in the request path but never says no. Target: 2 workers ≥ 1.7× one
process's req/s. On a 2-core machine wrk shares a core with a worker, so the ratio is bounded by how much CPU
wrk itself needs; the figures say what is left.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet_case import build_shim

CONNECTIONS = 50
SOURCE_BASE = "127.3.0.1"  # wrk's connections come from 127.3.0.1 … 127.3.0.50, one each
WORKERS = 2
TARGET_RATIO = 1.7


def start(harness: Any, ctx: Any, label: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """azimds on no particular core (unlike the harness's start_azimds), a private state directory."""
    log_out, log_err = ctx.workdir / f"{label}.out", ctx.workdir / f"{label}.err"
    command = [*harness.azimds_command(), "serve", "--host", harness.HOST, "--port", "0", "--rate-limit",
               harness.BENCH_RATE_LIMIT, "--state-dir", str(ctx.workdir / f"{label}-state"), "--control-port", "0",
               *extra]
    with open(log_out, "wb") as out, open(log_err, "wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        return proc, harness.wait_for_ready_line(proc, log_out, log_err)
    except BaseException:
        harness.stop(proc)
        raise


def family(root: int) -> set[int]:
    """``root`` and every process below it (a supervisor's workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(") ")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def wrk(harness: Any, ctx: Any, url: str, seconds: int, env: dict[str, str]) -> Any:
    command = harness.pinned(ctx.tools, harness.CLIENT_CORE, [
        ctx.tools["wrk"], f"-t{harness.WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
        "-H", "Metadata: true", url])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    try:
        stdout, stderr = proc.communicate(timeout=seconds + harness.WRK_SLACK)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise harness.BenchError(f"wrk exited with {proc.returncode}: {stderr}")
    return harness.parse_wrk(stdout, proc.pid)


def machine_ticks() -> tuple[int, int]:
    """All CPUs' (busy, idle) clock ticks so far, from /proc/stat (iowait counts as idle, steal as busy)."""
    fields = [int(n) for n in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, idle


@dataclass
class Usage:
    """Where the CPU went during one measured run."""

    requests: int
    server_cpu: float  # seconds, the server's processes
    idle_share: float  # of all CPUs

    @property
    def server_us_per_request(self) -> float:
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0


def measure(harness: Any, ctx: Any, label: str, proc: subprocess.Popen[bytes], url: str, body: bytes,
            env: dict[str, str]) -> tuple[Any, Usage]:
    try:
        status, served = harness.fetch(url)
        if status != 200 or served != body:
            raise harness.BenchError(f"{label} answered {status} with {len(served)} bytes, not the instance document")
        server = family(proc.pid)
        print(f"  {label:10} {url} (pids {sorted(server)})")
        wrk(harness, ctx, url, ctx.settings.warmup, env)
        before = harness.process_cpu_seconds()
        busy, idle = machine_ticks()
        result = wrk(harness, ctx, url, ctx.settings.duration, env)
        busy, idle = (a - b for a, b in zip(machine_ticks(), (busy, idle), strict=True))
        after = harness.process_cpu_seconds()
        others = harness.other_cpu_seconds(before, after, server | {os.getpid(), result.pid})
        used = sum(after[pid][1] - before.get(pid, ("", 0.0))[1] for pid in server if pid in after)
        (ctx.outdir / f"wrk-{label.replace(' ', '-')}.txt").write_text(result.output)
        row = harness.Row(label, result.requests_per_sec, result.p99_ms, result.problems,
                          harness.interference(others, ctx.settings.duration))
        return row, Usage(result.requests, used, idle / (busy + idle) if busy + idle else 0.0)
    finally:
        harness.stop(proc)


def case(harness: Any, ctx: Any) -> Any:
    from azimds.emulator.workers import steer_index

    result = harness.CaseResult("workers")
    try:
        shim = build_shim(ctx.workdir)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        raise harness.BenchError(f"cannot build bench/bind_shim.c: {exc}") from None
    spread = {"LD_PRELOAD": str(shim), "AZIMDS_SOURCES": str(CONNECTIONS), "AZIMDS_SOURCE_BASE": SOURCE_BASE}
    sources = [str(ipaddress.ip_address(SOURCE_BASE) + i) for i in range(CONNECTIONS)]
    split = Counter(steer_index(source, WORKERS) for source in sources)
    print(f"  {CONNECTIONS} connections from {sources[0]} … {sources[-1]}: "
          + ", ".join(f"worker {index} gets {split[index]}" for index in range(WORKERS)))
    path = f"{harness.INSTANCE_PATH}?{harness.INSTANCE_QUERY}"
    body = harness.instance_bytes(ctx, path)

    proc, base = start(harness, ctx, "single", [])
    single, alone = measure(harness, ctx, "1 process", proc, base + path, body, spread)
    proc, base = start(harness, ctx, "workers", ["--workers", str(WORKERS)])
    log = (ctx.workdir / "workers.err").read_text()
    if "cannot steer" in log:
        print("  " + next(line for line in log.splitlines() if "cannot steer" in line))
    workers, shared = measure(harness, ctx, f"{WORKERS} workers", proc, base + path, body, spread)
    result.rows += [single, workers]
    if not single.requests_per_sec:
        raise harness.BenchError(f"one process gave nothing to compare with: {single}")
    for label, usage in (("1 process", alone), (f"{WORKERS} workers", shared)):
        print(f"  {label}: the server used {usage.server_us_per_request:.1f} µs of CPU per request; "
              f"{usage.idle_share:.0%} of the machine's CPU stayed idle")
    # One process leaves a share of the machine idle; the most any number of workers can add is that share, at
    # one process's CPU per request (server, wrk and the kernel's loopback TCP together).
    ceiling = 1 / (1 - alone.idle_share) if alone.idle_share < 1 else float("inf")
    ratio = workers.requests_per_sec / single.requests_per_sec
    result.ratios = [
        harness.Ratio(f"{WORKERS} workers / 1 process req/s", ratio, TARGET_RATIO, True),
        harness.Ratio(f"{WORKERS} workers / 1 process p99 (info)", workers.p99_ms / single.p99_ms
                      if single.p99_ms else 0.0, float("inf"), False),
        harness.Ratio("ceiling on this machine: 1 / (1 - idle share with 1 process) (info)", ceiling, 0.0, True),
        harness.Ratio(f"{WORKERS} workers' server CPU per request / 1 process's (info)",
                      shared.server_us_per_request / alone.server_us_per_request
                      if alone.server_us_per_request else 0.0, float("inf"), False),
    ]
    return result
