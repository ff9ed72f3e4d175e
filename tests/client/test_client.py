"""azimds.client against the in-process emulator over real sockets: accessors, tags, version fallback,
Microsoft's retry rules under every fault kind (retries counted in the server's journal), deadlines,
the rate limiter, proxies, and capture/redact.

Backoff schedules are checked at their real values without real waiting: a VirtualTime clock moves only
when the client sleeps (plus the real time requests take).
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from azimds import Emulator
from azimds.azure import INSTANCE_VERSIONS
from azimds.client import (
    DEFAULT_API_VERSION,
    PROCESS_LIMITER,
    ZERO_GUID,
    Backoff,
    Client,
    ImdsError,
    ImdsUnavailable,
    NotFound,
    TokenBucket,
    capture,
    parse_tags,
    redact,
    tags_of,
)
from azimds.emulator.model.faults import FaultRule as Fault
from tests.support import fetch

COMPUTE = "/metadata/instance/compute"
#: Short waits for tests that must really wait (latency, deadlines): the shape of the default, scaled down.
FAST = Backoff(delta=0.01, cap=0.05, gone_for=0.2, server_error_min=0.01, min_attempt=0.05)
TRICKY_TAGS = {"tag_key": "value:with:colons", "semi": "a;b", "empty": "", "ünï": "çödé"}


class VirtualTime:
    """A clock that jumps forward by what the client sleeps; records every sleep."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


def virtual_client(shared_vm: Emulator, vt: VirtualTime, **kwargs) -> Client:
    """A client with the real default backoff, in virtual time, jitter neutral, no rate limiter."""
    return Client(shared_vm.url, limiter=None, sleep=vt.sleep, clock=vt.clock, rng=lambda: 0.5, **kwargs)


def statuses(shared_vm: Emulator, path: str = COMPUTE) -> list[int]:
    return [entry.status for entry in shared_vm.journal if urlsplit(entry.url).path == path]


def versions_sent(shared_vm: Emulator) -> list[tuple[str | None, int]]:
    return [(parse_qs(urlsplit(e.url).query).get("api-version", [None])[0], e.status) for e in shared_vm.journal]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emulator(*faults: Fault, **kwargs) -> Emulator:
    return Emulator(faults=list(faults), **kwargs)


# -- accessors -------------------------------------------------------------------------------------------

def test_typed_accessors_read_the_vm(shared_vm: Emulator) -> None:
    client = Client(shared_vm.url, limiter=None)
    compute = shared_vm.vm.instance["compute"]
    nic = shared_vm.vm.instance["network"]["interface"][0]
    assert client.vm_id() == compute["vmId"] and len(compute["vmId"]) == 36
    assert client.name() == compute["name"] == "web-01"
    assert client.location() == compute["location"] == "eastus"
    assert client.subscription_id() == compute["subscriptionId"]
    assert client.resource_id() == (f"/subscriptions/{compute['subscriptionId']}/resourceGroups/"
                                    "app-prod-rg/providers/Microsoft.Compute/virtualMachines/web-01")
    assert client.tags()["tag_key"] == "configured-by-tag"
    assert client.tags()["Owner"] == "ops:team-a"
    assert client.user_data() == b"#!/bin/sh\necho 'hello from userData'\n"
    assert client.private_ips() == ["10.0.0.4"]
    assert client.public_ips() == ["20.115.74.12"]
    assert client.mac_addresses() == [nic["macAddress"]] and len(nic["macAddress"]) == 12
    assert client.versions() == list(INSTANCE_VERSIONS[1:])  # 2017-03-01, the preview, is not served
    assert set(client.instance()) == {"compute", "network"}
    balancer = client.load_balancer()
    assert balancer is not None and balancer["inboundRules"][0]["backendPort"] == 8080


def test_raw_get_returns_json_or_text(shared_vm: Emulator) -> None:
    client = Client(shared_vm.url, limiter=None)
    assert client.get("instance/compute/vmId", text=True) == shared_vm.vm.instance["compute"]["vmId"]
    assert client.get("/metadata/instance/network/interface/0/ipv4/ipAddress/0") == {
        "privateIpAddress": "10.0.0.4", "publicIpAddress": ""}
    assert client.get("instance/compute/tags", text=True) == \
        "Environment:Production;Department:IT;tag_key:configured-by-tag;Owner:ops:team-a"
    newest = INSTANCE_VERSIONS[-1]
    assert "physicalZone" in client.get("instance/compute", api_version=newest)
    assert "physicalZone" not in client.get("instance/compute")  # the pinned 2021-02-01 predates it


