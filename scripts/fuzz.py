"""``make fuzz``: a long fuzzing run of both ports of a real ``azimds serve`` (a fleet, manual clock), counting
every answer: valid requests of every kind, and mutated ones (flipped, cut, inserted bytes; broken framing;
odd headers; JSON bodies of every shape). Exits 1 if any answer was a 5xx or the server stopped serving.

    .venv/bin/python scripts/fuzz.py [--requests N] [--threads N] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

FLEET = {"compute": {"name": "first", "tags": {"env": "fuzz"}},
         "identity": {"systemAssigned": True, "userAssigned": [{"name": "app-identity"}]},
         "loadbalancer": {"inboundRules": [{"frontendIpAddress": "20.1.2.3", "protocol": "tcp", "frontendPort": 80,
                                            "backendPort": 8080, "privateIpAddress": "10.0.0.4"}]},
         "fleet": {"vms": [{"addresses": ["127.0.0.2"], "availabilitySet": "db", "compute": {"name": "db-1"}}],
                   "scaleSets": [{"name": "web", "capacity": 1000, "addresses": "127.1.0.0",
                                  "subnet": "10.1.0.0/22"}]}}

METADATA = [
    "/metadata/instance?api-version=2021-02-01", "/metadata/instance/compute?api-version=2025-04-07",
    "/metadata/instance/compute/tags?api-version=2021-02-01&format=text",
    "/metadata/instance/network/interface/0/ipv4/ipAddress/0?api-version=2019-06-01&format=text",
    "/metadata/instance?api-version=2021-08-01&extended=true", "/metadata/versions",
    "/metadata/loadbalancer?api-version=2020-10-01", "/metadata/scheduledevents?api-version=2020-07-01",
    "/metadata/scheduledevents?api-version=2017-08-01",
    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net&client_id=x",
    "/metadata/identity/info?api-version=2018-02-01", "/metadata/attested/document?api-version=2020-09-01",
    "/metadata/attested/document?api-version=2020-09-01&nonce=1234567890", "/metadata", "/metadata/instance",
    "/common/discovery/keys", "/azimds/ca/intermediate.crt",
]
CONTROL = [
    ("GET", "/v1/metadata", None), ("GET", "/v1/metadata/compute/name?vm=web_7", None),
    ("PUT", "/v1/tags?vm=web_{n}", {"n": "{n}"}), ("PUT", "/v1/metadata/compute/userData", "aGVsbG8="),
    ("PATCH", "/v1/metadata", {"compute": {"tags": "a:b"}}), ("DELETE", "/v1/metadata/compute/zone", None),
    ("POST", "/v1/events?vm=web_{n}", {"type": "Freeze", "resources": ["web_{n}"]}),
    ("POST", "/v1/events", {"type": "Preempt", "notice": 5}), ("GET", "/v1/events?vm=db-1", None),
    ("POST", "/v1/clock", {"advance": 3600}), ("GET", "/v1/clock", None), ("POST", "/v1/reset", None),
    ("POST", "/v1/faults", {"path": "/none*", "status": 503, "first": 1}), ("GET", "/v1/faults", None),
    ("GET", "/v1/journal?limit=5", None), ("GET", "/metrics", None), ("POST", "/v1/fleet/walk", {"set": "web"}),
]
SHAPES: list[object] = [None, True, 0, -1, 1e308, "x", "\ud800", [], {}, [[[[]]]], {"type": {"type": None}},
                        "Freeze", ["web_1"], 2 ** 80, "2m", {"compute": None}, {"tags": {"a": {"b": "c"}}}]


def start(profile: Path, state: Path) -> tuple[subprocess.Popen[str], str, str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "azimds", "serve", "--port", "0", "--control-port", "0",
                             "--rate-limit", "0", "--identity-rate-limit", "0", "--identity-concurrency", "0",
                             "--clock", "manual", "--profile", str(profile), "--state-dir", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    ready = proc.stdout.readline()
    control = ""
    while ready and not control.startswith("azimds: control plane"):
        control = proc.stderr.readline()
    metadata_url = re.match(r"azimds: serving (http://[^/]+)/metadata", ready)
    control_url = re.match(r"azimds: control plane (\S+)", control)
    if not metadata_url or not control_url:
        raise SystemExit(f"serve did not start: {ready!r} {control!r}")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    return proc, metadata_url.group(1), control_url.group(1), (state / "control-token").read_text().strip()


class Fuzzer:
    def __init__(self, metadata: str, control: str, token: str, seed: int) -> None:
        self.metadata = _address(metadata)
        self.control = _address(control)
        self.token = token
        self.rng = random.Random(seed)
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.sent = 0
        self.connections: dict[tuple[tuple[str, int], str | None], list[Any]] = {}

    def request(self) -> tuple[tuple[str, int], bytes, str | None, bool]:
        rng = self.rng
        n = str(rng.randrange(1000))
        if rng.random() < 0.85:  # the control plane's changes each wait for a committed write: fewer of them
            path = rng.choice(METADATA)
            method = "POST" if "scheduledevents" in path and rng.random() < 0.3 else "GET"
            body = json.dumps({"StartRequests": [{"EventId": rng.choice(["X", "00000000-0000-4000-8000-0"])}]}
                              if rng.random() < 0.8 else rng.choice(SHAPES)).encode("utf-8", "surrogatepass") \
                if method == "POST" else b""
            headers = ["Metadata: true"] if rng.random() < 0.95 else []
            source = rng.choice([None, "127.0.0.2", f"127.1.{int(n) // 256}.{int(n) % 256}", "127.9.9.9"])
            raw = _request(method, path, headers, body)
            target = self.metadata
        else:
            method, path, payload = rng.choice(CONTROL)
            path = path.replace("{n}", n)
            if rng.random() < 0.3:
                payload = rng.choice(SHAPES)
            body = b"" if payload is None and method in ("GET", "DELETE") else \
                json.dumps(payload).replace("{n}", n).encode("utf-8", "surrogatepass")
            auth = f"Bearer {self.token}" if rng.random() < 0.9 else "Bearer wrong"
            raw = _request(method, path, [f"Authorization: {auth}", "Content-Type: application/json"], body)
            target, source = self.control, None
        mutated = rng.random() < 0.25
        if mutated:
            raw = self.mutate(raw)
        return target, raw, source, mutated

    def mutate(self, raw: bytes) -> bytes:
        rng = self.rng
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            kind = rng.randrange(6)
            at = rng.randrange(len(data) + 1)
            if kind == 0 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif kind == 1:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            elif kind == 2:
                del data[at:at + rng.randint(1, 16)]
            elif kind == 3:
                data = data[:at]
            elif kind == 4:
                data[at:at] = rng.choice([b"\r\n", b"\r\n\r\n", b"Transfer-Encoding: chunked\r\n",
                                          b"Content-Length: 99999\r\n", b"X-Forwarded-For: 1.2.3.4\r\n",
                                          b"Metadata: true\r\nMetadata: true\r\n", b"%", b"?", b"&", b"\x00"])
            else:
                data[at:at] = b"X-Long: " + b"a" * rng.choice([10, 1000, 20000]) + b"\r\n"
        return bytes(data)

    def run(self, count: int, lock: threading.Lock, total: list[int]) -> None:
        while True:
            with lock:
                if total[0] >= count:
                    return
                total[0] += 1
            target, raw, source, mutated = self.request()
            try:
                statuses = _exchange(target, raw, source) if mutated else self.kept(target, source, raw)
            except (OSError, ValueError) as exc:  # counted, and the run goes on
                self.failures.append(f"{type(exc).__name__}: {exc} ({'mutated' if mutated else 'kept'}: "
                                     f"{raw[:160]!r})")
                continue
            self.sent += 1
            for status in statuses:
                self.statuses[status] += 1
                if status >= 500:
                    self.failures.append(f"{status} for {raw[:200]!r}")


    def kept(self, target: tuple[str, int], source: str | None, raw: bytes) -> list[int]:
        """A well-formed request on a kept-alive connection (one per target and source): its status. A kept
        connection the server closed meanwhile (60 s idle) and that answers nothing is retried once on a new one,
        as HTTP clients do."""
        reused = (target, source) in self.connections
        try:
            return self._kept(target, source, raw)
        except ConnectionError as exc:
            gone = str(exc) == "closed before any answer" or isinstance(exc, (ConnectionResetError, BrokenPipeError))
            if not (reused and gone):
                raise
            return self._kept(target, source, raw)

    def _kept(self, target: tuple[str, int], source: str | None, raw: bytes) -> list[int]:
        key = (target, source)
        conn = self.connections.get(key)
        if conn is None:
            sock = socket.create_connection(target, timeout=15, source_address=(source, 0) if source else None)
            conn = self.connections[key] = [sock, b""]
        sock, buffer = conn
        try:
            sock.sendall(raw)
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed" if buffer else "closed before any answer")
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            declared = re.search(rb"Content-Length: (\d+)", head)
            if declared is None and head[9:12] not in (b"204", b"304"):  # these never have a body, nor say so
                raise ValueError(f"an answer without Content-Length: {head[:200]!r}")
            length = int(declared.group(1)) if declared else 0
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                rest += chunk
            conn[1] = rest[length:]
            if b"Connection: close" in head:
                raise ConnectionError("closed")
            return [int(head[9:12])]
        except (OSError, ValueError) as exc:
            sock.close()
            del self.connections[key]
            if isinstance(exc, ConnectionError) and "closed" in str(exc) and b"HTTP/1.1 " in buffer:
                return [int(buffer[9:12])]
            raise


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _request(method: str, target: str, headers: list[str], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: fuzz", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass") + body


def _exchange(address: tuple[str, int], raw: bytes, source: str | None) -> list[int]:
    """One connection: send, half-close, read to the end (the server answers what it got, then closes)."""
    with socket.create_connection(address, timeout=15, source_address=(source, 0) if source else None) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return [int(line[9:12]) for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ") and line[9:12].isdigit()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="azimds-fuzz-") as tmp:
        profile = Path(tmp, "fleet.json")
        profile.write_text(json.dumps(FLEET))
        proc, metadata, control, token = start(profile, Path(tmp, "state"))
        try:
            fuzzers = [Fuzzer(metadata, control, token, args.seed + i) for i in range(args.threads)]
            lock, total = threading.Lock(), [0]
            started = time.monotonic()
            threads = [threading.Thread(target=f.run, args=(args.requests, lock, total)) for f in fuzzers]
            for thread in threads:
                thread.start()
            last = started
            while any(thread.is_alive() for thread in threads):
                time.sleep(0.5)
                if time.monotonic() - last > 15:
                    last = time.monotonic()
                    print(f"  {total[0]:,} requests, {time.monotonic() - started:.0f} s", flush=True)
            elapsed = time.monotonic() - started
            statuses: Counter[int] = sum((f.statuses for f in fuzzers), Counter())
            failures = [failure for f in fuzzers for failure in f.failures]
            sent = sum(f.sent for f in fuzzers)
            alive = _exchange(_address(metadata), _request("GET", "/metadata/versions", ["Metadata: true"], b""),
                              None) == [200] and proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    errors = sum(count for status, count in statuses.items() if status >= 500)
    print(f"fuzz: {sent:,} requests in {elapsed:.0f} s ({sent / elapsed:,.0f}/s), seed {args.seed}, "
          f"{sum(statuses.values()):,} answers: "
          + ", ".join(f"{status} x{count:,}" for status, count in sorted(statuses.items())))
    print(f"fuzz: 5xx answers: {errors}; server alive afterwards: {alive}; other failures: {len(failures) - errors}")
    for failure in failures[:20]:
        print(f"  {failure}")
    return 0 if errors == 0 and alive else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
