"""Helpers the tests share: a raw HTTP request, ``azimds serve`` as a subprocess, where the test data lives."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
AZIMDS = [sys.executable, "-m", "azimds"]


class Reply:
    """A response as read off the socket: status, headers (lower-case names) and raw body bytes."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:80]!r}>"


def fetch(base: str, path: str, *, headers: dict[str, str] | None = None, method: str = "GET",
          body: bytes | None = None, source: str | None = None, metadata: bool = True) -> Reply:
    """One request on a fresh connection (optionally from a chosen 127.x source address)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        all_headers = {"Metadata": "true"} if metadata else {}
        all_headers.update(headers or {})
        conn.request(method, path, body=body, headers=all_headers)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class ServeProcess:
    """`azimds serve` as a subprocess, with its URL read from the ready line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, state_dir: str | None = None):
        defaults = []
        if "--control-port" not in args:
            defaults += ["--control-port", "0"]
        if "--state-dir" not in args:
            self.tmp = tempfile.TemporaryDirectory(prefix="azimds-state-")
            defaults += ["--state-dir", self.tmp.name]
        self.proc = subprocess.Popen([*AZIMDS, "serve", "--port", "0", *defaults, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()  # blocks until ready (or the process exits)
        match = re.fullmatch(r"azimds: serving (http://[^/]+)/metadata\n", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"serve did not start: {line!r} {self.proc.stderr.read()}")
        self.url = match.group(1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=10)
