"""The HTTP core on raw sockets: keep-alive, pipelining, bounds, malformed input, timeouts, shutdown."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import threading
import time

import pytest

from azimds.emulator.service.http import Request, Response
from azimds.emulator.service.server import REPEAT_MOST, HttpServer, Limits
from tests.support import fetch

GET = (b"GET /metadata/instance/compute/name?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: x\r\n"
       b"Metadata: true\r\n\r\n")


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read exactly ``count`` responses (Content-Length framed) off the socket."""
    buffer = b""
    out = []
    while len(out) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} responses")
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(buffer) < length:
            buffer += sock.recv(65536)
        out.append((int(lines[0].split()[1]), headers, buffer[:length]))
        buffer = buffer[length:]
    return out


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_keep_alive_serves_many_requests_on_one_connection(shared_vm):
    with connect(shared_vm.url) as sock:
        for _ in range(20):
            sock.sendall(GET)
            [(status, headers, body)] = read_responses(sock, 1)
            assert (status, body) == (200, b"web-01") and "connection" not in headers


def test_pipelined_requests_answered_in_order(shared_vm):
    other = GET.replace(b"compute/name", b"compute/location")
    with connect(shared_vm.url) as sock:
        sock.sendall(GET + other + GET + other)
        bodies = [body for _, _, body in read_responses(sock, 4)]
    assert bodies == [b"web-01", b"eastus", b"web-01", b"eastus"]


@pytest.mark.parametrize("request_bytes", [
    GET.replace(b"HTTP/1.1", b"HTTP/1.0"),
    GET.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"),
])
def test_close_when_the_client_asks(shared_vm, request_bytes):
    with connect(shared_vm.url) as sock:
        sock.sendall(request_bytes)
        [(status, headers, _)] = read_responses(sock, 1)
        assert status == 200 and headers.get("connection") == "close"
        assert closed_by_peer(sock)


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
    (b"POST /metadata/scheduledevents HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000, 413),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello on the plain port
])
def test_bad_requests_get_a_clear_4xx_and_a_closed_connection(shared_vm, request_bytes, status):
    with connect(shared_vm.url) as sock:
        try:
            sock.sendall(request_bytes)
        except (BrokenPipeError, ConnectionResetError):
            pass
        [(got, headers, body)] = read_responses(sock, 1)
        assert got == status and headers["connection"] == "close" and body.startswith(b'{"error":')
        assert closed_by_peer(sock)
    assert fetch(shared_vm.url, "/metadata/instance?api-version=2021-02-01").status == 200  # still serving


def test_a_slow_client_does_not_stall_others(shared_vm):
    with connect(shared_vm.url) as slow:
        slow.sendall(GET[:20])  # half a request line, then nothing
        start = time.monotonic()
        for _ in range(5):
            assert fetch(shared_vm.url, "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
                         ).status == 200
        assert time.monotonic() - start < 2
        slow.sendall(GET[20:])
        assert read_responses(slow, 1)[0][2] == b"web-01"


def test_a_client_that_does_not_read_does_not_stall_others(shared_vm):
    with connect(shared_vm.url) as greedy:
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.sendall(GET.replace(b"compute/name?", b"?").replace(b"&format=text", b"") * 2000)
        assert fetch(shared_vm.url, "/metadata/instance?api-version=2021-02-01").status == 200


