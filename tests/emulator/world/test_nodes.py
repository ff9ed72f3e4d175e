"""One world across processes: three ``azimds serve --state postgresql://…`` nodes (one PostgreSQL), each asked by
the VMs of its own source addresses, form one fleet. What is changed through any node (a tag, an event, an
approval, the clock; with ``azimds ctl`` too) is seen by VMs answered by the others; one node killed with
``kill -9`` and restarted mid-way loses nothing and catches up; every VM sees DocumentIncarnation only grow;
the journal of every node is read from any control plane. Engine faults: PostgreSQL stopped under running
nodes (metadata still answered from memory, control-plane writes 503 with a reason, then caught up when it is
back) and unreachable at start (exit 2, one line). The propagation delay over 200 changes is printed."""

from __future__ import annotations

import itertools
import json
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import AZIMDS, Keep, azimds_process, fetch
from tests.support_postgres import PostgresCluster, new_cluster

TOKEN = "node-secret"
CAPACITY = 12
FLEET = {"compute": {"name": "first"},
         "fleet": {"scaleSets": [{"name": "web", "capacity": CAPACITY, "addresses": "127.1.0.0",
                                  "subnet": "10.1.0.0/24"}]},
         "azimds": {"scaleSetTags": "immediate"}}  # scale-set instances show changed tags at once