def test_scheduled_events_get_a_version_of_their_own_family(shared_vm: Emulator) -> None:
    doc = Client(shared_vm.url, limiter=None).get("scheduledevents")
    assert isinstance(doc["DocumentIncarnation"], int) and isinstance(doc["Events"], list)
    assert "api-version=2020-07-01" in shared_vm.journal[-1].url


def test_user_data_is_empty_bytes_when_none() -> None:
    with Emulator({"compute": {"name": "bare"}}) as imds:
        assert Client(imds.url, limiter=None).user_data() == b""


def test_load_balancer_is_none_without_one_and_not_retried(vt: VirtualTime) -> None:
    with Emulator({"compute": {"name": "no-lb"}}) as imds:
        assert virtual_client(imds, vt).load_balancer() is None
        assert statuses(imds, "/metadata/loadbalancer") == [404]
        assert vt.sleeps == []


def test_facts_are_cached_and_the_rest_read_fresh(shared_vm: Emulator) -> None:
    client = Client(shared_vm.url, limiter=None)
    before = len(shared_vm.journal)
    facts = (client.vm_id(), client.name(), client.location(), client.subscription_id(), client.resource_id())
    assert len(shared_vm.journal) == before + 1  # one compute document gave all five
    assert (client.vm_id(), client.name(), client.location(), client.subscription_id(),
            client.resource_id()) == facts
    assert len(shared_vm.journal) == before + 1
    client.tags()
    client.tags()
    client.user_data()
    client.private_ips()
    assert len(shared_vm.journal) == before + 5


def test_a_tags_read_remembers_the_facts(shared_vm: Emulator) -> None:
    client = Client(shared_vm.url, limiter=None)
    client.tags()
    before = len(shared_vm.journal)
    client.vm_id()
    assert len(shared_vm.journal) == before


# -- tags ------------------------------------------------------------------------------------------------

def test_tags_from_tags_list_keep_colons_and_semicolons() -> None:
    with Emulator({"compute": {"tags": TRICKY_TAGS}}) as imds:
        assert Client(imds.url, limiter=None).tags() == TRICKY_TAGS


def test_tags_from_the_string_on_hosts_without_tags_list() -> None:
    with Emulator({"compute": {"tags": TRICKY_TAGS}}, newest_version="2019-06-01") as imds:
        tags = Client(imds.url, limiter=None).tags()
    # ':' in a value survives; ';' in a value cannot be told from the separator (documented).
    assert tags == {"tag_key": "value:with:colons", "semi": "a", "b": "", "empty": "", "ünï": "çödé"}


@pytest.mark.parametrize(("text", "expected"), [
    ("", {}),
    ("a:1", {"a": "1"}),
    ("a:1;b:2", {"a": "1", "b": "2"}),
    ("owner:ops:team-a", {"owner": "ops:team-a"}),
    ("empty:;novalue", {"empty": "", "novalue": ""}),
    ("k:a;b", {"k": "a", "b": ""}),
    (";;a:1;", {"a": "1"}),
])
def test_parse_tags(text: str, expected: dict[str, str]) -> None:
    assert parse_tags(text) == expected


def test_tags_of_prefers_tags_list() -> None:
    compute = {"tags": "k:a;b", "tagsList": [{"name": "k", "value": "a;b"}]}
    assert tags_of(compute) == {"k": "a;b"}
    assert tags_of({"tags": "k:a;b"}) == {"k": "a", "b": ""}
    assert tags_of({}) == {}


# -- api-version fallback --------------------------------------------------------------------------------

def test_falls_back_to_the_newest_version_once_and_remembers_it() -> None:
    with Emulator(newest_version="2019-06-01") as imds:
        client = Client(imds.url, limiter=None)
        assert client.api_version == DEFAULT_API_VERSION
        assert client.vm_id() == imds.vm.instance["compute"]["vmId"]
        assert versions_sent(imds) == [(DEFAULT_API_VERSION, 400), ("2019-06-01", 200)]
        assert client.api_version == "2019-06-01"
        client.tags()
        assert versions_sent(imds)[2:] == [("2019-06-01", 200)]  # no second 400
        assert "userData" not in client.compute()
        with pytest.raises(NotFound, match="userData is not served at api-version 2019-06-01"):
            client.user_data()