class TinyServer:
    """An HttpServer with a trivial handler and chosen limits, on its own loop thread."""

    def __init__(self, limits: Limits, handler=None, loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop or asyncio.new_event_loop()
        self.server = HttpServer(handler or (lambda r: Response(200, b"ok")), limits=limits)
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait()
        self.url = self.server.url

    def close(self):
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


IDLE = 0.3  # seconds; the production defaults are a minute and ten seconds, checked every second
TICK = 0.02  # housekeeping this often, so that a test waits for its timeout, not for the next second


def test_the_production_housekeeping_tick_is_a_second() -> None:
    assert Limits().tick == 1.0
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tick must be more than 0 seconds"):
            Limits(tick=bad)


def test_idle_connections_are_closed():
    tiny = TinyServer(Limits(idle_timeout=IDLE, tick=TICK))
    try:
        with connect(tiny.url) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(sock, 1)[0][2] == b"ok"
            started = time.monotonic()
            assert closed_by_peer(sock)
            assert 0.9 * IDLE <= time.monotonic() - started < 4 * IDLE
    finally:
        tiny.close()


def test_requests_that_never_finish_time_out_with_408():
    tiny = TinyServer(Limits(request_timeout=IDLE, tick=TICK))
    try:
        with connect(tiny.url) as sock:
            started = time.monotonic()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers never end
            [(status, headers, _)] = read_responses(sock, 1)
            elapsed = time.monotonic() - started
            assert status == 408 and headers["connection"] == "close"
    finally:
        tiny.close()
    # Not before the timeout; and at a tick soon after it, where the default tick would come a second after
    # the server started (just before this request): the tick is the setting's.
    assert IDLE <= elapsed < IDLE + 0.5


def test_handler_exception_is_a_500_and_the_connection_survives():
    def handler(request: Request) -> Response:
        if request.url == b"/boom":
            raise RuntimeError("boom")
        return Response(200, b"ok")

    tiny = TinyServer(Limits(), handler)
    tiny.server._on_error = lambda request, exc: None
    try:
        with connect(tiny.url) as sock:
            sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert [s for s, _, _ in read_responses(sock, 2)] == [500, 200]
    finally:
        tiny.close()


def test_async_answers_keep_pipeline_order():
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.2)
        return Response(200, b"slow")

    def handler(request: Request):
        return slow(request) if request.url == b"/slow" else Response(200, b"fast")

    tiny = TinyServer(Limits(), handler)
    try:
        with connect(tiny.url) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert [b for _, _, b in read_responses(sock, 2)] == [b"slow", b"fast"]
    finally:
        tiny.close()


def test_at_the_connection_cap_the_oldest_idle_connection_makes_room():
    notices: list[str] = []
    tiny = TinyServer(Limits(max_connections=2))
    tiny.server.notice = notices.append
    try:
        a, b = connect(tiny.url), connect(tiny.url)
        for s in (a, b):
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(s, 1)[0][0] == 200
        with connect(tiny.url) as third:  # a and b are idle: the oldest, a, is closed for it
            third.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(third, 1)[0][0] == 200
            assert closed_by_peer(a)
            b.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(b, 1)[0][0] == 200
        assert any("closing the oldest idle ones" in n for n in notices), notices
        a.close()
        b.close()
    finally:
        tiny.close()


def test_busy_connections_are_not_closed_for_new_ones():
    notices: list[str] = []
    tiny = TinyServer(Limits(max_connections=2))
    tiny.server.notice = notices.append
    try:
        busy = [connect(tiny.url), connect(tiny.url)]
        for s in busy:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request under way
        wait_until(lambda: len(tiny.server.connections) == 2
                   and all(c.request_started for c in tiny.server.connections))
        with connect(tiny.url) as third:
            assert closed_by_peer(third)
        for s in busy:
            s.sendall(b"\r\n")
            assert read_responses(s, 1)[0][0] == 200
            s.close()
        assert any("busy" in n for n in notices), notices
    finally:
        tiny.close()


def test_one_address_cannot_take_every_connection():
    notices: list[str] = []
    tiny = TinyServer(Limits(max_connections=100, max_connections_per_peer=3))
    tiny.server.notice = notices.append
    try:
        mine = [socket.create_connection(("127.0.0.1", tiny.server.port), source_address=("127.0.0.9", 0))
                for _ in range(3)]
        wait_until(lambda: tiny.server.per_peer.get("127.0.0.9") == 3)
        extra = socket.create_connection(("127.0.0.1", tiny.server.port), source_address=("127.0.0.9", 0))
        assert closed_by_peer(extra)
        with connect(tiny.url) as other:  # another address is served
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(other, 1)[0][0] == 200
        assert any("127.0.0.9 has 3 connections open" in n for n in notices), notices
        for s in [*mine, extra]:
            s.close()
    finally:
        tiny.close()


def test_ten_thousand_silent_connections_lock_nobody_out():
    tiny = TinyServer(Limits(max_connections=200, max_connections_per_peer=1000))
    try:
        silent = [connect(tiny.url) for _ in range(400)]  # twice the cap, saying nothing
        started = time.monotonic()
        with connect(tiny.url) as late:
            late.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(late, 1)[0][0] == 200
        assert time.monotonic() - started < 2.0
        assert len(tiny.server.connections) <= 200
        for s in silent:
            s.close()
    finally:
        tiny.close()


