"""No request yields a 5xx: malformed, deeply nested or wrongly shaped bodies are refused with 400 and a reason."""

from __future__ import annotations

import json

import pytest

from azimds import Emulator
from tests.support import fetch

SE = "/metadata/scheduledevents?api-version=2020-07-01"


@pytest.fixture(scope="module")
def emu():
    with Emulator() as imds:
        yield imds


def control(emu, method: str, path: str, raw: bytes | None):
    return fetch(emu.control_url, path, method=method, body=raw, metadata=False,
                 headers={"Authorization": f"Bearer {emu.token}"})


@pytest.mark.parametrize("method, path, raw, reason", [
    ("PUT", "/v1/metadata/compute", b'"x"', "compute: Input should be a valid dictionary"),
    ("PUT", "/v1/metadata/compute", b"[" * 5000, "nests deeper than 64 levels"),
    ("POST", "/v1/events", b"[" * 995 + b"]" * 995, "nests deeper than 64 levels"),
    ("PATCH", "/v1/metadata", b'{"network": 5}', "network: Input should be a valid dictionary"),
    ("PATCH", "/v1/metadata", b"[1]", "Input should be a valid dictionary"),
    ("PATCH", "/v1/metadata/compute", b"[1]", "compute: Input should be a valid dictionary"),
    ("PUT", "/v1/metadata/compute/name/x", b'"y"', "compute/name is a value"),
    ("PUT", "/v1/metadata/network/interface/0", b"5", "network.interface[0]: Input should be a valid dictionary"),
    ("PUT", "/v1/metadata/loadbalancer", b"[]", "loadbalancer: Input should be a valid dictionary"),
    ("PUT", "/v1/tags", b'{"a": {"b": "c"}}', "the body is invalid"),
    ("POST", "/v1/clock", b'{"advance": "5"}', "advance: Input should be a valid number"),
    ("POST", "/v1/faults", b'{"path": "/x", "status": true}', "the body is invalid"),
    ("POST", "/v1/events", b"\xff\xfe", "not UTF-8"),
    ("POST", "/v1/events", b"{", "not JSON"),
])
def test_bad_bodies_are_400_with_a_reason_and_change_nothing(emu, method, path, raw, reason):
    before = control(emu, "GET", "/v1/metadata", None).body
    reply = control(emu, method, path, raw)
    assert reply.status == 400, reply
    answer = json.loads(reply.body)
    assert reason in answer["error"] + " " + " ".join(answer.get("problems", [])), answer
    assert control(emu, "GET", "/v1/metadata", None).body == before


def test_a_vm_cannot_make_the_events_endpoint_fail(emu):
    for body in (b"[" * 5000, b"{" * 5000, b'{"StartRequests":' * 3000, b"\xff" * 100, b"null", b"1e999999"):
        reply = fetch(emu.url, SE, method="POST", body=body)
        assert (reply.status, reply.body) == (400, b'{"error":"Bad request. The request body is malformed."}')
    assert fetch(emu.url, SE).status == 200
