"""``azimds serve --workers N``: real supervisors, workers and sockets. Each source address always reaches the same
worker (the kernel runs the steering program), so a VM's rate limit holds across workers; a killed worker is
replaced on the same socket; the control plane's changes reach every worker; SIGTERM stops them all; the state
directory stays one supervisor's."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from azimds.emulator.app import App, configure
from azimds.emulator.workers import listen_group, steer_index
from tests.support import AZIMDS, fetch, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="steering by source address is Linux's")

TAGS = "/metadata/instance/compute/tags?api-version=2021-02-01&format=text"
NAME = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"


class Fleet:
    """``azimds serve --workers N`` as a process, its stdout and stderr in files (read while it runs)."""

    def __init__(self, tmp: Path, *args: str, workers: int = 2, state_dir: Path | None = None):
        tmp.mkdir(parents=True, exist_ok=True)
        self.state = state_dir or tmp / "state"
        self.out, self.err = tmp / "out.txt", tmp / "err.txt"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([*AZIMDS, "serve", "--workers", str(workers), "--port", "0",
                                          "--control-port", "0", "--state-dir", str(self.state), *args],
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: "serving" in self.out.read_text() or self.proc.poll() is not None, timeout=60)
            match = re.search(r"^azimds: serving (http://\S+)/metadata$", self.out.read_text(), re.MULTILINE)
            assert match, f"not serving: {self.out.read_text()!r} {self.err.read_text()!r}"
        except BaseException:
            self.kill()
            raise
        self.url = match.group(1)
        log = self.log()
        self.pids = {int(index): int(pid) for index, pid in re.findall(r"worker (\d+): pid (\d+)", log)}
        assert sorted(self.pids) == list(range(workers)), log
        self.control = re.search(r"control plane (http://\S+)", log).group(1)
        self.token = (self.state / "control-token").read_text().strip()

    def log(self) -> str:
        return self.err.read_text()

    def ctl(self, method: str, path: str, body: object = None) -> object:
        reply = fetch(self.control, path, method=method, metadata=False,
                      headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
                      body=None if body is None else json.dumps(body).encode())
        assert reply.status < 300, reply
        return reply.json() if reply.body else None

    def nodes(self) -> dict[str, set[str]]:
        """The journal as every worker shipped it to the store: source address -> the nodes that answered it
        (read from the database itself: the control plane's journal does not name nodes)."""
        db = sqlite3.connect(f"file:{self.state / 'state.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute("SELECT node, entries FROM journal_batches").fetchall()
        finally:
            db.close()
        found: dict[str, set[str]] = {}
        for node, entries in rows:
            for entry in json.loads(entries):
                found.setdefault(entry[1], set()).add(node)
        return found

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def pid_of(node: str) -> int:
    return int(node.rpartition(":")[2])  # the default node name: HOST:PID


def addresses(count: int, subnet: int) -> list[str]:
    return [f"127.{subnet}.{i // 200}.{i % 200 + 1}" for i in range(count)]


def steered_to(index: int, subnet: int, workers: int = 2) -> str:
    return next(a for a in addresses(1000, subnet) if steer_index(a, workers) == index)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    running = Fleet(tmp_path_factory.mktemp("workers"))
    yield running
    running.kill()


# -- the steering program, on this kernel ----------------------------------------------------------------

def test_the_kernel_steers_each_source_address_to_the_socket_the_program_names():
    sockets, problem = listen_group("127.0.0.1", 0, 3)
    try:
        assert problem is None, problem
        port = sockets[0].getsockname()[1]
        seen: dict[str, set[int]] = {}
        for source in addresses(90, 3):
            for _ in range(2):
                with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)):
                    ready, _, _ = select.select(sockets, [], [], 5)
                    assert len(ready) == 1
                    index = sockets.index(ready[0])
                    ready[0].accept()[0].close()
                seen.setdefault(source, set()).add(index)
        assert all(found == {steer_index(source, 3)} for source, found in seen.items())
        assert set(Counter(next(iter(found)) for found in seen.values())) == {0, 1, 2}
    finally:
        for sock in sockets:
            sock.close()


