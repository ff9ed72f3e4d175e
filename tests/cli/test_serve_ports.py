"""Two emulators on one machine: a port clash names the right address and what to pass; two ``serve`` with
different ``--port`` and nothing else both work; a control plane beyond loopback needs a token."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.support import AZIMDS, fetch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*AZIMDS, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("azimds: serving "), (line, proc.stderr.read() if proc.stderr else "")
    return proc


@pytest.fixture
def home(tmp_path):
    return {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}


def test_two_serves_with_only_their_ports_apart_both_work(home, tmp_path):
    ports = [free_port(), free_port()]
    procs = [start("--port", str(port), "--rate-limit", "0", env=home) for port in ports]
    try:
        for port in ports:
            assert fetch(f"http://127.0.0.1:{port}", "/metadata/versions").status == 200
        assert (tmp_path / "state" / "azimds" / f"port-{ports[0]}" / "control-token").exists()
        assert (tmp_path / "state" / "azimds" / f"port-{ports[1]}" / "control-token").exists()
    finally:
        for proc in procs:
            proc.terminate()
            assert proc.wait(timeout=10) == 0


def test_a_busy_control_port_is_named_with_what_to_pass(home):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([*AZIMDS, "serve", "--port", "0", "--state-dir", "", "--control-port", str(port)],
                             capture_output=True, text=True, timeout=30, env=home)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (f"azimds: cannot listen on 127.0.0.1:{port} for the control plane: Address already in use; "
                          "give --control-port another port (0 picks a free one)\n")


def test_a_busy_metadata_port_is_named_with_what_to_pass(home):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([*AZIMDS, "serve", "--port", str(port), "--state-dir", ""], capture_output=True,
                             text=True, timeout=30, env=home)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (f"azimds: cannot listen on 127.0.0.1:{port} for the metadata port: Address already in use; "
                          "give --port another port (0 picks a free one)\n")


def test_a_public_control_plane_needs_a_token(home):
    run = subprocess.run([*AZIMDS, "serve", "--port", "0", "--state-dir", "", "--control-host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=30, env=home)
    assert (run.returncode, run.stdout) == (2, "")
    assert "azimds: --control-host: the control plane on 0.0.0.0 would be reachable from other machines" \
        in run.stderr and "give --control-token" in run.stderr


def test_a_public_control_plane_with_a_token_is_warned_about(home):
    proc = start("--port", "0", "--state-dir", "", "--control-host", "0.0.0.0", "--control-port", "0",
                 "--control-token", "s3cret", env=home)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("azimds: warning: the control plane listens on 0.0.0.0: plain HTTP")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_metrics_stay_behind_the_token(shared_vm):
    reply = fetch(shared_vm.control_url, "/metrics", metadata=False)
    assert reply.status == 401
