"""Benchmarks that hold the emulator to its promise: about as fast as a static file server.

The HTTP core was written on the raw transport so that a test suite hammering /metadata never waits on
the emulator. This script measures that, rather than assuming it: each *case* runs azimds and a
reference (nginx serving the same bytes as a static file) under the same load, on the same core, and
checks the ratios against the targets. ``make bench`` runs it.

Cases are plain functions in ``CASES``; add one (a CLI start-up case, token or attested documents, a
fleet of VMs) by writing a function that takes a ``Context`` and returns a ``CaseResult``.

Servers run pinned to core 0 and the load generator (wrk) to core 1, so that neither steals the
other's CPU; a run during which other processes used CPU (a test suite, say) is flagged as unreliable,
since on a two-core machine that noise easily halves one server's figures. A machine without wrk, nginx or
taskset skips the cases that need them, says which tool is
missing, and exits 0. Otherwise the exit code is 0 when every run was valid and every target was met,
1 if not. Results are also written to ``bench/out/results.json``, and wrk's reports beside it.

    .venv/bin/python bench/run.py [--only NAME] [--duration SECONDS | --quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
RESULTS_FILE = OUT_DIR / "results.json"

HOST = "127.0.0.1"
NEWEST_API_VERSION = "2025-04-07"
INSTANCE_PATH = "/metadata/instance"
INSTANCE_QUERY = f"api-version={NEWEST_API_VERSION}"
TOKEN_PATH = "/metadata/identity/oauth2/token"
TOKEN_QUERY = "api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
ATTESTED_PATH = "/metadata/attested/document"
ATTESTED_QUERY = "api-version=2020-09-01&nonce=1234567890"
METADATA_HEADER = ("Metadata", "true")
BENCH_RATE_LIMIT = "1000000000"  # the limiter stays in the request path, but never says no

SERVER_CORE = "0"
CLIENT_CORE = "1"
WRK_THREADS = 1
WRK_CONNECTIONS = 50
WARMUP_SECONDS = 2
DEFAULT_SECONDS = 10
QUICK_SECONDS = 3

MANY_CONNECTIONS = 1000  # the c1000 case: the concurrency a fleet brings
MIN_RPS_RATIO = 0.75  # azimds req/s over nginx req/s, at least
MANY_MIN_RPS_RATIO = 0.9  # the same at MANY_CONNECTIONS
TOKEN_MIN_RATIO = 0.8  # a cached token request's req/s over the instance request's, at least
ATTESTED_MIN_RATIO = 0.6  # an attested document (fixed nonce) over the instance request, at least
MAX_P99_RATIO = 2.00  # azimds p99 latency over nginx p99 latency, at most
MAX_OTHER_CPU = 0.05  # share of a core other processes may use while measuring before a warning
#: Servers compared in one case are measured in turns, this many times each, and each one's median taken: noise
#: from outside (another guest on the host) comes and goes, and turns spread it over every server alike where
#: one long run each would hand it to whichever ran at the time.
ROUNDS = 3
MIN_TURN_SECONDS = 2

START_TIMEOUT = 15.0  # seconds for a server to come up
STOP_TIMEOUT = 10.0  # seconds for a server to exit after SIGTERM/SIGQUIT, before SIGKILL
FETCH_TIMEOUT = 5.0
WRK_SLACK = 30.0  # seconds wrk may run past its -d before it is killed

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
LATENCY_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


class BenchError(Exception):
    """A case could not be measured (a server did not start, a check failed); the message says why."""


# -- values ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    duration: int
    warmup: int = WARMUP_SECONDS


@dataclass(frozen=True)
class Context:
    """What a case gets: the settings, where the tools are, a scratch directory (deleted after the case)
    and a directory under bench/out/ for what is worth keeping (wrk's reports)."""

    settings: Settings
    tools: dict[str, str]
    workdir: Path
    outdir: Path


@dataclass(frozen=True)
class WrkResult:
    pid: int  # wrk's, so its CPU time is not taken for interference
    requests_per_sec: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    output: str

    @property
    def problems(self) -> list[str]:
        found = []
        if self.requests == 0:
            found.append("no requests completed")
        if self.non_2xx:
            found.append(f"{self.non_2xx} non-2xx/3xx responses")
        errors = {kind: n for kind, n in self.socket_errors.items() if n}
        if errors:
            found.append("socket errors: " + ", ".join(f"{kind} {n}" for kind, n in errors.items()))
        return found


@dataclass(frozen=True)
class Row:
    server: str
    requests_per_sec: float
    p99_ms: float
    problems: list[str] = field(default_factory=list)  # any makes the run invalid
    warnings: list[str] = field(default_factory=list)  # figures to take with care (a busy machine)

    @property
    def valid(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Ratio:
    label: str
    value: float
    target: float
    higher_is_better: bool

    @property
    def passed(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return f"{self.label} = {self.value:.2f} (target {op} {self.target:.2f}) {'PASS' if self.passed else 'FAIL'}"


@dataclass
class CaseResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    skipped: str | None = None  # why the case did not run
    error: str | None = None  # why it ran but could not be measured

    @property
    def valid(self) -> bool:
        return self.skipped is None and self.error is None and all(row.valid for row in self.rows)

    @property
    def ok(self) -> bool:
        """Skipped counts as fine (machine without the tools); anything measured must be valid and pass."""
        if self.skipped is not None:
            return True
        return self.valid and all(ratio.passed for ratio in self.ratios)


@dataclass(frozen=True)
class Case:
    name: str
    summary: str
    needs: tuple[str, ...]  # tools (keys of find_tools()) without which the case is skipped
    run: Callable[[Context], CaseResult]


# -- tools and processes -------------------------------------------------------------------------------


def find_tools() -> dict[str, str]:
    """Absolute paths of the external tools that were found; a missing tool has no key."""
    found: dict[str, str] = {}
    for tool in ("wrk", "taskset"):
        path = shutil.which(tool)
        if path:
            found[tool] = path
    nginx = shutil.which("nginx") or next((p for p in NGINX_CANDIDATES if os.access(p, os.X_OK)), None)
    if nginx:
        found["nginx"] = nginx
    return found


def azimds_command() -> list[str]:
    """The console script beside this interpreter (as ``make`` installs it), else ``python -m azimds``."""
    script = Path(sys.executable).parent / "azimds"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "azimds"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pinned(tools: dict[str, str], core: str, command: Sequence[str]) -> list[str]:
    return [tools["taskset"], "-c", core, *command]


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Ask a child to exit with ``sig``; kill it if it has not within STOP_TIMEOUT. Safe to call twice."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"bench: pid {proc.pid} ignored signal {sig} for {STOP_TIMEOUT:.0f}s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def fetch(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=dict([METADATA_HEADER]))
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start_azimds(ctx: Context, label: str, extra: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """Start azimds on core 0 on a port of its choosing, with ``extra`` serve options; returns the process
    and its base URL. Its state and control plane are private to the case (a temp state dir, any port)."""
    log_out, log_err = ctx.workdir / f"{label}.out", ctx.workdir / f"{label}.err"
    private = [] if "--state-dir" in extra else ["--state-dir", str(ctx.workdir / f"{label}-state"),
                                                  "--control-port", "0"]
    command = pinned(ctx.tools, SERVER_CORE, [*azimds_command(), "serve", "--host", HOST, "--port", "0",
                                               "--rate-limit", BENCH_RATE_LIMIT, *private, *extra])
    with open(log_out, "wb") as out, open(log_err, "wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        return proc, wait_for_ready_line(proc, log_out, log_err)
    except BaseException:
        stop(proc)
        raise


def wait_for_ready_line(proc: subprocess.Popen[bytes], log_out: Path, log_err: Path) -> str:
    """The base URL from ``azimds: serving http://HOST:PORT/metadata``, once azimds has printed it."""
    pattern = re.compile(r"^azimds: serving (http://\S+?)/metadata\s*$", re.MULTILINE)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = pattern.search(log_out.read_text(errors="replace"))
        if match:
            return match.group(1)
        if proc.poll() is not None:
            raise BenchError(f"azimds exited with {proc.returncode} before it was ready:\n{tail(log_err)}")
        time.sleep(0.05)
    raise BenchError(f"azimds did not say it was serving within {START_TIMEOUT:.0f}s:\n{tail(log_err)}")


def nginx_config(workdir: Path, docroot: Path, port: int) -> str:
    """One process, one worker, everything under ``workdir``; serves the file whatever the query string."""
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {workdir / ('nginx-' + kind)};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}daemon off;
master_process off;
worker_processes 1;
pid {workdir / 'nginx.pid'};
error_log {workdir / 'nginx-error.log'} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;  # azimds has no such limit: don't make wrk reconnect
{temp}
    server {{
        listen {HOST}:{port} backlog=4096;
        root {docroot};
        location = {INSTANCE_PATH} {{
            types {{ }}
            default_type application/json;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


def start_nginx(ctx: Context, body: bytes) -> tuple[subprocess.Popen[bytes], str]:
    """Start nginx on core 0 serving ``body`` at INSTANCE_PATH; returns the process and its base URL."""
    docroot = ctx.workdir / "www"
    target = docroot / INSTANCE_PATH.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)
    port = free_port()
    conf = ctx.workdir / "nginx.conf"
    conf.write_text(nginx_config(ctx.workdir, docroot, port))
    log = ctx.workdir / "nginx.stderr"
    command = pinned(ctx.tools, SERVER_CORE, [ctx.tools["nginx"], "-p", str(ctx.workdir), "-c", str(conf),
                                               "-e", str(ctx.workdir / "nginx-error.log")])
    with open(log, "wb") as err:
        proc = subprocess.Popen(command, stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(proc, port, lambda: tail(log) + "\n" + tail(ctx.workdir / "nginx-error.log"))
        return proc, f"http://{HOST}:{port}"
    except BaseException:
        stop(proc, signal.SIGQUIT)
        raise


def wait_for_port(proc: subprocess.Popen[bytes], port: int, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} before it was ready:\n{logs()}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listening on port {port} after {START_TIMEOUT:.0f}s:\n{logs()}")


# -- wrk -----------------------------------------------------------------------------------------------


def run_wrk(ctx: Context, url: str, seconds: int, connections: int = WRK_CONNECTIONS,
            env: dict[str, str] | None = None) -> WrkResult:
    """One wrk run on core 1 against ``url`` with ``connections`` connections (``env`` added to its environment),
    parsed. Beyond the default connections, wrk's timeout is 10 s, so a connection left waiting shows in p99
    rather than as an error."""
    timeout = ["--timeout", "10s"] if connections > WRK_CONNECTIONS else []
    command = pinned(ctx.tools, CLIENT_CORE, [
        ctx.tools["wrk"], f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", *timeout, "--latency",
        "-H", f"{METADATA_HEADER[0]}: {METADATA_HEADER[1]}", url])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env={**os.environ, **env} if env else None)
    try:
        stdout, stderr = proc.communicate(timeout=seconds + WRK_SLACK)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {seconds + WRK_SLACK:.0f}s") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
    if proc.returncode != 0:
        raise BenchError(f"wrk exited with {proc.returncode}:\n{stdout}{stderr}")
    return parse_wrk(stdout, proc.pid)


def parse_wrk(output: str, pid: int = 0) -> WrkResult:
    """Requests/sec, the 99% latency (in ms), the request count and the error counts of wrk --latency."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    if not (rps and p99 and total):
        raise BenchError(f"could not parse wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True)) \
        if sockets else {}
    return WrkResult(
        pid=pid,
        requests_per_sec=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * LATENCY_UNITS_MS[p99.group(2)],
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=errors,
        output=output,
    )


@dataclass(frozen=True)
class Target:
    """A server (and URL) to measure in turns with others."""

    server: str  # its row's name
    url: str
    pid: int
    env: dict[str, str] | None = None  # added to wrk's environment


def measure_in_turns(ctx: Context, targets: Sequence[Target], connections: int = WRK_CONNECTIONS) -> list[Row]:
    """Warm each target up, then measure them in turns, ROUNDS times each (the case's duration shared among the
    turns): each row has the median req/s and the median p99 of its turns, and every problem any turn had."""
    for target in targets:
        run_wrk(ctx, target.url, ctx.settings.warmup, connections, target.env)
    seconds = max(MIN_TURN_SECONDS, round(ctx.settings.duration / ROUNDS))
    servers = {os.getpid(), *(target.pid for target in targets)}
    turns: dict[str, list[tuple[WrkResult, list[str]]]] = {target.server: [] for target in targets}
    for _ in range(ROUNDS):
        for target in targets:
            before = process_cpu_seconds()
            result = run_wrk(ctx, target.url, seconds, connections, target.env)
            others = other_cpu_seconds(before, process_cpu_seconds(), servers | {result.pid})
            turns[target.server].append((result, interference(others, seconds)))
    rows = []
    for target in targets:
        done = turns[target.server]
        (ctx.outdir / f"wrk-{target.server.replace(' ', '-')}.txt").write_text(
            "\n".join(result.output for result, _ in done))
        rows.append(Row(target.server, statistics.median(result.requests_per_sec for result, _ in done),
                        statistics.median(result.p99_ms for result, _ in done),
                        list(dict.fromkeys(problem for result, _ in done for problem in result.problems)),
                        list(dict.fromkeys(warning for _, warnings in done for warning in warnings))))
    return rows


# -- interference: the two cores are meant to be ours alone while measuring ------------------------------


def process_cpu_seconds() -> dict[int, tuple[str, float]]:
    """Every process's name and CPU time (user + system, all threads) so far, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, _, rest = text.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        found[int(stat.parent.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return found


def other_cpu_seconds(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                      ours: set[int]) -> dict[str, float]:
    """CPU seconds used between the two snapshots by processes not in ``ours``, by name."""
    used: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        delta = seconds - before.get(pid, (name, 0.0))[1]
        if pid not in ours and delta > 0:
            used[name] = used.get(name, 0.0) + delta
    return used


def interference(others: dict[str, float], seconds: int) -> list[str]:
    total = sum(others.values())
    if total <= MAX_OTHER_CPU * seconds:
        return []
    top = ", ".join(f"{name} {used:.1f}s" for name, used in sorted(others.items(), key=lambda kv: -kv[1])[:3])
    message = (f"other processes used {total:.1f} CPU-seconds during the {seconds}s run ({top}); "
               "the machine was not quiet, so these figures are unreliable")
    return [message]


def compare(rows: list[Row], subject: str, reference: str) -> list[Ratio]:
    """The two target ratios of ``subject`` against ``reference``."""
    by_name = {row.server: row for row in rows}
    ours, theirs = by_name[subject], by_name[reference]
    if not (theirs.requests_per_sec and theirs.p99_ms):
        raise BenchError(f"{reference} gave nothing to compare with: {theirs}")
    return [
        Ratio(f"{subject}/{reference} req/s", ours.requests_per_sec / theirs.requests_per_sec, MIN_RPS_RATIO, True),
        Ratio(f"{subject}/{reference} p99", ours.p99_ms / theirs.p99_ms, MAX_P99_RATIO, False),
    ]


# -- cases ---------------------------------------------------------------------------------------------


def instance_case(ctx: Context) -> CaseResult:
    """The full instance document at the newest api-version: azimds against nginx serving its bytes."""
    result = CaseResult("instance")
    url_path = f"{INSTANCE_PATH}?{INSTANCE_QUERY}"
    body = instance_bytes(ctx, url_path)
    print(f"  reference body: {len(body)} bytes")

    nginx, nginx_base = start_nginx(ctx, body)
    ours: subprocess.Popen[bytes] | None = None
    try:
        ours, base = start_azimds(ctx, "azimds")
        targets = [Target("nginx", nginx_base + url_path, nginx.pid), Target("azimds", base + url_path, ours.pid)]
        result.rows = measure_same_bytes_in_turns(ctx, targets, body)
    finally:
        stop(ours)
        stop(nginx, signal.SIGQUIT)
    result.ratios = compare(result.rows, "azimds", "nginx")
    return result


def measure_same_bytes_in_turns(ctx: Context, targets: Sequence[Target], body: bytes,
                                connections: int = WRK_CONNECTIONS) -> list[Row]:
    """Check every target answers ``body``, then measure them in turns."""
    for target in targets:
        status, served = fetch(target.url)
        if status != 200 or served != body:
            raise BenchError(f"{target.server} answered {status} with {len(served)} bytes, not 200 with the same "
                             f"{len(body)} bytes")
        print(f"  {target.server:7} {target.url} (pid {target.pid})")
    return measure_in_turns(ctx, targets, connections)


def many_connections_case(ctx: Context) -> CaseResult:
    """The instance case at MANY_CONNECTIONS connections from one address, opened at once by wrk: nginx (one
    worker, backlog 4096), azimds on uvloop, azimds on asyncio's loop (information: the loop azimds runs on by
    default must be the faster one)."""
    result = CaseResult("c1000")
    url_path = f"{INSTANCE_PATH}?{INSTANCE_QUERY}"
    body = instance_bytes(ctx, url_path)
    nginx, nginx_base = start_nginx(ctx, body)
    ours: list[subprocess.Popen[bytes]] = []
    try:
        targets = [Target("nginx", nginx_base + url_path, nginx.pid)]
        for loop in ("uvloop", "asyncio"):
            proc, base = start_azimds(ctx, f"azimds-{loop}", ["--loop", loop])
            ours.append(proc)
            targets.append(Target(f"azimds-{loop}", base + url_path, proc.pid))
        result.rows = measure_same_bytes_in_turns(ctx, targets, body, MANY_CONNECTIONS)
    finally:
        for proc in ours:
            stop(proc)
        stop(nginx, signal.SIGQUIT)
    by_name = {row.server: row for row in result.rows}
    nginx, uv, plain = by_name["nginx"], by_name["azimds-uvloop"], by_name["azimds-asyncio"]
    if not (nginx.requests_per_sec and nginx.p99_ms and uv.requests_per_sec and uv.p99_ms):
        raise BenchError(f"nothing to compare with: {nginx}, {uv}")
    result.ratios = [
        Ratio("azimds/nginx req/s (c1000)", uv.requests_per_sec / nginx.requests_per_sec, MANY_MIN_RPS_RATIO, True),
        Ratio("azimds/nginx p99 (c1000)", uv.p99_ms / nginx.p99_ms, MAX_P99_RATIO, False),
        Ratio("asyncio/uvloop req/s (info)", plain.requests_per_sec / uv.requests_per_sec, float("inf"), False),
        Ratio("asyncio/uvloop p99 (info)", plain.p99_ms / uv.p99_ms, 0.0, True),
    ]
    return result


def instance_bytes(ctx: Context, url_path: str) -> bytes:
    """The document exactly as azimds serves it, from a short-lived azimds."""
    proc, base = start_azimds(ctx, "azimds-fetch")
    try:
        status, body = fetch(base + url_path)
    finally:
        stop(proc)
    if status != 200:
        raise BenchError(f"azimds answered {status} to {url_path}: {body[:200]!r}")
    return body


def cli_case(ctx: Context) -> CaseResult:
    """`azimds tags KEY` end to end (median wall time) beside curl for the same request and `python -c pass`."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import cli_case as cli  # bench/cli_case.py

    figures = cli.run(runs=20 if ctx.settings.duration >= 10 else 10)
    print(cli._table(figures))
    result = CaseResult("cli")
    result.ratios.append(Ratio("azimds tags median ms", float(figures["azimds_tags_ms"]), cli.TARGET_MS, False))
    if figures.get("curl_ms"):
        result.ratios.append(Ratio("azimds tags / curl (info)", float(figures["azimds_over_curl"]), float("inf"),
                                   False))
    result.ratios.append(Ratio("azimds tags / python -c pass", float(figures["azimds_over_python"]),
                               cli.TARGET_OVER_PYTHON, False))
    return result


def identity_attested_case(ctx: Context) -> CaseResult:
    """A cached managed-identity token and an attested document (a fixed nonce) beside the instance document,
    all three from one azimds with every limit off (targets: token >= 0.8x, attested >= 0.6x the instance
    request). Then a flood of attested documents with a fresh nonce each (an RSA signature each) at the same
    time as instance requests on 10 other connections: the flood's req/s and the instance requests' p99 beside
    it, against their p99 alone (reported)."""
    result = CaseResult("identity-attested")
    state_dir = ctx.workdir / "state"
    state_dir.mkdir()
    proc, base = start_azimds(ctx, "azimds", [
        "--identity-rate-limit", BENCH_RATE_LIMIT, "--identity-concurrency", "0",
        "--state-dir", str(state_dir), "--control-port", "0"])
    try:
        print(f"  azimds  {base} (pid {proc.pid})")
        urls = {
            "instance": f"{base}{INSTANCE_PATH}?{INSTANCE_QUERY}",
            "token": f"{base}{TOKEN_PATH}?{TOKEN_QUERY}",
            "attested": f"{base}{ATTESTED_PATH}?{ATTESTED_QUERY}",
        }
        check_json(urls["instance"], "compute")
        first = check_json(urls["token"], "access_token")
        again = check_json(urls["token"], "access_token")
        if again["access_token"] != first["access_token"]:
            raise BenchError("azimds issued a new token for the second request: the token cache is not in use, "
                             "so 'token' would not measure a cached token")
        check_json(urls["attested"], "signature")
        result.rows += measure_in_turns(ctx, [Target(name, url, proc.pid) for name, url in urls.items()])
        alone, flood, beside = fresh_nonces(ctx, base)
        result.rows += [alone, flood, beside]
    finally:
        stop(proc)

    by_name = {row.server: row for row in result.rows}
    reference = by_name["instance"].requests_per_sec
    if not reference:
        raise BenchError(f"the instance request gave nothing to compare with: {by_name['instance']}")
    for name, target in (("token", TOKEN_MIN_RATIO), ("attested", ATTESTED_MIN_RATIO)):
        result.ratios.append(Ratio(f"{name}/instance req/s", by_name[name].requests_per_sec / reference, target,
                                   True))
    result.ratios += [
        Ratio("fresh-nonce attested req/s (info)", flood.requests_per_sec, 0.0, True),
        Ratio("instance p99 ms beside the fresh-nonce flood (info)", beside.p99_ms, float("inf"), False),
        Ratio("instance p99 beside the flood / alone (info)", beside.p99_ms / alone.p99_ms if alone.p99_ms else 0.0,
              float("inf"), False),
    ]
    return result


FRESH_NONCE_SCRIPT = """-- a fresh nonce on every request: every answer is a new RSA signature
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "%s?api-version=2020-09-01&nonce=n" .. counter)
end
"""


def fresh_nonces(ctx: Context, base: str) -> tuple[Row, Row, Row]:
    """Instance requests on 10 connections alone; then the same beside 50 connections asking for attested
    documents with a fresh nonce each, both wrk on core 1 at once."""
    script = ctx.workdir / "fresh-nonce.lua"
    script.write_text(FRESH_NONCE_SCRIPT % ATTESTED_PATH)
    header = ["-H", f"{METADATA_HEADER[0]}: {METADATA_HEADER[1]}"]
    instance_url = f"{base}{INSTANCE_PATH}?{INSTANCE_QUERY}"

    def wrk(connections: int, extra: list[str], url: str) -> subprocess.Popen[str]:
        command = pinned(ctx.tools, CLIENT_CORE, [ctx.tools["wrk"], "-t1", f"-c{connections}",
                                                  f"-d{ctx.settings.duration}s", "--latency", *header, *extra, url])
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(proc: subprocess.Popen[str], label: str) -> Row:
        out, err = proc.communicate(timeout=ctx.settings.duration + WRK_SLACK)
        if proc.returncode != 0:
            raise BenchError(f"wrk ({label}) exited with {proc.returncode}: {err}")
        parsed = parse_wrk(out, proc.pid)
        (ctx.outdir / f"wrk-{label.replace(' ', '-')}.txt").write_text(out)
        return Row(label, parsed.requests_per_sec, parsed.p99_ms, parsed.problems)

    alone = result(wrk(10, [], instance_url), "instance c10 alone")
    flood_proc = wrk(50, ["-s", str(script)], base + ATTESTED_PATH)
    beside = result(wrk(10, [], instance_url), "instance c10 beside")
    flood = result(flood_proc, "attested fresh nonces")
    return alone, flood, beside


def check_json(url: str, key: str) -> dict[str, object]:
    """The JSON object at ``url``, which must answer 200 with ``key`` among its keys."""
    status, body = fetch(url)
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if status != 200 or not isinstance(document, dict) or key not in document:
        raise BenchError(f"azimds answered {status} to {url}, not 200 with a JSON object with {key!r}: "
                         f"{body[:300]!r}")
    return document


CASES: tuple[Case, ...] = (
    Case("instance", f"GET {INSTANCE_PATH}?{INSTANCE_QUERY} vs nginx static file", ("wrk", "nginx", "taskset"),
         instance_case),
    Case("identity-attested", f"a cached {TOKEN_PATH} and {ATTESTED_PATH} vs {INSTANCE_PATH}, one azimds (info)",
         ("wrk", "taskset"), identity_attested_case),
    Case("cli", "azimds tags KEY end to end vs curl and python -c pass", (), cli_case),
    Case("c1000", f"GET {INSTANCE_PATH}?{INSTANCE_QUERY} at {MANY_CONNECTIONS} connections: azimds (uvloop, then "
         "asyncio's loop) vs nginx", ("wrk", "nginx", "taskset"), lambda ctx: many_connections_case(ctx)),
    Case("fleet", "1,000,000 VMs: start-up, memory after 10,000, req/s over 1,000 source addresses vs one VM",
         ("wrk", "taskset"), lambda ctx: fleet_case(ctx)),
    Case("workers", f"--workers 2 vs one process, {INSTANCE_PATH} from 50 source addresses, both unpinned",
         ("wrk", "taskset"), lambda ctx: workers_case(ctx)),
    Case("nodes", f"{INSTANCE_PATH} from a node on PostgreSQL vs on SQLite; propagation between two nodes",
         ("wrk", "taskset"), lambda ctx: nodes_case(ctx)),
)


def fleet_case(ctx: Context) -> CaseResult:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fleet_case as fleet  # bench/fleet_case.py

    return fleet.case(sys.modules[__name__], ctx)


def workers_case(ctx: Context) -> CaseResult:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import workers_case as workers  # bench/workers_case.py

    result: CaseResult = workers.case(sys.modules[__name__], ctx)
    return result


def nodes_case(ctx: Context) -> CaseResult:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import nodes_case as nodes  # bench/nodes_case.py

    result: CaseResult = nodes.case(sys.modules[__name__], ctx)
    return result


# -- running and reporting -----------------------------------------------------------------------------


def run_case(case: Case, settings: Settings, tools: dict[str, str]) -> CaseResult:
    missing = [tool for tool in case.needs if tool not in tools]
    if missing:
        return CaseResult(case.name, skipped=f"missing {', '.join(missing)} (run `make sysdeps` to install)")
    print(f"== {case.name}: {case.summary} ({settings.duration}s runs after {settings.warmup}s warm-up)")
    outdir = OUT_DIR / case.name
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"azimds-bench-{case.name}-") as workdir:
        try:
            return case.run(Context(settings, tools, Path(workdir), outdir))
        except BenchError as exc:
            return CaseResult(case.name, error=str(exc))


def report(result: CaseResult) -> None:
    if result.skipped is not None:
        print(f"== {result.name}: SKIPPED, {result.skipped}; nothing measured")
        return
    if result.error is not None:
        print(f"\n!!! {result.name}: INVALID, could not measure:\n{result.error}\n")
        return
    print(f"\n{'server':<10} {'req/s':>12} {'p99 ms':>10}")
    for row in result.rows:
        print(f"{row.server:<10} {row.requests_per_sec:>12,.0f} {row.p99_ms:>10.2f}")
    for row in result.rows:
        for problem in row.problems:
            print(f"!!! INVALID RUN: {row.server}: {problem}")
        for warning in row.warnings:
            print(f"!!! WARNING: {row.server}: {warning}")
    print()
    for ratio in result.ratios:
        print(ratio.line())
    if not result.valid:
        print(f"!!! {result.name}: the run above is INVALID (errors during measurement); do not trust its figures")
    print()


def environment(tools: dict[str, str]) -> dict[str, object]:
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tools": tools,
        "server_core": SERVER_CORE,
        "client_core": CLIENT_CORE,
        "wrk": {"threads": WRK_THREADS, "connections": WRK_CONNECTIONS},
    }


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def case_json(result: CaseResult) -> dict[str, object]:
    return {
        "name": result.name,
        "skipped": result.skipped,
        "error": result.error,
        "valid": result.valid,
        "ok": result.ok,
        "rows": [{**asdict(row), "valid": row.valid} for row in result.rows],
        "ratios": [{**asdict(ratio), "passed": ratio.passed, "line": ratio.line()} for ratio in result.ratios],
    }


def write_results(results: list[CaseResult], settings: Settings, tools: dict[str, str]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    document = {"settings": asdict(settings), "environment": environment(tools),
                "cases": [case_json(result) for result in results]}
    RESULTS_FILE.write_text(json.dumps(document, indent=2) + "\n")
    return RESULTS_FILE


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="cases:\n" + "\n".join(f"  {c.name:<18} {c.summary}" for c in CASES))
    parser.add_argument("--only", metavar="NAME", choices=[case.name for case in CASES],
                        help="run just this case")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--duration", metavar="SECONDS", type=int, default=DEFAULT_SECONDS,
                        help=f"length of each measured run (default: {DEFAULT_SECONDS})")
    length.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS}s runs")
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(duration=QUICK_SECONDS if args.quick else args.duration)
    tools = find_tools()
    cases = [case for case in CASES if args.only in (None, case.name)]
    results = []
    for case in cases:
        result = run_case(case, settings, tools)
        report(result)
        results.append(result)
    if all(result.skipped is not None for result in results):
        print("bench: nothing was measured on this machine (see above for what is missing)")
        return 0
    print(f"results written to {write_results(results, settings, tools).relative_to(ROOT)}")
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
