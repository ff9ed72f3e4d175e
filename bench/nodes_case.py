"""The nodes case of `make bench`: what keeping the world in PostgreSQL costs and how fast nodes agree.

Two figures, each against a reference measured in the same run:

- the instance request answered by a node whose state is in PostgreSQL (``--state postgresql://…``) against the
  same emulator on its SQLite state directory, both on core 0 with wrk on core 1 (target ≥ 0.95×: the request
  path reads memory in both, so the engine should not show);
- propagation between two nodes on one database: a tag change acknowledged by node A's control plane, then read
  by the VM from node B as fast as it asks (every 0.5 ms); the delay from the acknowledgement to the first answer
  that shows it, over CHANGES changes (target p99 ≤ 100 ms).

The database is a private PostgreSQL cluster started from the machine's binaries (as the tests do); a machine
without them skips the case, saying so.
"""

from __future__ import annotations

import json
import re
import signal
import statistics
import sys
import time
from typing import Any

CHANGES = 200
TOKEN = "bench-token"
TARGET_RPS_RATIO = 0.95
TARGET_P99_MS = 100.0
TAGS = "/metadata/instance/compute/tags?api-version=2021-02-01&format=text"


def cluster(harness: Any) -> Any:
    """A started private PostgreSQL cluster (tests/support_postgres.py), or a BenchError saying why not."""
    sys.path.insert(0, str(harness.ROOT))
    from tests.support_postgres import PostgresCluster, find_binaries

    binaries = find_binaries()
    if binaries is None:
        raise harness.BenchError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): make sysdeps")
    try:
        return PostgresCluster(binaries)
    except BaseException as exc:  # noqa: BLE001 - pytest.skip() too (no postgres user to run it as)
        raise harness.BenchError(f"cannot start PostgreSQL: {exc}") from None


def control_url(harness: Any, ctx: Any, label: str) -> str:
    log = ctx.workdir / f"{label}.err"
    found = re.search(r"^azimds: control plane (\S+)", log.read_text(), re.MULTILINE)
    if not found:
        raise harness.BenchError(f"{label} printed no control-plane line:\n{harness.tail(log)}")
    return found.group(1)


def propagation(harness: Any, ctx: Any, url: str) -> list[float]:
    """Delays (seconds) of CHANGES tag changes made on node A until node B's answer shows them."""
    sys.path.insert(0, str(harness.ROOT))
    from tests.support import Keep  # the tests' kept-alive client

    common = ["--state", url, "--control-token", TOKEN, "--clock", "manual"]
    procs = []
    try:
        for name in ("node-a", "node-b"):
            proc, base = harness.start_azimds(ctx, name, [
                "--state-dir", str(ctx.workdir / f"{name}-state"), "--control-port", "0", "--node", name, *common])
            procs.append((proc, base, control_url(harness, ctx, name)))
        (_, _, control_a), (_, metadata_b, _) = procs
        writer, reader = Keep(control_a), Keep(metadata_b)
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        delays = []
        for i in range(CHANGES):
            status, body = writer.request("PUT", "/v1/tags", json.dumps({"n": str(i)}).encode(), auth)
            acknowledged = time.perf_counter()
            if status != 200:
                raise harness.BenchError(f"node A refused the tag change: {status} {body[:200]!r}")
            expected = f"n:{i}".encode()
            while True:
                status, body = reader.request("GET", TAGS, headers={"Metadata": "true"})
                if body == expected:
                    delays.append(time.perf_counter() - acknowledged)
                    break
                if time.perf_counter() - acknowledged > 5.0:
                    raise harness.BenchError(f"change {i} not seen on node B within 5 s (last answer {body!r})")
                time.sleep(0.0005)
        return delays
    finally:
        for proc, _, _ in procs:
            harness.stop(proc)


def case(harness: Any, ctx: Any) -> Any:
    result = harness.CaseResult("nodes")
    pg = cluster(harness)
    try:
        path = f"{harness.INSTANCE_PATH}?{harness.INSTANCE_QUERY}"
        body = harness.instance_bytes(ctx, path)
        procs = []
        try:
            proc, sqlite_base = harness.start_azimds(ctx, "sqlite")
            procs.append(proc)
            proc, postgres_base = harness.start_azimds(ctx, "postgres", [
                "--state-dir", str(ctx.workdir / "postgres-state"), "--control-port", "0",
                "--state", pg.create_database("bench"), "--node", "bench"])
            procs.append(proc)
            result.rows = harness.measure_same_bytes_in_turns(ctx, [
                harness.Target("sqlite", sqlite_base + path, procs[0].pid),
                harness.Target("postgres", postgres_base + path, procs[1].pid)], body)
        finally:
            for proc in procs:
                harness.stop(proc, signal.SIGTERM)
        sqlite, postgres = result.rows
        if not sqlite.requests_per_sec:
            raise harness.BenchError(f"the SQLite node gave nothing to compare with: {sqlite}")
        delays = sorted(propagation(harness, ctx, pg.create_database("bench")))
    finally:
        pg.destroy()
    p50, p99 = statistics.median(delays) * 1000, delays[int(0.99 * len(delays)) - 1] * 1000
    print(f"  propagation from node A to node B over {len(delays)} tag changes: p50 {p50:.2f} ms, "
          f"p99 {p99:.2f} ms, max {delays[-1] * 1000:.2f} ms")
    result.ratios = [
        harness.Ratio("postgres/sqlite node req/s", postgres.requests_per_sec / sqlite.requests_per_sec,
                      TARGET_RPS_RATIO, True),
        harness.Ratio("postgres/sqlite node p99 (info)", postgres.p99_ms / sqlite.p99_ms if sqlite.p99_ms else 0.0,
                      float("inf"), False),
        harness.Ratio("propagation p50 ms (info)", p50, float("inf"), False),
        harness.Ratio("propagation p99 ms", p99, TARGET_P99_MS, False),
    ]
    return result
