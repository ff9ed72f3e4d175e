"""Scheduled events through azimds.client and ``azimds events``, against in-process emulators over real sockets.

Events are scheduled and the emulated clock moved through the control plane over HTTP, as a test suite
would; ``watch_events`` is driven by an injected sleep that makes the next change happen, so a whole
lifecycle (Scheduled, Started, gone) takes no real time.
"""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from azimds import Emulator
from azimds.client import FIRST_EVENTS_TIMEOUT, Backoff, Client, ImdsError, ImdsUnavailable, touches
from azimds.emulator.model.faults import FaultRule as Fault
from tests import support
from tests.support import azimds_inprocess, azimds_process, fetch, wait_until

CLI = [sys.executable, "-m", "azimds"]
EVENTS = "/metadata/scheduledevents"
FAST = Backoff(delta=0.01, cap=0.05, gone_for=0.2, server_error_min=0.01, min_attempt=0.05)


def control(imds: Emulator, method: str, path: str, body: object = None) -> object:
    """A control-plane request over HTTP; its JSON answer (asserting success)."""
    reply = support.control(imds, method, path, body)
    assert reply.status < 300, reply
    return reply.json() if reply.body else None


def schedule(imds: Emulator, **fields: object) -> str:
    """Schedule an event (a Freeze for this VM unless told otherwise); its EventId."""
    return control(imds, "POST", "/v1/events", {"type": "Freeze", **fields})["eventId"]  # type: ignore[index]


def advance(imds: Emulator, seconds: float) -> None:
    control(imds, "POST", "/v1/clock", {"advance": seconds})


def document(imds: Emulator) -> dict:
    return fetch(imds.url, EVENTS + "?api-version=2020-07-01").json()


def statuses(imds: Emulator) -> dict[str, str]:
    return {event["EventId"]: event["EventStatus"] for event in document(imds)["Events"]}


def client(imds: Emulator, **kwargs: object) -> Client:
    return Client(imds.url, limiter=None, **kwargs)  # type: ignore[arg-type]


def polls(imds: Emulator, method: str = "GET") -> list[tuple[str | None, int]]:
    """(api-version, status) of each scheduled-events request of ``method`` the emulator answered."""
    return [(parse_qs(urlsplit(e.url).query).get("api-version", [None])[0], e.status)
            for e in imds.journal if urlsplit(e.url).path == EVENTS and e.method == method]


@pytest.fixture
def imds() -> Iterator[Emulator]:
    with Emulator(clock="manual") as emulator:
        yield emulator


class Script:
    """An injected sleep that makes the next scripted change on each call and moves ``clock`` on by what
    it was asked (recorded), so that the client sees the time pass that it meant to wait."""

    def __init__(self, *steps: Callable[[], object]) -> None:
        self.steps = list(steps)
        self.asked: list[float] = []

    def clock(self) -> float:
        return time.monotonic() + sum(self.asked)

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        if len(self.asked) > 100:  # the client waits on and on: what the test waits for never came
            raise AssertionError(f"still waiting after {len(self.asked)} sleeps")
        if self.steps:
            self.steps.pop(0)()


# -- events() ----------------------------------------------------------------------------------------------

def test_events_reads_the_document_at_its_own_version(imds: Emulator) -> None:
    assert client(imds).events() == {"DocumentIncarnation": 1, "Events": []}
    event_id = schedule(imds)
    doc = client(imds).events()
    assert doc["DocumentIncarnation"] == 2
    assert [(e["EventId"], e["EventStatus"], e["Resources"]) for e in doc["Events"]] == [
        (event_id, "Scheduled", ["web-01"])]
    assert polls(imds) == [("2020-07-01", 200), ("2020-07-01", 200)]


def test_events_are_retried_like_every_read(imds: Emulator) -> None:
    imds.faults.add(Fault(path=EVENTS, status=503, first=2))
    assert client(imds, backoff=FAST).events()["DocumentIncarnation"] == 1
    assert [status for _, status in polls(imds)] == [503, 503, 200]