def test_falls_back_only_once() -> None:
    with Emulator(newest_version="2019-06-01") as imds:
        client = Client(imds.url, limiter=None)
        client.vm_id()
        # The load balancer needs 2020-10-01: its 400 names newer versions, but the one fallback is spent.
        with pytest.raises(ImdsError) as caught:
            client.load_balancer()
        assert caught.value.status == 400 and "newest versions" in str(caught.value)
        assert client.api_version == "2019-06-01"


def test_an_explicit_api_version_is_never_replaced() -> None:
    with Emulator(newest_version="2019-06-01") as imds:
        client = Client(imds.url, limiter=None)
        with pytest.raises(ImdsError) as caught:
            client.get("instance", api_version="2021-02-01")
        assert caught.value.status == 400
        assert "newest versions: 2019-06-01, 2019-04-30, 2019-03-11" in str(caught.value)
        assert client.api_version == DEFAULT_API_VERSION
        assert len(imds.journal) == 1


def test_newest_version() -> None:
    with Emulator(newest_version="2021-12-13") as imds:
        assert Client(imds.url, limiter=None).newest_version() == "2021-12-13"


# -- retries: the real schedule, in virtual time -----------------------------------------------------------

def test_default_backoff_schedule() -> None:
    backoff = Backoff()
    assert [backoff.delay(n, None, 0.5) for n in range(7)] == [0, 2, 6, 14, 30, 60, 60]
    assert backoff.delay(3, None, 0.0) == pytest.approx(14 * 0.8)
    assert backoff.delay(3, None, 0.999999) == pytest.approx(14 * 1.2, rel=1e-5)
    assert backoff.delay(6, None, 0.999999) == 60  # the cap holds after jitter
    assert [backoff.delay(n, 503, 0.5) for n in range(3)] == [1, 2, 6]  # 5xx: at least 1 s
    assert [backoff.delay(n, 429, 0.5) for n in range(3)] == [0, 2, 6]


def test_default_retry_budget() -> None:
    backoff = Backoff()
    for status in (None, 429, 500, 503):
        assert [backoff.allows(n, status, 0.0) for n in range(6)] == [True] * 5 + [False]
    assert [backoff.allows(n, 404, 0.0) for n in range(4)] == [True] * 3 + [False]
    assert backoff.allows(9, 410, 69.9) and not backoff.allows(9, 410, 70.0)
    for status in (400, 401, 403, 405):
        assert not backoff.allows(0, status, 0.0)


def test_404_is_retried_then_answered(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, status=404, first=2)) as imds:
        assert virtual_client(imds, vt).tags()["tag_key"] == "configured-by-tag"
        assert statuses(imds) == [404, 404, 200]
    assert vt.sleeps == [0, 2]


def test_404_gives_up_after_three_retries(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, status=404)) as imds:
        with pytest.raises(NotFound, match=r"not found: /metadata/instance/compute \(4 attempts"):
            virtual_client(imds, vt).tags()
        assert statuses(imds) == [404] * 4
    assert vt.sleeps == [0, 2, 6]


def test_410_is_retried_past_70_seconds_within_the_deadline(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, status=410, first=6)) as imds:
        assert virtual_client(imds, vt).vm_id()  # default deadline: 90 s
        assert statuses(imds) == [410] * 6 + [200]
    # 0, 2, 6, 14, 30 then 60, shortened so that the last try starts 1 s before the deadline (at ~89 s).
    assert vt.sleeps[:5] == [0, 2, 6, 14, 30]
    assert vt.sleeps[5] == pytest.approx(37, abs=0.5)
    assert sum(vt.sleeps) > 70


def test_410_stops_once_70_seconds_have_passed(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, status=410)) as imds:
        with pytest.raises(ImdsUnavailable) as caught:
            virtual_client(imds, vt, deadline=300).vm_id()
        assert statuses(imds) == [410] * 7  # tries at 0, 0, 2, 8, 22, 52 and 112 s
    assert vt.sleeps == [0, 2, 6, 14, 30, 60]
    assert caught.value.status == 410 and "7 attempts" in str(caught.value)


def test_429_waits_for_retry_after(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, status=429, retry_after=3, first=1)) as imds:
        virtual_client(imds, vt).tags()
        assert statuses(imds) == [429, 200]
    assert vt.sleeps == [3]