def test_a_burst_of_new_connections_is_accepted_at_once_while_the_loop_is_busy():
    """libuv (under uvloop) accepts one connection per loop iteration. With iterations made slow (10 ms, as 1,000
    busy connections make them), 300 new clients would wait 3 s to be accepted, the last of them; the server
    accepts every waiting connection each time its socket is ready, so all are answered in a few iterations."""
    from azimds.emulator.app import new_event_loop

    tiny = TinyServer(Limits(), loop=new_event_loop())
    busy = threading.Event()
    busy.set()

    def slow_iteration() -> None:  # runs once per loop iteration while ``busy``
        time.sleep(0.01)
        if busy.is_set():
            tiny.loop.call_soon(slow_iteration)

    tiny.loop.call_soon_threadsafe(slow_iteration)
    clients: list[socket.socket] = []
    try:
        clients = [connect(tiny.url) for _ in range(300)]  # the kernel completes every handshake: all queued
        started = time.monotonic()
        for client in clients:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert all(read_responses(client, 1)[0][0] == 200 for client in clients)
        elapsed = time.monotonic() - started
    finally:
        busy.clear()
        for client in clients:
            client.close()
        tiny.close()
    assert elapsed < 1.5, f"300 queued connections took {elapsed:.2f} s to be answered"


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def test_a_huge_header_is_cut_off_as_it_arrives(shared_vm):
    with connect(shared_vm.url) as sock:
        sock.sendall(b"GET /metadata/versions HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        status = None
        try:
            while sent < 50 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            status = read_responses(sock, 1)[0][0]
        except (ConnectionError, OSError):
            status = None
    assert sent < 8 * 1024 * 1024, sent  # refused at once (the rest filled the kernel's buffers), not after 50 MB
    assert status in (431, None)
    assert fetch(shared_vm.url, "/metadata/versions").status == 200


class FakeTransport:
    """What a protocol test needs of a transport: what was written, and whether it was closed."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1234) if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True


def test_a_head_is_bounded_as_its_chunks_arrive_without_a_socket():
    from azimds.emulator.service.server import Connection

    server = HttpServer(lambda r: Response(200, b"ok"))
    conn = Connection(server)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    fed = 0
    while not transport.closed:
        conn.data_received(b"a" * 4096)
        fed += 4096
        assert fed < 10 * 1024 * 1024
    assert fed <= server.limits.max_message + 4096
    assert transport.written.startswith(b"HTTP/1.1 431 ")


def test_a_closed_connection_is_freed_at_once_not_left_to_the_collector():
    """A connection is a cycle with its parser (each holds the other) until it is closed: a fleet's clients would
    otherwise leave thousands of them to the full collections, which scan every VM made."""
    import gc
    import weakref

    from azimds.emulator.service.server import Connection

    server = HttpServer(lambda r: Response(200, b"ok"))
    enabled = gc.isenabled()
    gc.disable()
    try:
        conn = Connection(server)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answers(transport.written) == [b"ok"]
        conn.connection_lost(None)
        gone = weakref.ref(conn)
        del conn
        assert gone() is None, "a closed connection is only freed by the collector"
    finally:
        if enabled:
            gc.enable()


class CountingParser:
    """The connection's parser, counting the chunks it is given."""

    def __init__(self, parser: object) -> None:
        self.parser = parser
        self.fed = 0

    def feed_data(self, data: bytes) -> None:
        self.fed += 1
        self.parser.feed_data(data)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.parser, name)


def answers(written: bytes) -> list[bytes]:
    """The bodies of the responses in ``written`` (each ends with its body, framed by Content-Length)."""
    bodies = []
    while written:
        head, _, rest = written.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(rest[:length])
        written = rest[length:]
    return bodies


def test_a_repeated_request_is_answered_without_parsing_it_again_and_anything_else_is_parsed():
    """A poller's same bytes again are the same request (answered, not parsed); a chunk that differs in one byte,
    one with a body or one with two requests is parsed every time."""
    from azimds.emulator.service.server import Connection

    seen: list[tuple[str, bytes, dict[bytes, bytes], bytes]] = []

    def handler(request: Request) -> Response:
        seen.append((request.method, request.url, dict(request.headers), request.body))
        return Response(200, request.url + b" " + request.headers.get(b"metadata", b"-") + b" " + request.body)

    conn = Connection(HttpServer(handler))
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    parser = conn.parser = CountingParser(conn.parser)  # type: ignore[assignment]
    for _ in range(3):
        conn.data_received(GET)
    assert parser.fed == 1 and len(seen) == 3 and seen[0] == seen[1] == seen[2]
    conn.data_received(GET.replace(b"Metadata: true", b"Metadata: fals"))  # as long, one word changed
    post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
    conn.data_received(post)
    conn.data_received(post)
    conn.data_received(GET + GET)
    conn.data_received(GET + GET)
    assert parser.fed == 6
    conn.data_received(GET)
    conn.data_received(GET)
    assert parser.fed == 7
    big = GET.replace(b"Host: x", b"Host: x\r\nX-Pad: " + b"p" * REPEAT_MOST)  # too big to keep
    conn.data_received(big)
    conn.data_received(big)
    assert parser.fed == 9
    url = b"/metadata/instance/compute/name?api-version=2021-02-01&format=text"
    assert answers(transport.written) == (
        [url + b" true "] * 3 + [url + b" fals "] + [b"/p - ab"] * 2 + [url + b" true "] * 8)
    assert [body for _, _, _, body in seen] == [b""] * 4 + [b"ab"] * 2 + [b""] * 8
    assert not transport.closed