def test_the_first_events_request_waits_for_a_slow_start() -> None:
    """The first request may switch the real service on (up to two minutes); later ones get the usual timeout."""
    assert FIRST_EVENTS_TIMEOUT == 120
    with Emulator(faults=[Fault(path=EVENTS, latency=0.4)]) as imds:
        reader = client(imds, timeout=0.1, deadline=2, backoff=Backoff(retries=0))
        assert reader.events()["Events"] == []
        with pytest.raises(ImdsUnavailable, match="timed out"):
            reader.events()
        # the emulator finishes the abandoned answer (and journals it) before it stops
        wait_until(lambda: len(polls(imds)) == 2, timeout=5)
        assert polls(imds) == [("2020-07-01", 200), ("2020-07-01", 200)]


@pytest.fixture
def json_server() -> Iterator[str]:
    """A plain HTTP server answering every GET with JSON that is not an events document."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "13")
            self.end_headers()
            self.wfile.write(b'{"Events":[]}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()  # shutdown() waits a poll
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_an_answer_that_is_not_an_events_document_is_an_error(json_server: str) -> None:
    with pytest.raises(ImdsError, match="the answer is not a scheduled events document; is http://127"):
        Client(json_server, limiter=None).events()


# -- watch_events() ----------------------------------------------------------------------------------------

def test_watch_yields_each_incarnation_in_order(imds: Emulator) -> None:
    ids: list[str] = []
    script = Script(lambda: ids.append(schedule(imds)),  # 2: Scheduled
                    lambda: None,  # nothing changes: nothing yielded
                    lambda: advance(imds, 900),  # 3: Started at NotBefore (15 min notice)
                    lambda: advance(imds, 300))  # 4: gone 5 minutes after it started
    seen = []
    for doc in client(imds, clock=script.clock).watch_events(sleep=script):
        seen.append((doc["DocumentIncarnation"], [(e["EventId"], e["EventStatus"]) for e in doc["Events"]]))
        if len(seen) == 4:
            break
    event_id = ids[0]
    assert seen == [(1, []), (2, [(event_id, "Scheduled")]), (3, [(event_id, "Started")]), (4, [])]
    assert len(polls(imds)) == 5  # one poll saw no change
    assert all(0 < asked <= 1.0 for asked in script.asked)


def test_watch_yields_the_latest_document_when_several_changes_fall_between_polls(imds: Emulator) -> None:
    def publish_and_finish() -> None:  # published, Started and gone: incarnations 2, 3 and 4
        schedule(imds)
        advance(imds, 900 + 300)

    script = Script(publish_and_finish)
    watch = client(imds, clock=script.clock).watch_events(sleep=script)
    assert [next(watch)["DocumentIncarnation"], next(watch)["DocumentIncarnation"]] == [1, 4]


def test_watch_ends_at_once_when_stop_is_set(imds: Emulator) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    docs = list(client(imds).watch_events(5, stop=stop))
    assert [doc["DocumentIncarnation"] for doc in docs] == [1]
    assert time.monotonic() - began < 3  # woken by stop, not at the next poll 5 s on


def test_watch_polls_once_an_interval_for_its_duration(imds: Emulator) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    watcher = Client(imds.url, limiter=None, clock=lambda: now[0])
    assert len(list(watcher.watch_events(duration=3.5, sleep=sleep))) == 1
    assert len(polls(imds)) == 4  # at 0, 1, 2 and 3 s
    assert now[0] == 3.0


@pytest.mark.parametrize(("interval", "duration"), [(0, None), (-1, None), (float("nan"), None), (1, 0)])
def test_watch_refuses_bad_timing_when_called(imds: Emulator, interval: float, duration: float | None) -> None:
    with pytest.raises(ValueError, match="more than 0 seconds"):
        client(imds).watch_events(interval, duration=duration)  # before any iteration


# -- approve() ---------------------------------------------------------------------------------------------

def test_approve_starts_the_event_and_may_be_repeated(imds: Emulator) -> None:
    event_id = schedule(imds, type="Reboot", source="User")
    reader = client(imds)
    assert reader.approve([event_id.lower(), event_id.lower()]) == [event_id.lower()]
    assert statuses(imds) == {event_id: "Started"}
    assert reader.approve(event_id) == [event_id]  # a string is one id; approved before is still a 200
    assert polls(imds, "POST") == [("2020-07-01", 200), ("2020-07-01", 200)]


def test_approve_several_at_once(imds: Emulator) -> None:
    first, second = schedule(imds), schedule(imds, type="Reboot")
    assert client(imds).approve([first, second]) == [first, second]
    assert statuses(imds) == {first: "Started", second: "Started"}


def test_one_vms_approval_starts_an_event_of_several(imds: Emulator) -> None:
    event_id = schedule(imds, resources=["web-01", "web-02"])
    client(imds).approve(event_id)
    assert statuses(imds) == {event_id: "Started"}
    assert control(imds, "GET", "/v1/events")["events"][0]["approvals"] == ["web-01"]  # type: ignore[index]


def test_an_unknown_event_id_is_a_clear_error_and_not_retried(imds: Emulator) -> None:
    known = schedule(imds)
    with pytest.raises(ImdsError) as caught:
        client(imds).approve([known, "NOPE"])
    assert caught.value.status == 400
    assert str(caught.value) == ("approval of " + known + ", NOPE refused: Bad request. EventId NOPE is not a "
                                 "current event.")
    assert polls(imds, "POST") == [("2020-07-01", 400)]
    assert statuses(imds) == {known: "Scheduled"}


def test_approve_is_retried_like_a_read(imds: Emulator) -> None:
    event_id = schedule(imds)
    imds.faults.add(Fault(path=EVENTS, status=429, first=1))
    client(imds, backoff=FAST).approve(event_id)
    assert polls(imds, "POST") == [("2020-07-01", 429), ("2020-07-01", 200)]
    assert statuses(imds) == {event_id: "Started"}


@pytest.mark.parametrize("ids", [[], [""], "", [None]])
def test_approve_needs_event_ids(imds: Emulator, ids: object) -> None:
    with pytest.raises(ValueError, match="one or more event ids"):
        client(imds).approve(ids)  # type: ignore[arg-type]
    assert polls(imds, "POST") == []


# -- touches() ---------------------------------------------------------------------------------------------

SCALE_SET_VM = {"name": "web_3", "vmScaleSetName": "web",
                "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/"
                              "virtualMachineScaleSets/web/virtualMachines/3"}


@pytest.mark.parametrize(("resources", "compute", "expected"), [
    (["web-01"], {"name": "web-01"}, True),
    (["other", "WEB-01"], {"name": "web-01"}, True),  # Azure names ignore case
    (["web-02"], {"name": "web-01"}, False),
    (["web-011"], {"name": "web-01"}, False),
    (["web_3"], SCALE_SET_VM, True),
    (["WEB_3"], {**SCALE_SET_VM, "name": "renamed"}, True),  # {vmScaleSetName}_{instanceId} from the resourceId
    (["web_4"], SCALE_SET_VM, False),
    ([], {"name": "web-01"}, False),
    (["web-01"], {"name": "web-01", "resourceId": "/subscriptions/s/resourceGroups/rg/providers/"
                                                  "Microsoft.Compute/virtualMachines/web-01"}, True),
])
def test_touches(resources: list[str], compute: dict, expected: bool) -> None:
    assert touches({"Resources": resources}, compute) is expected


def test_an_event_without_resources_touches_nothing() -> None:
    assert touches({}, {"name": ""}) is False


def test_client_touches_reads_the_vm_name_once(imds: Emulator) -> None:
    reader = client(imds)
    assert reader.touches({"Resources": ["web-01"]}) and not reader.touches({"Resources": ["web-02"]})
    assert sum(1 for e in imds.journal if urlsplit(e.url).path == "/metadata/instance/compute") == 1


# -- azimds events -----------------------------------------------------------------------------------------

def azimds(*args: str) -> subprocess.CompletedProcess:
    """``azimds ARGS`` in this process (``tests.support.azimds_inprocess``)."""
    return azimds_inprocess(*args)


def test_cli_prints_the_document(imds: Emulator) -> None:
    """End to end: a real ``azimds events`` process."""
    event_id = schedule(imds)
    done = azimds_process("events", "--endpoint", imds.url, timeout=30)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.count("\n") == 1
    assert json.loads(done.stdout) == document(imds)
    assert done.stdout.startswith('{"DocumentIncarnation":2,"Events":[{"EventId":"' + event_id)  # served order


def test_cli_approve_all_starts_the_scheduled_events_of_this_vm_only(imds: Emulator) -> None:
    mine, shared = schedule(imds), schedule(imds, type="Reboot", resources=["web-02", "web-01"], approval="all")
    other = schedule(imds, resources=["web-02"])
    started = schedule(imds, type="Reboot", started=True)
    done = azimds("events", "--approve-all", "--endpoint", imds.url)
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, [mine, shared], "")
    assert statuses(imds) == {mine: "Started", shared: "Scheduled", other: "Scheduled", started: "Started"}
    assert control(imds, "GET", "/v1/events")["events"][1]["approvals"] == ["web-01"]  # type: ignore[index]
    assert polls(imds, "POST") == [("2020-07-01", 200)]  # one POST for both


def test_cli_approve_all_with_nothing_to_approve_sends_nothing(imds: Emulator) -> None:
    schedule(imds, resources=["web-02"])
    done = azimds("events", "--approve-all", "--endpoint", imds.url)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert polls(imds, "POST") == []


def test_cli_approve_given_ids(imds: Emulator) -> None:
    event_id = schedule(imds, resources=["web-02"])  # any id may be approved, as with the service itself
    done = azimds("events", "--approve", event_id, "--endpoint", imds.url)
    assert (done.returncode, done.stdout, done.stderr) == (0, event_id + "\n", "")
    assert control(imds, "GET", "/v1/events")["events"][0]["approvals"] == ["web-01"]  # type: ignore[index]


def test_cli_approve_an_unknown_id_exits_2_in_one_line(imds: Emulator) -> None:
    done = azimds("events", "--approve", "NOPE", "--endpoint", imds.url)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "azimds: approval of NOPE refused: Bad request. EventId NOPE is not a current event.\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--watch", "--approve", "X"], "azimds: --approve ID does not combine with --watch; use --approve-all"),
    (["--approve", "X", "--approve-all"], "azimds events: argument --approve-all: not allowed with argument --approve"),
    (["--approve"], "azimds events: argument --approve: expected at least one argument"),
])
def test_cli_usage_errors(imds: Emulator, args: list[str], message: str) -> None:
    done = azimds("events", *args, "--endpoint", imds.url)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1


def test_cli_no_answer_exits_2() -> None:
    done = azimds("events", "--endpoint", "http://127.0.0.1:9", "--deadline", "0.3")
    assert done.returncode == 2 and done.stderr.startswith("azimds: no answer from http://127.0.0.1:9: ")


class Watch:
    """``azimds events --watch`` as a process, its lines read as they come."""

    def __init__(self, imds: Emulator, *args: str) -> None:
        self.proc = subprocess.Popen([*CLI, "events", "--watch", "--endpoint", imds.url, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def incarnation(self) -> tuple[int, list[str]]:
        """The next line's DocumentIncarnation and event statuses."""
        doc = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        return doc["DocumentIncarnation"], [e["EventStatus"] for e in doc["Events"]]

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, err