def test_retry_after_past_the_deadline_gives_up_at_once(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, status=429, retry_after=30)) as imds:
        with pytest.raises(ImdsUnavailable) as caught:
            virtual_client(imds, vt, deadline=5).tags()
        assert statuses(imds) == [429]
    assert vt.sleeps == []
    assert caught.value.status == 429


def test_retry_after_is_really_waited() -> None:
    with emulator(Fault(path=COMPUTE, status=429, retry_after=1, first=1)) as imds:
        Client(imds.url, limiter=None, backoff=FAST).tags()
        first, second = [e for e in imds.journal if urlsplit(e.url).path == COMPUTE]
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 0.99


def test_500_is_retried_after_at_least_a_second(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, status=500, first=2)) as imds:
        virtual_client(imds, vt).tags()
        assert statuses(imds) == [500, 500, 200]
    assert vt.sleeps == [1, 2]


def test_5xx_gives_up_after_five_retries(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, status=503)) as imds:
        with pytest.raises(ImdsUnavailable) as caught:
            virtual_client(imds, vt).tags()
        assert statuses(imds) == [503] * 6
    assert vt.sleeps == [1, 2, 6, 14, 30]
    assert caught.value.status == 503 and "Service Unavailable" in str(caught.value)


@pytest.mark.parametrize("status", [401, 403, 405, 422])
def test_other_4xx_are_final(vt: VirtualTime, status: int) -> None:
    with emulator(Fault(path=COMPUTE, status=status)) as imds:
        with pytest.raises(ImdsError) as caught:
            virtual_client(imds, vt).tags()
        assert statuses(imds) == [status]
    assert type(caught.value) is ImdsError and caught.value.status == status
    assert vt.sleeps == []


def test_a_leaf_without_text_is_a_final_400(vt: VirtualTime, shared_vm: Emulator) -> None:
    before = len(shared_vm.journal)
    with pytest.raises(ImdsError) as caught:
        virtual_client(shared_vm, vt).get("instance/compute/vmId")
    assert caught.value.status == 400 and "Bad request" in str(caught.value)
    assert len(shared_vm.journal) == before + 1 and vt.sleeps == []


def test_dropped_connections_are_retried(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, drop=True, first=2)) as imds:
        assert virtual_client(imds, vt).vm_id()
        assert statuses(imds) == [0, 0, 200]
    assert vt.sleeps == [0, 2]


def test_connections_always_dropped_give_up(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, drop=True)) as imds:
        with pytest.raises(ImdsUnavailable, match="connection closed without an answer") as caught:
            virtual_client(imds, vt).vm_id()
        assert statuses(imds) == [0] * 6
    assert caught.value.status is None
    assert vt.sleeps == [0, 2, 6, 14, 30]


def test_no_listener_is_retried_then_unavailable(vt: VirtualTime) -> None:
    client = Client(f"http://127.0.0.1:{closed_port()}", limiter=None, sleep=vt.sleep, clock=vt.clock,
                    rng=lambda: 0.5)
    with pytest.raises(ImdsUnavailable, match=r"refused.*6 attempts"):
        client.vm_id()
    assert vt.sleeps == [0, 2, 6, 14, 30]


def test_jitter_spreads_the_waits(vt: VirtualTime) -> None:
    with emulator(Fault(path=COMPUTE, status=500, first=3)) as imds:
        Client(imds.url, limiter=None, sleep=vt.sleep, clock=vt.clock, rng=lambda: 0.0).tags()
    assert vt.sleeps == [1, pytest.approx(1.6), pytest.approx(4.8)]


# -- deadlines (real time) ---------------------------------------------------------------------------------

def test_latency_past_the_deadline_times_out() -> None:
    with emulator(Fault(path=COMPUTE, latency=3)) as imds:
        started = time.monotonic()
        with pytest.raises(ImdsUnavailable, match="timed out"):
            Client(imds.url, limiter=None, backoff=FAST, deadline=0.3).vm_id()
        assert time.monotonic() - started < 1.0


def test_latency_within_the_deadline_is_waited_for() -> None:
    with emulator(Fault(path=COMPUTE, latency=0.2, first=1)) as imds:
        assert Client(imds.url, limiter=None, backoff=FAST, deadline=2).vm_id()
        (entry,) = [e for e in imds.journal if urlsplit(e.url).path == COMPUTE]
    assert entry.status == 200 and entry.latency >= 0.2