def test_an_answer_given_again_carries_the_date_of_the_moment_and_its_own_server_line():
    """A response's bytes are joined once a second, not once per request: a new Date makes new bytes, and a
    response two servers answer with carries each one's Server line."""
    from azimds.emulator.service.server import Connection

    shared = Response(200, b"same")
    servers = [HttpServer(lambda r: shared, server_header=name) for name in ("one", "two")]
    transports = []
    for server in servers:
        conn = Connection(server)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        transports.append(transport)
        conn.data_received(GET)
        server.clock.date = b"Date: Thu, 01 Jan 2099 00:00:00 GMT\r\n"
        conn.data_received(GET)
    for transport, name in zip(transports, ("one", "two"), strict=True):
        first, second = transport.written.split(b"HTTP/1.1 ")[1:]
        assert b"Date: Thu, 01 Jan 2099" not in first and b"Date: Thu, 01 Jan 2099 00:00:00 GMT\r\n" in second
        assert f"Server: {name}\r\n".encode() in first and f"Server: {name}\r\n".encode() in second
        assert answers(transport.written) == [b"same", b"same"]

def test_a_line_made_each_time_is_made_for_every_answer_in_the_same_second():
    """``Response.each`` (a per-request id) is called for every sending, kept-alive or not, and sits after the
    answer's own headers, before Date; the rest of the bytes are the same each time."""
    from azimds.emulator.service.server import Connection

    lines = iter(b"x-ms-request-id: %d\r\n" % n for n in range(10))
    shared = Response(200, b"same", headers=(("ETag", "e"),), each=lambda: next(lines))
    server = HttpServer(lambda r: shared)
    conn = Connection(server)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    for _ in range(3):
        conn.data_received(GET)
    conn.data_received(GET.replace(b"Host: x", b"Host: x\r\nConnection: close"))
    sent = transport.written.split(b"HTTP/1.1 ")[1:]
    assert [b"x-ms-request-id: %d\r\n" % n in one for n, one in enumerate(sent)] == [True] * 4
    assert all(one.index(b"ETag: e\r\n") < one.index(b"x-ms-request-id") < one.index(b"Date: ") for one in sent)
    assert answers(transport.written) == [b"same"] * 4 and transport.closed


def test_the_same_answer_again_on_a_connection_is_sent_whole_and_a_head_or_closing_one_is_not_taken_from_it():
    """A connection writes the bytes it sent last for the same answer in the same second, but a HEAD gets no body
    and a last answer says Connection: close, even right after that answer was sent whole."""
    from azimds.emulator.service.server import Connection

    shared = Response(200, b"same")
    conn = Connection(HttpServer(lambda r: shared))
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(GET)
    conn.data_received(GET)
    conn.data_received(GET.replace(b"GET ", b"HEAD "))
    conn.data_received(GET)
    conn.data_received(GET.replace(b"Host: x", b"Host: x\r\nConnection: close"))
    sent = [b"HTTP/1.1 " + one for one in transport.written.split(b"HTTP/1.1 ")[1:]]
    assert sent[0] == sent[1] == sent[3] and sent[0].endswith(b"\r\n\r\nsame")
    assert sent[2] == sent[0].removesuffix(b"same")  # the head alone
    assert sent[4] == sent[0].replace(b"\r\n\r\nsame", b"\r\nConnection: close\r\n\r\nsame") and transport.closed


