"""Property tests: whatever paths, queries, headers, methods or bytes arrive, no 5xx and no dead server."""

from __future__ import annotations

import json
import socket
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_http_core import connect, read_responses

SEGMENTS = ["metadata", "instance", "compute", "network", "interface", "ipv4", "ipAddress", "subnet", "0", "1",
            "00", "-1", "vmId", "tags", "tagsList", "name", "storageProfile", "dataDisks", "osDisk", "userData",
            "loadbalancer", "versions", "identity", "extended", "", "..", "%2F", "Instance"]
VERSIONS = ["2017-04-02", "2018-02-01", "2019-06-01", "2021-02-01", "2025-04-07", "2017-07-01", "", "x", "latest"]
token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
value_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=20)

paths = st.one_of(
    st.lists(st.sampled_from(SEGMENTS), max_size=8).map(lambda parts: "/metadata/" + "/".join(parts)),
    st.lists(st.sampled_from(SEGMENTS), max_size=6).map(lambda parts: "/metadata/instance/" + "/".join(parts)),
    st.text(max_size=40).map(lambda text: "/" + quote(text, safe="/")),
)
params = st.lists(st.one_of(
    st.tuples(st.just("api-version"), st.sampled_from(VERSIONS)),
    st.tuples(st.just("format"), st.sampled_from(["json", "text", "xml", ""])),
    st.tuples(st.just("extended"), st.sampled_from(["true", "false", "TRUE", "1"])),
    st.tuples(token, value_text),
), max_size=5)
header_sets = st.lists(st.one_of(
    st.tuples(st.just("Metadata"), st.sampled_from(["true", "True", "false", "", "true, true"])),
    st.tuples(st.just("X-Forwarded-For"), st.just("10.0.0.1")),
    st.tuples(token, st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30)),
), max_size=6)
methods = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
                    token.map(str.upper))


def build(method: str, path: str, query: list[tuple[str, str]], headers: list[tuple[str, str]]) -> bytes:
    qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in query)
    target = path + ("?" + qs if qs else "")
    lines = [f"{method} {target} HTTP/1.1", "Host: imds"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def assert_still_serving(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(b"GET /metadata/instance/compute/name?api-version=2021-02-01&format=text HTTP/1.1\r\n"
                     b"Host: imds\r\nMetadata: true\r\n\r\n")
        assert read_responses(sock, 1)[0][::2] == (200, b"web-01")


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(methods, paths, params, header_sets)
def test_any_request_gets_a_well_formed_non_5xx_answer(shared_vm, method, path, query, headers):
    with connect(shared_vm.url) as sock:
        sock.sendall(build(method, path, query, headers))
        if method == "HEAD":  # no body follows a HEAD answer's headers
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            status = int(data.split()[1])
            assert status < 500
            return
        [(status, response_headers, body)] = read_responses(sock, 1)
    assert status in (200, 400, 404, 405, 413, 414, 431), (status, body)
    if status == 200:
        if response_headers["content-type"].startswith("application/json"):
            value = json.loads(body)
            assert body == json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        else:
            assert response_headers["content-type"] == "text/plain; charset=utf-8"
        names = {k.lower() for k, _ in headers}
        assert "x-forwarded-for" not in names and method == "GET"
    else:
        json.loads(body)  # every error body is JSON


@FAST
@given(st.binary(min_size=1, max_size=300))
def test_raw_bytes_never_kill_the_server(shared_vm, data):
    with connect(shared_vm.url) as sock:
        try:
            sock.sendall(data + b"\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, BrokenPipeError):
            reply = b""
    if reply:
        status = int(reply.split(b" ", 2)[1])
        assert status < 500, reply[:200]
    assert_still_serving(shared_vm.url)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), paths, params, header_sets),
                min_size=2, max_size=6))
def test_pipelined_mixtures_answered_in_order(shared_vm, requests):
    payload = b"".join(build(*r) for r in requests)
    with connect(shared_vm.url) as sock:
        sock.sendall(payload)
        answers = read_responses(sock, len(requests))
    assert all(status < 500 for status, _, _ in answers)
    # Answered in order: each GET of a known document matches what a lone request for it gets.
    for (method, path, query, headers), (status, _, body) in zip(requests, answers, strict=True):
        if status == 200:
            with connect(shared_vm.url) as sock:
                sock.sendall(build(method, path, query, headers))
                assert read_responses(sock, 1)[0][2] == body
    assert_still_serving(shared_vm.url)