IPV6_PROBE = """
import select, socket, subprocess, sys
from azimds.emulator.workers import listen_group, steer_index
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
sources = [f"fd00::{i:x}:{i * 7:x}" for i in range(1, 41)]
for source in sources:
    subprocess.run(["ip", "-6", "addr", "add", source + "/128", "dev", "lo", "nodad"], check=True)
sockets, problem = listen_group("::", 0, 3)
assert problem is None, problem
wrong, used = [], set()
for source in sources:
    for _ in range(2):
        client = socket.socket(socket.AF_INET6)
        client.bind((source, 0))
        client.connect(("::1", sockets[0].getsockname()[1]))
        ready, _, _ = select.select(sockets, [], [], 5)
        conn, peer = ready[0].accept()
        conn.close()
        client.close()
        used.add(sockets.index(ready[0]))
        if sockets.index(ready[0]) != steer_index(peer[0], 3):
            wrong.append(peer[0])
print(len(wrong), sorted(used))
"""


def test_ipv6_sources_are_steered_by_their_last_32_bits():
    """In a private network namespace (root, or a user namespace), where loopback may carry many IPv6
    addresses."""
    import shutil

    unshare = shutil.which("unshare")
    prefix = [unshare, "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"]) if unshare else []
    if not prefix or not shutil.which("ip") or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("no private network namespace here (unshare, ip, root or user namespaces)")
    done = subprocess.run([*prefix, sys.executable, "-c", IPV6_PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "[0,", "1,", "2]"]  # none steered elsewhere, and every socket used


def test_a_port_in_use_is_refused_rather_than_shared():
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even a group another process could join
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        from azimds.errors import ListenError

        with pytest.raises(ListenError, match=r"cannot listen on 127\.0\.0\.1"):
            listen_group("127.0.0.1", busy.getsockname()[1], 2)


# -- a running fleet ----------------------------------------------------------------------------------------

def test_each_source_address_is_always_answered_by_the_same_worker(fleet):
    sources = addresses(40, 1)
    for _ in range(3):  # three fresh connections from each address, 3 requests: within the rate limit
        for source in sources:
            assert fetch(fleet.url, NAME, source=source).status == 200
    wait_until(lambda: set(sources) <= set(fleet.nodes()), timeout=10)
    nodes = fleet.nodes()
    for source in sources:
        assert len(nodes[source]) == 1, (source, nodes[source])
        assert pid_of(next(iter(nodes[source]))) == fleet.pids[steer_index(source, 2)]
    assert {pid_of(next(iter(nodes[s]))) for s in sources} == set(fleet.pids.values())  # both workers answer


def burst(url: str, source: str, count: int) -> list[int]:
    """``count`` requests from ``source`` on as many connections, opened first, then sent at once."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conns = [socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
             for _ in range(count)]
    try:
        request = (f"GET {NAME} HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n").encode()
        for conn in conns:
            conn.sendall(request)
        statuses = []
        for conn in conns:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            statuses.append(int(data.split(b" ", 2)[1]))
        return statuses
    finally:
        for conn in conns:
            conn.close()


@pytest.mark.parametrize("worker", [0, 1])
def test_one_vms_rate_limit_holds_across_workers(fleet, worker):
    """15 connections from one address, each alone free to reach either worker: 5 answers, 10 refusals (two
    workers each counting apart would answer 10)."""
    statuses = burst(fleet.url, steered_to(worker, 2), 15)
    assert Counter(statuses) == {200: 5, 429: 10}


def test_a_control_plane_change_reaches_every_worker(fleet):
    fleet.ctl("PUT", "/v1/tags", {"stage": "workers"})
    for index in (0, 1):
        source = steered_to(index, 4)
        wait_until(lambda source=source: fetch(fleet.url, TAGS, source=source).body == b"stage:workers", timeout=10,
                   interval=0.05)


def test_the_journal_and_metrics_cover_every_worker(fleet):
    sources = [steered_to(0, 5), steered_to(1, 5)]
    for source in sources:
        assert fetch(fleet.url, NAME, source=source).status == 200

    def totals() -> tuple[int, int]:
        journal = fleet.ctl("GET", "/v1/journal?limit=100000")["entries"]
        metrics = fetch(fleet.control, "/metrics", metadata=False, headers={"Authorization": f"Bearer {fleet.token}"})
        counted = sum(int(n) for n in re.findall(r"^azimds_requests_total\{[^}]*\} (\d+)$", metrics.body.decode(),
                                                 re.MULTILINE))
        return len(journal), counted

    def shipped() -> bool:
        return all(fleet.ctl("GET", f"/v1/journal?peer={source}")["entries"] for source in sources)

    wait_until(shipped, timeout=10, interval=0.05)  # every worker's requests, in the supervisor's journal
    wait_until(lambda: len(set(totals())) == 1, timeout=10, interval=0.05)  # and counted in its metrics
    assert totals()[0] >= 2


# -- workers that die, a supervisor that stops -----------------------------------------------------------

def test_a_killed_worker_is_replaced_on_its_socket(tmp_path):
    fleet = Fleet(tmp_path, "--rate-limit", "0")
    try:
        old = fleet.pids[1]
        source = steered_to(1, 6)
        os.kill(old, signal.SIGKILL)
        assert fetch(fleet.url, NAME, source=source).status == 200  # queued, then answered by the replacement
        wait_until(lambda: re.search(rf"worker 1 \(pid {old}\) was killed by SIGKILL; starting another",
                                     fleet.log()), timeout=10, interval=0.05)
        wait_until(lambda: re.search(r"worker 1 answers again \(pid (\d+)\)", fleet.log()), timeout=30,
                   interval=0.05)
        new = int(re.search(r"worker 1 answers again \(pid (\d+)\)", fleet.log()).group(1))
        assert new != old and alive(new) and not alive(old)
        for _ in range(5):
            assert fetch(fleet.url, NAME, source=source).status == 200
        wait_until(lambda: any(pid_of(n) == new for n in fleet.nodes().get(source, ())), timeout=10)
        assert {pid_of(n) for n in fleet.nodes()[source]} <= {old, new}  # worker 1's socket, whoever holds it
    finally:
        assert fleet.stop() == 0


def test_a_worker_that_keeps_dying_is_restarted_after_a_growing_pause(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        pid = fleet.pids[0]
        for attempt in range(3):  # each replacement killed as soon as it answers: well before it counts as healthy
            os.kill(pid, signal.SIGKILL)
            pause = ["", " in 0.5 s", " in 1 s"][attempt]
            wait_until(lambda pid=pid, pause=pause: f"worker 0 (pid {pid}) was killed by SIGKILL; starting "
                       f"another{pause}\n" in fleet.log(), timeout=10, interval=0.05)
            wait_until(lambda n=attempt + 1: len(re.findall(r"worker 0 answers again", fleet.log())) == n, timeout=30,
                       interval=0.05)
            pid = int(re.findall(r"worker 0 answers again \(pid (\d+)\)", fleet.log())[-1])
        assert fetch(fleet.url, NAME, source=steered_to(0, 8)).status == 200
    finally:
        assert fleet.stop() == 0


def test_a_replaced_worker_counts_first_seconds_from_the_supervisors_start(tmp_path):
    fleet = Fleet(tmp_path, "--rate-limit", "0", "--fault", "/metadata/instance*=status:410,first-seconds:4")
    try:
        source = steered_to(1, 9)
        wait_until(lambda: fetch(fleet.url, NAME, source=source).status == 200, timeout=30, interval=0.1)
        old = fleet.pids[1]
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: "worker 1 answers again" in fleet.log(), timeout=30, interval=0.05)
        assert fetch(fleet.url, NAME, source=source).status == 200  # not 410 for the replacement's first 4 s
    finally:
        assert fleet.stop() == 0


def test_a_dynamic_scale_sets_claims_hold_across_workers(tmp_path):
    """Source addresses answered by different workers take different instances of a dynamic scale set (the
    claims are one store's), keep them, and the next address finds every instance taken."""
    profile = tmp_path / "pods.yaml"
    profile.write_text("compute: {name: node-vm}\n"
                       "fleet: {scaleSets: [{name: pods, capacity: '2', addresses: dynamic, idleRelease: 10m}]}\n")
    fleet = Fleet(tmp_path / "run", "--profile", str(profile), "--rate-limit", "0")
    try:
        first, second = steered_to(0, 41), steered_to(1, 41)
        third = next(a for a in addresses(1000, 41) if a not in (first, second))
        names = {source: fetch(fleet.url, NAME, source=source).body for source in (first, second)}
        assert sorted(names.values()) == [b"pods_0", b"pods_1"]
        full = fetch(fleet.url, NAME, source=third)
        assert full.status == 403 and b"every instance is claimed" in full.body
        assert {source: fetch(fleet.url, NAME, source=source).body for source in (second, first)} == names
    finally:
        fleet.kill()


def test_sigterm_stops_every_process_and_exits_0(tmp_path):
    fleet = Fleet(tmp_path, workers=3)
    assert all(alive(pid) for pid in fleet.pids.values())
    assert fetch(fleet.url, NAME).status == 200
    assert fleet.stop() == 0
    assert not any(alive(pid) for pid in fleet.pids.values())  # the supervisor waited for them
    assert "starting another" not in fleet.log()  # their exit was no failure


def test_workers_stop_when_their_supervisor_is_killed(tmp_path):
    fleet = Fleet(tmp_path)
    fleet.kill()  # SIGKILL: nothing forwarded; each worker sees its link close
    wait_until(lambda: not any(alive(pid) for pid in fleet.pids.values()), timeout=15, interval=0.05)


def test_a_second_supervisor_on_the_same_state_directory_is_refused(tmp_path):
    first = Fleet(tmp_path / "first")
    try:
        second = subprocess.run([*AZIMDS, "serve", "--workers", "2", "--port", "0", "--control-port", "0",
                                 "--state-dir", str(first.state)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"azimds: {first.state}: in use by process {first.proc.pid} (another azimds serve); stop it, or give "
            "this one another --state-dir"]
        assert fetch(first.url, NAME).status == 200
    finally:
        assert first.stop() == 0


def test_without_a_state_directory_the_workers_share_a_temporary_one(tmp_path):
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen([*AZIMDS, "serve", "--workers", "2", "--port", "0", "--control-port", "0",
                                 "--state-dir", ""], stdout=stdout, stderr=stderr)
    try:
        wait_until(lambda: "serving" in out.read_text() or proc.poll() is not None, timeout=60)
        url = re.search(r"serving (http://\S+)/metadata", out.read_text()).group(1)
        temporary = Path(re.search(r"token in (\S+)/control-token", err.read_text()).group(1))
        assert (temporary / "state.sqlite").exists()
        keys = {fetch(url, "/common/discovery/keys", source=steered_to(index, 7)).body for index in (0, 1)}
        assert len(keys) == 1  # both workers sign tokens with the one key
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not temporary.exists()


def test_one_process_keeps_its_store_to_itself(tmp_path):
    config, profile = configure(flags={"port": 0, "control_port": 0, "state_dir": str(tmp_path)})
    assert config.workers == 1
    app = App(config, profile)
    try:
        assert app.store is not None and not app.store.shared  # no listener, no journal shipped
    finally:
        app.release()


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_a_bad_number_of_workers_is_refused_in_one_line(value):
    done = subprocess.run([*AZIMDS, "serve", "--port", "0", "--state-dir", "", "--workers", value],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("azimds: --workers: ")