def test_a_repeated_request_waits_behind_an_answer_in_the_making_and_a_closing_one_is_not_repeated():
    from azimds.emulator.service.server import Connection

    async def scenario() -> tuple[bytes, bool]:
        release = asyncio.Event()

        async def slow() -> Response:
            await release.wait()
            return Response(200, b"slow")

        def handler(request: Request):
            return slow() if request.url == b"/slow" else Response(200, b"fast")

        conn = Connection(HttpServer(handler))
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        fast = b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.data_received(fast)
        conn.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.data_received(fast)  # the same bytes as the first: answered after the slow one
        release.set()
        while transport.written.count(b"HTTP/1.1") < 3:
            await asyncio.sleep(0)
        closing = b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        conn.data_received(closing)
        return transport.written, transport.closed

    written, closed = asyncio.run(scenario())
    assert answers(written) == [b"fast", b"slow", b"fast", b"fast"] and closed


def test_a_huge_header_on_the_control_port_is_cut_off_before_the_token_is_checked(shared_vm):
    with connect(shared_vm.control_url) as sock:
        sock.sendall(b"GET /v1/clock HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 20 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < 8 * 1024 * 1024, sent


def test_head_answers_carry_no_body(shared_vm):
    with connect(shared_vm.url) as sock:
        sock.sendall(GET.replace(b"GET ", b"HEAD ") + GET)
        sock.settimeout(5)
        data = b""
        while data.count(b"web-01") < 1 or data.count(b"HTTP/1.1") < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith((b"HTTP/1.1 405 ", b"HTTP/1.1 200 "))
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"web-01")  # nothing between the two heads


def test_an_http_0_9_request_line_is_refused_at_once(shared_vm):
    started = time.monotonic()
    with connect(shared_vm.url) as sock:
        sock.sendall(b"GET /metadata/versions\r\n")
        [(status, _, _)] = read_responses(sock, 1)
    assert status == 400 and time.monotonic() - started < 1.0


@pytest.mark.parametrize("path", ["/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net",
                                  "/metadata/attested/document?api-version=2020-09-01"])
def test_a_half_closed_client_still_gets_its_answer(path):
    from azimds import Emulator

    with Emulator(faults=["/metadata/*=latency:0.2"]) as imds, connect(imds.url) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        [(status, _, body)] = read_responses(sock, 1)
        assert status == 200 and body
        assert closed_by_peer(sock)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_shuts_down_cleanly_on_signal(serve, sig):
    proc = serve("--rate-limit", "0")
    assert fetch(proc.url, "/metadata/instance?api-version=2021-02-01").status == 200
    with connect(proc.url) as idle:
        idle.sendall(GET)
        read_responses(idle, 1)
        proc.proc.send_signal(sig)
        assert proc.proc.wait(timeout=10) == 0
        assert closed_by_peer(idle)
    assert "Traceback" not in proc.proc.stderr.read()


def test_serve_reports_a_busy_port(shared_vm, tmp_path):
    import subprocess

    from tests.support import AZIMDS

    port = shared_vm.url.rsplit(":", 1)[1]  # taken by an emulator, as by a first azimds serve
    run = subprocess.run([*AZIMDS, "serve", "--port", port, "--control-port", "0", "--state-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "cannot listen on" in run.stderr and "Traceback" not in run.stderr


def test_out_of_file_descriptors_it_says_so_and_accepts_again_once_some_are_free(tmp_path):
    """``serve`` limited to 64 open files meets more clients than that: it says in one line that it cannot
    accept, keeps answering the connections it has, and accepts again once clients leave (no spinning, no
    traceback)."""
    import re
    import subprocess

    from tests.support import AZIMDS

    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("needs prlimit (util-linux; scripts/sysdeps.sh installs it)")
    proc = subprocess.Popen([prlimit, "--nofile=64", *AZIMDS, "serve", "--port", "0", "--control-port", "0",
                             "--state-dir", "", "--rate-limit", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = re.fullmatch(r"azimds: serving (http://[^/]+)/metadata\n", proc.stdout.readline()).group(1)
        first = connect(url)
        clients = [connect(url) for _ in range(120)]  # the kernel queues them; azimds runs out of descriptors
        line = proc.stderr.readline()
        while "cannot accept" not in line:
            assert line, "serve ended without saying it cannot accept"
            line = proc.stderr.readline()
        assert "Too many open files" in line and "trying again" in line
        first.sendall(b"GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n")
        assert read_responses(first, 1)[0][0] == 200  # the connections it has are still answered
        for client in clients[:100]:
            client.close()
        late = clients[-1]  # queued all along: accepted once descriptors are free again
        late.sendall(b"GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n")
        assert read_responses(late, 1)[0][0] == 200
        assert proc.poll() is None
    finally:
        for client in clients:
            client.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
