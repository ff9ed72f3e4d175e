"""Helpers the tests share: a raw HTTP request, ``azimds serve`` as a subprocess, the ``azimds`` command as a
process or in this process, where the test data lives."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from unittest import mock

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


def control(imds, method: str, path: str, body: object = None, token: str | None = None) -> Reply:
    """A control-plane request over HTTP (JSON body), with the emulator's token unless told another."""
    return fetch(imds.control_url, path, method=method, metadata=False,
                 headers={"Authorization": f"Bearer {imds.token if token is None else token}",
                          "Content-Type": "application/json"},
                 body=None if body is None else json.dumps(body).encode())


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


def azimds_process(*args: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                   timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``azimds ARGS`` as a real process (end to end: start-up, imports, exit code)."""
    return subprocess.run([*AZIMDS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def azimds_inprocess(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``azimds ARGS`` run by ``azimds.cli.main`` in this process, as a fresh process would run it: stdout and
    stderr captured, the exit code returned (argparse's ``SystemExit`` included), ``env`` (when given) as the
    whole environment, help laid out for 80 columns as with a pipe, and the client's process-wide rate limiter
    full again (a new process starts with a full bucket). An exception that escapes ``main`` propagates: a
    process would die of it with a traceback, and the test fails either way."""
    from azimds.cli import main
    from azimds.client import PROCESS_LIMITER

    environment = dict(os.environ if env is None else env)
    environment.setdefault("COLUMNS", "80")
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, environment, clear=True), \
            mock.patch.object(PROCESS_LIMITER, "_tokens", PROCESS_LIMITER.burst), \
            mock.patch.object(PROCESS_LIMITER, "_stamp", PROCESS_LIMITER._clock()), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: object = main(list(args))
        except SystemExit as exit_:
            code = exit_.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # SystemExit("message"): printed, exit 1, as the interpreter does
        err.write(f"{code}\n")
        code = 1
    return subprocess.CompletedProcess(["azimds", *args], code, out.getvalue(), err.getvalue())


def wait_until(condition: Callable[[], object], *, timeout: float, interval: float = 0.005) -> None:
    """Poll ``condition`` until it is true; AssertionError if it is still false after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {condition}")
        time.sleep(interval)


class Keep:
    """One kept-alive HTTP connection (from a chosen source address), opened again when it breaks."""

    def __init__(self, base: str, source_address: str | None = None) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self.host, self.port, self.source = host, int(port), source_address
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10,
                                                       source_address=(self.source, 0) if self.source else None)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                reply = self.conn.getresponse()
                return reply.status, reply.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
