"""The fleet case of `make bench`: 100,000 VMs (one scale set) in one emulator.

Start-up time and resident memory of the emulator, and req/s with wrk's connections spread over 1,000
source addresses (so 1,000 different VMs answer) as a ratio to the same load from one address to a
single-VM emulator. wrk cannot choose source addresses, so bind_shim.c (LD_PRELOAD) binds each of its
sockets to the next address. Targets: start <= 15 s, <= 2 GiB, ratio >= 0.7. With 1,000 connections opened at
once some first answers take over a second under uvloop (not under asyncio's own loop), so wrk's timeout is
10 s here and p99 is reported, not judged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CAPACITY = 100_000
SOURCES = 1_000
SOURCE_BASE = "127.1.0.0"
CONNECTIONS = 1_000
PATH = "/metadata/instance?api-version=2025-04-07"
TARGET_START_S, TARGET_RSS_GIB, TARGET_RATIO = 15.0, 2.0, 0.7


def profile_text() -> str:
    return ("compute: {name: jump-1}\n"
            "fleet:\n"
            "  tags: {costCenter: '42'}\n"
            "  scaleSets:\n"
            f"    - {{name: web, capacity: {CAPACITY}, addresses: {SOURCE_BASE}, subnet: 10.0.0.0/14}}\n")


def rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def build_shim(workdir: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler to build bench/bind_shim.c")
    out = workdir / "bind_shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "bind_shim.c"), "-ldl"],
                   check=True, capture_output=True)
    return out


def wrk(harness: Any, ctx: Any, url: str, seconds: int, env: dict[str, str] | None = None) -> Any:
    command = harness.pinned(ctx.tools, harness.CLIENT_CORE, [
        ctx.tools["wrk"], "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "--latency",
        "-H", "Metadata: true", url])
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                         env={**os.environ, **(env or {})})
    if run.returncode != 0:
        raise harness.BenchError(f"wrk exited with {run.returncode}: {run.stderr}")
    return harness.parse_wrk(run.stdout)


def case(harness: Any, ctx: Any) -> Any:
    result = harness.CaseResult("fleet")
    shim = build_shim(ctx.workdir)
    spread = {"LD_PRELOAD": str(shim), "AZIMDS_SOURCES": str(SOURCES), "AZIMDS_SOURCE_BASE": SOURCE_BASE}
    state = ctx.workdir / "state"
    common = ["--state-dir", str(state), "--control-port", "0"]

    proc, base = harness.start_azimds(ctx, "azimds-single", common)
    try:
        wrk(harness, ctx, base + PATH, ctx.settings.warmup)
        single = wrk(harness, ctx, base + PATH, ctx.settings.duration)
    finally:
        harness.stop(proc)
    result.rows.append(harness.Row("azimds, 1 VM, 1 address", single.requests_per_sec, single.p99_ms, single.problems))

    profile = ctx.workdir / "fleet.yaml"
    profile.write_text(profile_text())
    started = time.monotonic()
    proc, base = harness.start_azimds(ctx, "azimds-fleet", [*common, "--profile", str(profile)])
    try:
        start_s = time.monotonic() - started
        rss_start = rss_gib(proc.pid)
        wrk(harness, ctx, base + PATH, ctx.settings.warmup, spread)  # makes the 1,000 VMs
        fleet = wrk(harness, ctx, base + PATH, ctx.settings.duration, spread)
        rss_after = rss_gib(proc.pid)
    finally:
        harness.stop(proc)
    result.rows.append(harness.Row(f"azimds, {CAPACITY:,} VMs, {SOURCES:,} addresses", fleet.requests_per_sec,
                                   fleet.p99_ms, fleet.problems))
    print(f"  fleet start-up {start_s:.2f} s, RSS {rss_start * 1024:.0f} MiB at start, "
          f"{rss_after * 1024:.0f} MiB after serving {SOURCES:,} VMs")
    result.ratios += [
        harness.Ratio("fleet start-up seconds", start_s, TARGET_START_S, False),
        harness.Ratio("fleet RSS GiB (after load)", rss_after, TARGET_RSS_GIB, False),
        harness.Ratio("fleet/single req/s (c1000)", fleet.requests_per_sec / single.requests_per_sec, TARGET_RATIO,
                      True),
    ]
    return result
