"""The client keeps its deadline while an answer trickles in, never reads a huge answer into memory, refuses an
empty endpoint, and tells a user why it is waiting (-v for every attempt; a terminal once, after 3 s)."""

from __future__ import annotations

import os
import pty
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from azimds import Emulator
from azimds.client import Client, ImdsUnavailable
from azimds.errors import UsageError
from tests.support import AZIMDS


def serve_raw(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A server that answers every connection with ``answer``; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_answer, args=(conn,), daemon=True).start()

    def _answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            try:
                answer(conn)
            except OSError:
                pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


@pytest.fixture
def trickle() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):
            conn.sendall(b"x")
            time.sleep(0.2)

    yield from serve_raw(answer)


@pytest.fixture
def huge() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        block = b"x" * 65536
        for _ in range(200 * 16):  # 200 MiB, unless the client hangs up first
            conn.sendall(block)

    yield from serve_raw(answer)


def test_the_deadline_holds_while_an_answer_trickles_in(trickle):
    client = Client(trickle, deadline=1.5, timeout=5)
    started = time.monotonic()
    with pytest.raises(ImdsUnavailable, match="timed out"):
        client.get("instance")
    assert time.monotonic() - started < 3.0


def test_the_cli_deadline_holds_too(trickle):
    started = time.monotonic()
    run = subprocess.run([*AZIMDS, "get", "--endpoint", trickle, "--deadline", "2"], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 2 and "timed out" in run.stderr
    assert time.monotonic() - started < 5.0


def test_a_huge_answer_is_refused_not_read(huge):
    with pytest.raises(ImdsUnavailable, match="larger than 4 MiB"):
        Client(huge, deadline=20, timeout=10, backoff=None).get("instance", deadline=1.0)


def test_a_declared_huge_answer_is_refused_at_once():
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\n{")

    for url in serve_raw(answer):
        started = time.monotonic()
        with pytest.raises(ImdsUnavailable, match="larger than 4 MiB"):
            Client(url, deadline=0.5).get("instance")
        assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("endpoint, env", [("", None), (None, ""), ("  ", None), (None, " ")])
def test_an_empty_endpoint_is_a_usage_error(monkeypatch, endpoint, env):
    if env is None:
        monkeypatch.delenv("AZIMDS_ENDPOINT", raising=False)
    else:
        monkeypatch.setenv("AZIMDS_ENDPOINT", env)
    with pytest.raises(UsageError, match="empty"):
        Client(endpoint)


def test_the_cli_refuses_an_empty_endpoint():
    run = subprocess.run([*AZIMDS, "tags", "--endpoint", ""], capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "azimds: the endpoint is empty; leave it out to reach http://169.254.169.254\n"
    run = subprocess.run([*AZIMDS, "tags"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "AZIMDS_ENDPOINT": ""})
    assert run.returncode == 2 and "$AZIMDS_ENDPOINT is set but empty" in run.stderr


def test_verbose_prints_every_attempt_and_wait():
    with Emulator(faults=["/metadata/instance*=status:503,first:2"]) as imds:
        run = subprocess.run([*AZIMDS, "get", "instance/compute/name", "--text", "-v", "--endpoint", imds.url],
                             capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (0, "web-01\n")
    lines = run.stderr.splitlines()
    attempts = [line for line in lines if line.startswith("azimds: attempt ")]
    assert [line.split(" ")[2] for line in attempts] == ["1:", "2:", "3:"] and all(" GET " in a for a in attempts)
    waits = [line for line in lines if "retrying in" in line]
    assert len(waits) == 2 and all("503 Service Unavailable" in line for line in waits), lines


def test_a_terminal_is_told_once_why_it_waits():
    with Emulator(faults=["/metadata/instance*=status:410"]) as imds:
        leader, follower = pty.openpty()
        started = time.monotonic()
        proc = subprocess.Popen([*AZIMDS, "tags", "--endpoint", imds.url, "--deadline", "5"],
                                stdout=subprocess.PIPE, stderr=follower)
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            output += chunk
            if b"still trying" in output and not hasattr(test_a_terminal_is_told_once_why_it_waits, "seen"):
                test_a_terminal_is_told_once_why_it_waits.seen = time.monotonic() - started  # type: ignore[attr-defined]
        proc.wait(timeout=30)
        os.close(leader)
    text = output.decode()
    assert proc.returncode == 2
    assert text.count("still trying") == 1, text
    assert "410 Gone" in text and "-v shows each attempt" in text, text
    seen = test_a_terminal_is_told_once_why_it_waits.seen  # type: ignore[attr-defined]
    assert 2.5 < seen < 4.5, seen


def test_no_notice_when_stderr_is_not_a_terminal():
    with Emulator(faults=["/metadata/instance*=status:410"]) as imds:
        run = subprocess.run([*AZIMDS, "tags", "--endpoint", imds.url, "--deadline", "4"], capture_output=True,
                             text=True, timeout=30)
    assert run.returncode == 2 and "still trying" not in run.stderr and run.stderr.count("\n") == 1


def test_version():
    from azimds import __version__

    run = subprocess.run([*AZIMDS, "--version"], capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout) == (0, f"azimds {__version__}\n")