def test_the_constructor_deadline_bounds_all_retries() -> None:
    with emulator(Fault(path=COMPUTE, status=500)) as imds:
        client = Client(imds.url, limiter=None, backoff=Backoff(delta=0.1, cap=0.1, server_error_min=0.1,
                                                                 retries=1000, min_attempt=0.01), deadline=0.6)
        started = time.monotonic()
        with pytest.raises(ImdsUnavailable):
            client.tags()
        elapsed = time.monotonic() - started
        attempts = len(statuses(imds))
    assert 0.5 <= elapsed < 1.0
    assert attempts >= 4  # it kept retrying until the deadline, no longer


def test_a_call_deadline_overrides_the_default() -> None:
    with emulator(Fault(path=COMPUTE, status=500)) as imds:
        client = Client(imds.url, limiter=None, backoff=FAST, deadline=60)
        started = time.monotonic()
        with pytest.raises(ImdsUnavailable):
            client.tags(deadline=0.2)
    assert time.monotonic() - started < 0.6


def test_deadlines_must_be_positive(shared_vm: Emulator) -> None:
    with pytest.raises(ValueError):
        Client(shared_vm.url, deadline=0)
    with pytest.raises(ValueError):
        Client(shared_vm.url, limiter=None).tags(deadline=-1)


# -- rate limit --------------------------------------------------------------------------------------------

def test_token_bucket_schedule() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    bucket = TokenBucket(rate=5, burst=5, clock=lambda: now[0], sleep=sleep)
    assert all(bucket.acquire(timeout=0) for _ in range(5)) and slept == []
    assert not bucket.acquire(timeout=0.1)  # the next token is 0.2 s away: refused, nothing taken
    assert bucket.acquire(timeout=1) and slept == [pytest.approx(0.2)]
    assert bucket.acquire(timeout=1) and slept[-1] == pytest.approx(0.4)  # queued behind the last
    now[0] = 10.0
    assert bucket.acquire(timeout=0) and slept[-1] == pytest.approx(0.4)  # refilled: no new sleep


def test_token_bucket_is_shared_safely_by_threads() -> None:
    bucket = TokenBucket(rate=200, burst=1)
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [bucket.acquire(5) for _ in range(10)]) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 59 / 200 - 0.01


def test_the_process_limiter_is_the_default() -> None:
    client = Client("http://127.0.0.1:1")
    assert client.limiter is PROCESS_LIMITER
    assert (PROCESS_LIMITER.rate, PROCESS_LIMITER.burst) == (5.0, 4.0)


