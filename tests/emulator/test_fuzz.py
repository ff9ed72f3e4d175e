"""Fuzzing both ports in the suite (bounded to well under a minute): raw bytes, headers and JSON bodies, with
and without the control plane's token, must never get a 5xx, and both ports must still serve afterwards.
``make fuzz`` runs the same kinds of input, a million requests and more (scripts/fuzz.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azimds import Emulator
from tests.support import fetch

FLEET = {"fleet": {"vms": [{"addresses": ["127.0.0.2"], "availabilitySet": "db", "compute": {"name": "db-1"}}],
                   "scaleSets": [{"name": "web", "capacity": 20, "addresses": "127.1.0.0"}]}}
ROUTES = ["/v1/metadata", "/v1/metadata/compute", "/v1/metadata/compute/tags", "/v1/metadata/network/interface/0",
          "/v1/metadata/compute/tagsList/0", "/v1/tags", "/v1/events", "/v1/events/X/approve", "/v1/events/X/start",
          "/v1/events/X/cancel", "/v1/clock", "/v1/faults", "/v1/journal", "/v1/fleet/walk", "/v1/reset",
          "/metrics", "/openapi.json", "/v1/nothing"]
QUERIES = ["", "?vm=db-1", "?vm=web_3", "?vm=nobody", "?vm=", "?by=web_1", "?limit=-1", "?since=x", "?path=*"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=True)
    | st.text(max_size=20) | st.sampled_from(["Freeze", "Reboot", "Platform", "\ud800", "web_3", "db-1"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "resources", "notBefore", "notice", "advance", "speed", "time", "path", "status",
                         "latency", "drop", "spec", "set", "gap", "compute", "tags", "name", "eventId",
                         "durationInSeconds", "started", "approval", "x"]) | st.text(max_size=8),
        children, max_size=5),
    max_leaves=12)


@pytest.fixture(scope="module")
def world() -> Iterator[Emulator]:
    with Emulator(FLEET, clock="manual") as imds:
        yield imds


def exchange(url: str, raw: bytes, source: str | None = None) -> list[int]:
    """Send ``raw``, read what comes back until the server closes or goes quiet: the statuses answered."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2,
                                  source_address=(source, 0) if source else None) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return [int(line.split(b" ")[1]) for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")
            and line[9:12].isdigit()]


def still_serving(world: Emulator) -> None:
    assert fetch(world.url, "/metadata/versions").status == 200
    assert fetch(world.control_url, "/v1/clock", metadata=False,
                 headers={"Authorization": f"Bearer {world.token}"}).status == 200


FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
       route=st.sampled_from(ROUTES), query=st.sampled_from(QUERIES), body=json_values,
       token=st.sampled_from(["good", "bad", "none"]))
def test_json_bodies_on_the_control_plane(world, method, route, query, body, token):
    text = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    headers = {"good": f"Authorization: Bearer {world.token}\r\n", "bad": "Authorization: Bearer x\r\n",
               "none": ""}[token]
    raw = (f"{method} {route}{query} HTTP/1.1\r\nHost: c\r\n{headers}Content-Type: application/json\r\n"
           f"Content-Length: {len(text)}\r\n\r\n").encode() + text
    statuses = exchange(world.control_url, raw)
    assert all(status < 500 for status in statuses), statuses


@FUZZ
@given(data=st.binary(max_size=512), port=st.sampled_from(["metadata", "control"]))
def test_raw_bytes_on_both_ports(world, data, port):
    url = world.url if port == "metadata" else world.control_url
    statuses = exchange(url, data)
    assert all(status < 500 for status in statuses), statuses


@FUZZ
@given(name=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
       value=st.binary(max_size=64), path=st.sampled_from(["/metadata/instance?api-version=2021-02-01",
                                                           "/metadata/scheduledevents?api-version=2020-07-01",
                                                           "/metadata/identity/oauth2/token?api-version=2018-02-01"
                                                           "&resource=https://management.azure.com/",
                                                           "/v1/events"]),
       source=st.sampled_from([None, "127.0.0.2", "127.1.0.5", "127.9.9.9"]))
def test_headers_on_both_ports(world, name, value, path, source):
    url = world.control_url if path.startswith("/v1") else world.url
    raw = (f"GET {path} HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nAuthorization: Bearer {world.token}\r\n"
           f"{name}: ").encode() + value.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n\r\n"
    statuses = exchange(url, raw, source)
    assert all(status < 500 for status in statuses), statuses


@FUZZ
@given(body=json_values, source=st.sampled_from([None, "127.0.0.2", "127.1.0.5"]))
def test_approvals_of_any_shape(world, body, source):
    text = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    raw = (f"POST /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n"
           f"Content-Length: {len(text)}\r\n\r\n").encode() + text
    statuses = exchange(world.url, raw, source)
    assert statuses and all(status in (200, 400) for status in statuses), statuses


def test_both_ports_still_serve_after_the_fuzzing(world):
    still_serving(world)