@pytest.fixture
def real_time() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def test_cli_watch_prints_a_line_per_incarnation_and_exits_0_on_ctrl_c(real_time: Emulator) -> None:
    watch = Watch(real_time)
    try:
        assert watch.incarnation() == (1, [])
        event_id = schedule(real_time)
        assert watch.incarnation() == (2, ["Scheduled"])
        control(real_time, "POST", f"/v1/events/{event_id}/start")
        assert watch.incarnation() == (3, ["Started"])
    finally:
        code, err = watch.interrupt()
    assert (code, err) == (0, "")


def test_cli_watch_approve_all_approves_as_events_appear(real_time: Emulator) -> None:
    watch = Watch(real_time, "--approve-all")
    try:
        assert watch.incarnation() == (1, [])
        event_id = schedule(real_time)
        assert watch.incarnation() == (2, ["Scheduled"])
        assert watch.incarnation() == (3, ["Started"])
    finally:
        code, err = watch.interrupt()
    assert (code, err) == (0, f"azimds: approved {event_id}\n")


def test_cli_watch_ends_quietly_when_its_reader_goes(real_time: Emulator) -> None:
    watch = Watch(real_time)
    assert watch.incarnation() == (1, [])
    watch.proc.stdout.close()  # type: ignore[union-attr]
    schedule(real_time)  # the next line meets a closed pipe
    assert watch.proc.wait(timeout=10) == 0
    assert watch.proc.stderr.read() == ""  # type: ignore[union-attr]