def test_the_limiter_keeps_a_client_under_the_service_limit() -> None:
    with Emulator(rate_limit=50) as imds:
        client = Client(imds.url, limiter=TokenBucket(rate=50, burst=49))  # as the default: 1 token spare
        started = time.monotonic()
        threads = [threading.Thread(target=lambda: [client.versions() for _ in range(25)]) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        answered = [entry.status for entry in imds.journal]
    assert answered == [200] * 75  # no 429
    assert elapsed >= (75 - 49) / 50 - 0.01


def test_the_default_limiter_keeps_a_process_under_the_real_limit() -> None:
    with Emulator(rate_limit=5) as imds:  # the real service's 5 requests/second
        limiter = TokenBucket(PROCESS_LIMITER.rate, PROCESS_LIMITER.burst)  # the default's settings, fresh
        client = Client(imds.url, limiter=limiter)
        for _ in range(10):
            client.versions()
        assert [entry.status for entry in imds.journal] == [200] * 10


def test_the_limiter_respects_the_deadline(shared_vm: Emulator) -> None:
    client = Client(shared_vm.url, limiter=TokenBucket(rate=1, burst=1))
    client.versions()
    with pytest.raises(ImdsUnavailable, match="deadline reached before a request"):
        client.versions(deadline=0.3)


# -- endpoint, proxies, probe ------------------------------------------------------------------------------

def test_endpoint_from_argument_environment_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZIMDS_ENDPOINT", raising=False)
    assert Client().endpoint == "http://169.254.169.254"
    monkeypatch.setenv("AZIMDS_ENDPOINT", "http://127.0.0.1:8169/metadata")
    assert Client().endpoint == "http://127.0.0.1:8169"
    assert Client("http://[::1]:80/").endpoint == "http://[::1]:80"


@pytest.mark.parametrize("endpoint", ["ftp://h", "http://h/other", "127.0.0.1:8169", "http://h:99999",
                                      "http://h?x=1", "http://"])
def test_bad_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        Client(endpoint)


def test_proxy_variables_are_ignored(shared_vm: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = Client(shared_vm.url, limiter=None, backoff=FAST, deadline=2)
    assert client.tags()["tag_key"] == "configured-by-tag"
    assert shared_vm.journal[-1].peer == "127.0.0.1" and urlsplit(shared_vm.journal[-1].url).path == COMPUTE


def test_is_azure_against_the_emulator(shared_vm: Emulator) -> None:
    assert Client(shared_vm.url, limiter=None).is_azure()


def test_is_azure_is_quick_and_false_with_nothing_listening() -> None:
    started = time.monotonic()
    assert not Client(f"http://127.0.0.1:{closed_port()}", limiter=None).is_azure(timeout=0.5)
    assert time.monotonic() - started < 0.5


@pytest.fixture(scope="module")
def other_server() -> Iterator[str]:
    """A plain HTTP server answering 200 "hello" to everything."""

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)  # shutdown() waits a poll
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_is_azure_is_false_for_another_http_server(other_server: str) -> None:
    assert not Client(other_server, limiter=None).is_azure()


def test_a_non_json_answer_is_an_error(other_server: str) -> None:
    with pytest.raises(ImdsError, match=r"the answer is not JSON; is http://127\.0\.0\.1:[0-9]+ an IMDS"):
        Client(other_server, limiter=None).versions()


def test_is_azure_tries_once_and_knows_a_throttled_imds() -> None:
    with emulator(Fault(path="/metadata/versions", status=429, retry_after=5)) as imds:
        assert Client(imds.url, limiter=None).is_azure()
        assert statuses(imds, "/metadata/versions") == [429]
    with emulator(Fault(path="/metadata/versions", drop=True)) as imds:
        assert not Client(imds.url, limiter=None).is_azure()
        assert statuses(imds, "/metadata/versions") == [0]


# -- capture and redact ------------------------------------------------------------------------------------

RAW_PATHS = [
    "/metadata/instance?api-version=2025-04-07",
    "/metadata/instance?api-version=2019-06-01",
    "/metadata/instance/compute/tags?api-version=2021-02-01&format=text",
    "/metadata/loadbalancer?api-version=2025-04-07",
    "/metadata/versions",
    "/metadata/instance",
]


def test_capture_serves_back_byte_identical(shared_vm: Emulator) -> None:
    profile = capture(Client(shared_vm.url, limiter=None))
    assert profile["azimds"] == {"newestVersion": "2025-04-07"}
    with Emulator(json.loads(json.dumps(profile))) as copy:
        for path in RAW_PATHS:
            original, served = fetch(shared_vm.url, path), fetch(copy.url, path)
            assert (served.status, served.body) == (original.status, original.body), path


def test_capture_keeps_an_older_hosts_versions() -> None:
    with Emulator(newest_version="2020-09-01") as old:
        profile = capture(Client(old.url, limiter=None))
        assert "loadbalancer" not in profile  # too old for the endpoint: not asked
        with Emulator(profile) as copy:
            for path in ("/metadata/versions", "/metadata/instance?api-version=2020-09-01", "/metadata/instance"):
                assert fetch(copy.url, path).body == fetch(old.url, path).body, path


@pytest.fixture(scope="module")
def captured() -> Iterator[dict]:
    with Emulator() as imds:
        yield capture(Client(imds.url, limiter=None))


def test_redact_blanks_secrets_and_replaces_identifiers(captured: dict) -> None:
    redacted = redact(captured)
    text = json.dumps(redacted)
    compute = captured["compute"]
    for secret in (compute["subscriptionId"], compute["vmId"], "web-01", "app-prod-rg", "20.115.74.12",
                   compute["userData"], compute["publicKeys"][0]["keyData"]):
        assert secret not in text
    rc = redacted["compute"]
    assert (rc["subscriptionId"], rc["vmId"]) == (ZERO_GUID, ZERO_GUID)
    assert rc["resourceId"] == (f"/subscriptions/{ZERO_GUID}/resourceGroups/redacted-rg/providers/"
                                "Microsoft.Compute/virtualMachines/redacted-vm")
    assert (rc["name"], rc["resourceGroupName"], rc["osProfile"]["computerName"]) == \
        ("redacted-vm", "redacted-rg", "redacted-vm")
    assert rc["userData"] == "" and rc["publicKeys"][0]["keyData"] == ""
    assert rc["publicKeys"][0]["path"] == "/home/azureuser/.ssh/authorized_keys"
    os_disk = rc["storageProfile"]["osDisk"]
    assert os_disk["name"] == "redacted-vm-osdisk"
    assert os_disk["managedDisk"]["id"].endswith("/resourceGroups/redacted-rg/providers/Microsoft.Compute/"
                                                 "disks/redacted-vm-osdisk")
    nic_ip = redacted["network"]["interface"][0]["ipv4"]["ipAddress"][0]
    assert nic_ip == {"privateIpAddress": "10.0.0.4", "publicIpAddress": ""}  # behind a Standard load balancer
    lb = redacted["loadbalancer"]
    assert {rule["frontendIpAddress"] for group in lb.values() for rule in group} == {"203.0.113.1"}
    assert rc["tags"] == compute["tags"] and rc["tagsList"] == compute["tagsList"]
    assert captured["compute"]["name"] == "web-01"  # the original is untouched


def test_redact_takes_the_admin_name_out_of_public_key_paths() -> None:
    """Real captures (2019-2023) put keys at /home/<adminUsername>/.ssh/authorized_keys: the name goes there too."""
    profile = {"compute": {"name": "vm1", "osProfile": {"adminUsername": "chgeuer", "computerName": "vm1"},
                           "publicKeys": [{"keyData": "ssh-rsa AAAAB3Nza\r\nC1yc2E= generated-by-azure\r\n",
                                           "path": "/home/chgeuer/.ssh/authorized_keys"}]}}
    redacted = redact(profile)
    assert "chgeuer" not in json.dumps(redacted)
    assert redacted["compute"]["publicKeys"] == [{"keyData": "", "path": "/home/azureuser/.ssh/authorized_keys"}]


def test_redact_rewrites_every_name_inside_resource_ids() -> None:
    sub = "11111111-2222-3333-4444-555555555555"
    vault = f"/subscriptions/{sub}/resourceGroups/Vault-RG/providers/Microsoft.KeyVault/vaults/corp-vault"
    profile = {"compute": {"subscriptionId": sub, "resourceGroupName": "app-rg", "name": "vm1",
                           "storageProfile": {"osDisk": {"encryptionSettings": {"diskEncryptionKey": {
                               "secretUrl": "https://corp-vault.vault.azure.net/secrets/k/1",
                               "sourceVault": {"id": vault}}}}},
                           "virtualMachineScaleSet": {"id": f"/subscriptions/{sub}/resourceGroups/app-rg/providers/"
                                                            "Microsoft.Compute/virtualMachineScaleSets/web-ss"}},
               "network": {"interface": [{"ipv4": {"ipAddress": [{"privateIpAddress": "10.1.0.4",
                                                                  "publicIpAddress": "2603:1030::5"}]}}]}}
    redacted = redact(profile)
    key = redacted["compute"]["storageProfile"]["osDisk"]["encryptionSettings"]["diskEncryptionKey"]
    assert key["secretUrl"] == ""
    assert key["sourceVault"]["id"] == (f"/subscriptions/{ZERO_GUID}/resourceGroups/redacted-rg-1/providers/"
                                        "Microsoft.KeyVault/vaults/redacted-name-1")
    assert redacted["compute"]["virtualMachineScaleSet"]["id"].endswith(
        "/resourceGroups/redacted-rg/providers/Microsoft.Compute/virtualMachineScaleSets/redacted-name-2")
    assert redacted["network"]["interface"][0]["ipv4"]["ipAddress"][0]["publicIpAddress"] == "2001:db8::1"
    assert "corp" not in json.dumps(redacted) and sub not in json.dumps(redacted)


def test_a_redacted_profile_is_served(captured: dict) -> None:
    with Emulator(redact(captured)) as imds:
        client = Client(imds.url, limiter=None)
        assert client.subscription_id() == ZERO_GUID
        assert client.public_ips() == ["203.0.113.1"]
        assert client.tags()["tag_key"] == "configured-by-tag"
        assert client.user_data() == b""
        assert base64.b64decode(captured["compute"]["userData"]).startswith(b"#!/bin/sh")