TAGS = "/metadata/instance/compute/tags?api-version=2021-02-01&format=text"
SE = "/metadata/scheduledevents?api-version=2020-07-01"
#: Which node answers which VM (web_i calls from 127.1.0.i): a, b and c each answer four of them.
OWNER = {i: "abc"[i // 4] for i in range(CAPACITY)}


def source(vm: int) -> str:
    return f"127.1.0.{vm}"


class Node:
    """``azimds serve`` on the shared PostgreSQL, with its control plane; its stderr kept (and drained)."""

    def __init__(self, name: str, url: str, profile: Path, state_dir: Path) -> None:
        self.name, self.db, self.profile, self.state_dir = name, url, profile, state_dir
        self.stderr: list[str] = []
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([*AZIMDS, "serve", "--port", "0", "--control-port", "0", "--rate-limit", "0",
                                      "--profile", str(self.profile), "--state-dir", str(self.state_dir),
                                      "--state", self.db, "--node", f"node-{self.name}", "--clock", "manual",
                                      "--control-token", TOKEN], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        ready = self.proc.stdout.readline()
        control = ""
        while ready and not control.startswith("azimds: control plane"):
            control = self.proc.stderr.readline()
        found = re.fullmatch(r"azimds: serving (http://[^/]+)/metadata\n", ready), \
            re.match(r"azimds: control plane (\S+)", control)
        if not (found[0] and found[1]):
            self.proc.kill()
            raise RuntimeError(f"node {self.name} did not start: {ready!r} {control!r} {self.proc.stderr.read()}")
        self.url, self.control_url = found[0].group(1), found[1].group(1)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.stderr.append(line)

    def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        reply = fetch(self.control_url, path, method=method, metadata=False,
                      body=None if body is None else json.dumps(body).encode(),
                      headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        return reply.status, (json.loads(reply.body) if reply.body else None)

    def ok(self, method: str, path: str, body: object = None) -> object:
        status, answer = self.call(method, path, body)
        assert status in (200, 201, 204), (self.name, method, path, status, answer)
        return answer

    def metadata(self, path: str, vm: int, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
        reply = fetch(self.url, path, source=source(vm), method=method, body=body)
        return reply.status, reply.body

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Path, list[Node]]]:
    """The fleet profile, and a list the test adds its nodes to (all stopped after)."""
    profile = tmp_path / "fleet.json"
    profile.write_text(json.dumps(FLEET))
    nodes: list[Node] = []
    yield profile, nodes
    for node in nodes:
        node.stop()


def start_nodes(url: str, profile: Path, tmp_path: Path, names: str, into: list[Node]) -> dict[str, Node]:
    started = {}
    for name in names:
        node = Node(name, url, profile, tmp_path / f"state-{name}")
        into.append(node)
        started[name] = node
    return started


def wait_for(condition, *, timeout: float, what: str) -> float:
    """Poll ``condition`` until true; the seconds it took. AssertionError naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not seen within {timeout} s: {what}")
        time.sleep(0.002)


class Recorder:
    """Every scheduled-events document each VM sees, read again and again from the node that answers it (the
    node looked up on every read, so a restarted node is followed to its new port)."""

    def __init__(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        self.seen: dict[int, list[tuple[int, str]]] = {vm: [] for vm in range(CAPACITY)}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for vm in range(CAPACITY):
                try:
                    status, body = self.nodes[OWNER[vm]].metadata(SE, vm)
                except OSError:
                    continue  # its node is down
                if status == 200:
                    doc = json.loads(body)
                    self.seen[vm].append((doc["DocumentIncarnation"], json.dumps(doc["Events"], sort_keys=True)))
            self._stop.wait(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def problems(self) -> list[str]:
        """Places where a VM saw DocumentIncarnation go down, or another document under the same incarnation."""
        found = []
        for vm, docs in self.seen.items():
            for (inc, events), (next_inc, next_events) in itertools.pairwise(docs):
                if next_inc < inc or (next_inc == inc and next_events != events):
                    found.append(f"web_{vm}: {inc} {events} then {next_inc} {next_events}")
        return found


def incarnation(node: Node, vm: int) -> int:
    status, body = node.metadata(SE, vm)
    assert status == 200
    return int(json.loads(body)["DocumentIncarnation"])


def events_of(node: Node, vm: int) -> dict[str, str]:
    status, body = node.metadata(SE, vm)
    assert status == 200, (status, body)
    return {e["EventId"]: e["EventStatus"] for e in json.loads(body)["Events"]}


def test_three_nodes_share_one_world(postgres_url, fleet, tmp_path, capsys):
    profile, started = fleet
    nodes = start_nodes(postgres_url, profile, tmp_path, "abc", started)
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    recorder = Recorder(nodes)
    delays: dict[str, float] = {}
    try:
        # A tag change through a, seen by VMs answered by b and c.
        a.ok("PUT", "/v1/tags?vm=web_5", {"step": "tag"})
        a.ok("PUT", "/v1/tags?vm=web_9", {"step": "tag"})
        delays["tag"] = max(wait_for(lambda: b.metadata(TAGS, 5) == (200, b"step:tag"), timeout=2,
                                     what="a's tag on b"),
                            wait_for(lambda: c.metadata(TAGS, 9) == (200, b"step:tag"), timeout=2,
                                     what="a's tag on c"))

        # An event scheduled through a's control plane, in the scale set's book: seen by every VM.
        before = incarnation(a, 0)
        first = "00000000-0000-4000-8000-000000000001"
        a.ok("POST", "/v1/events?vm=web_0", {"type": "Freeze", "eventId": first, "resources": ["web_0", "web_5",
                                                                                             "web_9"]})
        delays["event"] = max(wait_for(lambda: events_of(b, 5) == {first: "Scheduled"}, timeout=2,
                                       what="a's event on b"),
                              wait_for(lambda: events_of(c, 9) == {first: "Scheduled"}, timeout=2,
                                       what="a's event on c"))
        assert incarnation(b, 6) == incarnation(c, 10) == before + 1

        # c killed with kill -9 mid-way; the world goes on without it.
        c.kill()
        # An approval POSTed by web_5 to b, and at the same time by web_0 to a (both listed) and web_6 to b: the
        # event starts once, for the VMs of every node.
        approval = json.dumps({"StartRequests": [{"EventId": first}]}).encode()
        answers: list[tuple[int, bytes]] = []
        posts = [threading.Thread(target=lambda n=n, vm=vm: answers.append(n.metadata(SE, vm, "POST", approval)))
                 for n, vm in ((b, 5), (a, 0), (b, 6))]
        for post in posts:
            post.start()
        for post in posts:
            post.join(timeout=30)
        assert [status for status, _ in answers] == [200, 200, 200], answers
        delays["approval"] = wait_for(lambda: events_of(a, 0) == {first: "Started"}, timeout=2,
                                      what="b's approval on a")
        assert incarnation(a, 2) == before + 2  # started once, whatever the number of approvals

        # c back, on the same state: it sees what happened while it was gone.
        c.start()
        assert events_of(c, 9) == {first: "Started"} and incarnation(c, 8) == before + 2
        assert c.metadata(TAGS, 9) == (200, b"step:tag")

        # A clock move through c: the Freeze is over, and a Reboot scheduled through b starts.
        second = "00000000-0000-4000-8000-000000000002"
        b.ok("POST", "/v1/events?vm=web_4", {"type": "Reboot", "eventId": second, "resources": ["web_4"],
                                            "notice": 3600})
        wait_for(lambda: events_of(c, 11) == {first: "Started", second: "Scheduled"}, timeout=2,
                 what="b's event on c")
        c.ok("POST", "/v1/clock", {"advance": 3700})  # past its NotBefore, within its 600 s
        delays["clock"] = max(wait_for(lambda: events_of(a, 3) == {second: "Started"}, timeout=2,
                                       what="c's clock move on a"),
                              wait_for(lambda: events_of(b, 7) == {second: "Started"}, timeout=2,
                                       what="c's clock move on b"))
        now = {n.name: n.ok("GET", "/v1/clock")["now"] for n in (a, b, c)}  # type: ignore[index]
        assert len(set(now.values())) == 1, now

        # azimds ctl against any node changes the whole world.
        done = azimds_process("ctl", "tags", "--vm", "web_2", "by=ctl", "--control", b.control_url,
                              "--token", TOKEN)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: a.metadata(TAGS, 2) == (200, b"by:ctl"), timeout=2, what="ctl through b, on a")
        done = azimds_process("ctl", "events", "list", "--control", c.control_url, "--token", TOKEN, "--vm", "web_0")
        assert done.returncode == 0 and second in done.stdout, done

        # The journal of every node, from any control plane.
        def peers_in_journal() -> set[str]:
            entries = a.ok("GET", "/v1/journal?limit=100000")["entries"]  # type: ignore[index]
            return {entry["peer"] for entry in entries}

        wait_for(lambda: {source(vm) for vm in (0, 5, 9)} <= peers_in_journal(), timeout=5,
                 what="every node's requests in a's journal")
    finally:
        recorder.stop()
    assert recorder.problems() == []
    assert all(recorder.seen.values()), "a VM was never answered"
    # first scheduled, started; second scheduled; first gone, second started: five documents after the first
    assert {docs[-1][0] for docs in recorder.seen.values()} == {before + 5}
    with capsys.disabled():
        print("\nthree nodes: seen on the other nodes after " +
              ", ".join(f"{what} {delay * 1000:.1f} ms" for what, delay in delays.items()) +
              f"; {sum(len(d) for d in recorder.seen.values())} documents recorded, incarnation only grew")


def test_propagation_delay_between_nodes(postgres_url, fleet, tmp_path, capsys):
    """200 tag changes, each acknowledged by one node's control plane, then read by its VM from another node
    as fast as it can ask: the delay from the acknowledgement to the first answer that shows it."""
    profile, started = fleet
    nodes = start_nodes(postgres_url, profile, tmp_path, "abc", started)
    order = [nodes["a"], nodes["b"], nodes["c"]]
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    controls = {n.name: Keep(n.control_url) for n in order}
    readers = {vm: Keep(nodes[OWNER[vm]].url, source(vm)) for vm in range(CAPACITY)}
    delays: list[float] = []
    try:
        for i in range(200):
            writer = order[i % 3]
            vm = [v for v in range(CAPACITY) if OWNER[v] == order[(i + 1) % 3].name][i % 4]
            status, body = controls[writer.name].request("PUT", f"/v1/tags?vm=web_{vm}",
                                                         json.dumps({"n": str(i)}).encode(), auth)
            acknowledged = time.perf_counter()
            assert status == 200, body
            expected = f"n:{i}".encode()
            while True:
                status, body = readers[vm].request("GET", TAGS, headers={"Metadata": "true"})
                if body == expected:
                    delays.append(time.perf_counter() - acknowledged)
                    break
                assert time.perf_counter() - acknowledged < 2.0, f"change {i} not seen on another node within 2 s"
                time.sleep(0.0005)  # a VM asking flat out would keep the node's GIL from its listener thread
    finally:
        for keep in [*controls.values(), *readers.values()]:
            keep.close()
    ordered = sorted(delays)
    p50, p99 = statistics.median(ordered), ordered[int(0.99 * len(ordered)) - 1]
    with capsys.disabled():
        print(f"\npropagation between nodes over {len(delays)} changes: p50 {p50 * 1000:.2f} ms, "
              f"p99 {p99 * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms")
    assert len(delays) == 200


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own: it is stopped under the running nodes."""
    cluster = new_cluster()
    yield cluster
    cluster.destroy()


def test_the_engine_lost_and_back_under_running_nodes(own_cluster, fleet, tmp_path):
    profile, started = fleet
    url = own_cluster.create_database()
    nodes = start_nodes(url, profile, tmp_path, "ab", started)
    a, b = nodes["a"], nodes["b"]
    a.ok("PUT", "/v1/tags?vm=web_5", {"phase": "before"})
    event = a.ok("POST", "/v1/events?vm=web_0", {"type": "Freeze", "resources": ["web_0", "web_5"]}
                 )["eventId"]  # type: ignore[index]
    wait_for(lambda: b.metadata(TAGS, 5) == (200, b"phase:before") and event in events_of(b, 5), timeout=2,
             what="a's changes on b")

    own_cluster.stop("fast")
    for _ in range(20):  # the metadata port answers from memory
        assert b.metadata(TAGS, 5) == (200, b"phase:before")
        assert a.metadata(TAGS, 1)[0] == 200
        assert event in events_of(a, 2)
    started_at = time.monotonic()
    status, answer = a.call("PUT", "/v1/tags?vm=web_5", {"phase": "lost"})
    assert status == 503 and "unreachable" in answer["error"], (status, answer)  # type: ignore[index]
    assert time.monotonic() - started_at < 5
    assert "Connection refused" in answer["error"] or "connection" in answer["error"]  # type: ignore[index]
    approval = json.dumps({"StartRequests": [{"EventId": event}]}).encode()
    assert b.metadata(SE, 5, "POST", approval)[0] == 503  # nothing approved
    assert b.call("POST", "/v1/clock", {"advance": 60})[0] == 503
    wait_for(lambda: any("answering from memory" in line for line in a.stderr), timeout=5,
             what="a saying it answers from memory")
    assert b.metadata(TAGS, 5) == (200, b"phase:before")  # nothing half-changed

    own_cluster.start()
    wait_for(lambda: b.call("PUT", "/v1/tags?vm=web_1", {"phase": "after"})[0] == 200, timeout=20,
             what="a write through b once the engine is back")
    wait_for(lambda: a.metadata(TAGS, 1) == (200, b"phase:after"), timeout=5, what="b's change caught up on a")
    a.ok("PUT", "/v1/tags?vm=web_5", {"phase": "again"})
    wait_for(lambda: b.metadata(TAGS, 5) == (200, b"phase:again"), timeout=2, what="a's write on b")
    assert events_of(b, 5) == {event: "Scheduled"}  # the refused approval was never made
    assert b.metadata(SE, 5, "POST", approval)[0] == 200
    wait_for(lambda: events_of(a, 0) == {event: "Started"}, timeout=2, what="b's approval on a")
    wait_for(lambda: any("state engine is back" in line for line in a.stderr), timeout=5, what="a saying so")


def test_an_unreachable_engine_at_start_is_one_line_and_exit_2(tmp_path):
    run = subprocess.run([*AZIMDS, "serve", "--port", "0", "--control-port", "0", "--state-dir", str(tmp_path),
                          "--state", "postgresql://nobody:Sekr3t@127.0.0.1:1/x"],
                         capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (2, ""), run
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("azimds: postgresql://nobody@127.0.0.1:1/x: cannot reach the PostgreSQL engine: ")
    assert "Sekr3t" not in run.stderr

