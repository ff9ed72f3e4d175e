"""The fleet case of `make bench`: 1,000,000 VMs (one scale set) in one emulator.

Start-up time; resident memory at start and after TOUCHED distinct VMs have each been asked once (from their own
source addresses, one connection each); and req/s and p99 with wrk's 1,000 connections spread over 1,000
source addresses (so 1,000 different VMs answer) against the same load (the same addresses) to a single-VM
emulator, so that only the VMs differ; the two are measured in turns. wrk cannot choose source addresses, so
bind_shim.c (LD_PRELOAD) binds each of its sockets to the next address. Targets: start <= 2 s, RSS after
TOUCHED VMs <= 512 MiB, fleet/single req/s >= 0.9 and p99 <= 2x, no timeouts (wrk's timeout is 10 s, so a stall
shows as a p99 rather than as lost requests).
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CAPACITY = 1_000_000
SOURCES = 1_000
TOUCHED = 10_000
SOURCE_BASE = "127.1.0.0"
CONNECTIONS = 1_000
PATH = "/metadata/instance?api-version=2025-04-07"
TARGET_START_S, TARGET_RSS_MIB, TARGET_RATIO, TARGET_P99_RATIO = 2.0, 512.0, 0.9, 2.0


def profile_text() -> str:
    return ("compute: {name: jump-1}\n"
            "fleet:\n"
            "  tags: {costCenter: '42'}\n"
            "  scaleSets:\n"
            f"    - {{name: web, capacity: {CAPACITY}, addresses: {SOURCE_BASE}, subnet: 10.0.0.0/12}}\n")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def touch(harness: Any, base: str, count: int) -> int:
    """Ask ``count`` VMs their name, each from its own source address on a connection of its own; the number of
    distinct names answered."""
    host, _, port = base.removeprefix("http://").rpartition(":")
    request = (b"GET /metadata/instance/compute/name?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: x\r\n"
               b"Metadata: true\r\nConnection: close\r\n\r\n")
    first = ipaddress.ip_address(SOURCE_BASE) + 1
    names = set()
    for index in range(count):
        with socket.socket() as sock:
            sock.settimeout(10)
            sock.bind((str(first + index), 0))
            sock.connect((host, int(port)))
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise harness.BenchError(f"VM {index} answered {head[:60]!r}")
        names.add(body)
    return len(names)


def build_shim(workdir: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler to build bench/bind_shim.c")
    out = workdir / "bind_shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "bind_shim.c"), "-ldl"],
                   check=True, capture_output=True)
    return out


def case(harness: Any, ctx: Any) -> Any:
    result = harness.CaseResult("fleet")
    shim = build_shim(ctx.workdir)
    spread = {"LD_PRELOAD": str(shim), "AZIMDS_SOURCES": str(SOURCES), "AZIMDS_SOURCE_BASE": SOURCE_BASE}
    common = ["--state-dir", str(ctx.workdir / "state"), "--control-port", "0"]

    single_proc, single_base = harness.start_azimds(ctx, "azimds-single", common)
    proc = None
    try:
        profile = ctx.workdir / "fleet.yaml"
        profile.write_text(profile_text())
        started = time.monotonic()
        proc, base = harness.start_azimds(ctx, "azimds-fleet", ["--state-dir", str(ctx.workdir / "fleet-state"),
                                                                "--control-port", "0", "--profile", str(profile)])
        start_s = time.monotonic() - started
        rss_start = rss_mib(proc.pid)
        distinct = touch(harness, base, TOUCHED)
        if distinct != TOUCHED:
            raise harness.BenchError(f"{TOUCHED:,} source addresses were answered as {distinct:,} VMs")
        rss_after = rss_mib(proc.pid)
        # Both from the same 1,000 source addresses: the single VM answers them all, the fleet as 1,000 VMs.
        single, fleet = harness.measure_in_turns(ctx, [
            harness.Target("azimds, 1 VM", single_base + PATH, single_proc.pid, spread),
            harness.Target(f"azimds, {CAPACITY:,} VMs", base + PATH, proc.pid, spread)], CONNECTIONS)
    finally:
        harness.stop(proc)
        harness.stop(single_proc)
    result.rows += [single, fleet]
    print(f"  fleet start-up {start_s:.2f} s, RSS {rss_start:.0f} MiB at start, {rss_after:.0f} MiB after serving "
          f"{TOUCHED:,} VMs ({(rss_after - rss_start) * 1024 / TOUCHED:.1f} KiB per VM)")
    result.ratios += [
        harness.Ratio(f"fleet start-up seconds ({CAPACITY:,} VMs)", start_s, TARGET_START_S, False),
        harness.Ratio(f"fleet RSS MiB after {TOUCHED:,} VMs", rss_after, TARGET_RSS_MIB, False),
        harness.Ratio("fleet/single req/s (c1000)", fleet.requests_per_sec / single.requests_per_sec, TARGET_RATIO,
                      True),
        harness.Ratio("fleet/single p99 (c1000)", fleet.p99_ms / single.p99_ms if single.p99_ms else float("inf"),
                      TARGET_P99_RATIO, False),
    ]
    return result
