"""The HTTP/1.1 core: asyncio protocol + httptools parser, one buffer per response, bounded everything.

Written on the raw transport rather than a framework because the emulator must be as fast as a static
file server and must be able to misbehave on purpose (drop a connection, delay an answer) at socket level.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import httptools

from .http import Handler, Request, Response

__all__ = ["Connection", "HttpServer", "Limits"]

BACKLOG = 4096  # the kernel caps it at net.core.somaxconn; bursts of new connections must not be dropped
#: Connections accepted at most each time the listening socket is ready. libuv (under uvloop) accepts one per
#: loop iteration since 1.45; with 1,000 busy connections an iteration takes ~10 ms, so a burst of new clients
#: waited seconds in the kernel's accept queue (p99 of 3 s at c1000). We accept them ourselves, all at once.
ACCEPT_BATCH = BACKLOG
ACCEPT_RETRY = 1.0  # seconds before accepting again when out of file descriptors (or another accept error)
NOTICE_EVERY = 10.0  # seconds between two notices of the same kind
#: The largest chunk a connection keeps to answer again without parsing (a poller's request is a few hundred
#: bytes): ten thousand idle connections then hold at most a few kilobytes each.
REPEAT_MOST = 2048


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep one client from hurting the others. Times in seconds, sizes in bytes."""

    max_url: int = 8 * 1024
    max_headers: int = 16 * 1024  # names and values of one request together
    max_header_count: int = 100
    max_body: int = 64 * 1024
    idle_timeout: float = 60.0  # a keep-alive connection with nothing in flight
    request_timeout: float = 10.0  # from a request's first byte to its last
    max_connections: int = 10_000  # at the cap, the oldest idle connection is closed to let a new one in
    max_connections_per_peer: int = 1024  # one source address cannot take them all
    shutdown_grace: float = 5.0
    tick: float = 1.0  # how often the timeouts are enforced and the Date header refreshed

    def __post_init__(self) -> None:
        if not 0 < self.tick < float("inf"):  # 0 would spin the loop; NaN compares false
            raise ValueError(f"the housekeeping tick must be more than 0 seconds, not {self.tick}")

    @property
    def max_message(self) -> int:
        """The most one request may take on the wire (request line, headers, body), counted as it arrives."""
        return self.max_url + self.max_headers + self.max_body + 4096


class _Reject(Exception):
    """A request the parser callbacks refuse; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


class _Clock:
    """The Date header, refreshed every ``Limits.tick`` (a second) by the server's housekeeping task."""

    __slots__ = ("date",)

    def __init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.date = b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"


class Connection(asyncio.Protocol):
    """One client connection: parses requests, calls the handler, writes responses in request order."""

    # Slots: a connection's fields in one block rather than a dict beside it (with a thousand connections taking
    # turns, each is fetched anew from memory at every request).
    __slots__ = ("__weakref__", "body", "closing", "completed", "fresh", "header_bytes", "headers", "in_message",
                 "last", "last_active", "limits", "message_bytes", "parser", "peer", "pending", "repeat",
                 "request_started", "sent", "sent_date", "sent_wire", "server", "transport", "url")

    def __init__(self, server: HttpServer):
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)  # None once closed
        self.peer = ""
        self.last_active = 0.0
        self.request_started = 0.0  # 0 while between requests
        self.pending: deque[Any] = deque()  # (response or its future, last, HEAD) not yet written, in order
        self.closing = False
        self.in_message = False  # a request is being received
        self.message_bytes = 0  # bytes of it received so far (an upper bound: whole chunks are counted)
        self.fresh = True  # nothing received yet on this connection
        # A client that polls sends the same bytes again and again: when a chunk held exactly one whole request
        # with no body and kept the connection alive, the same chunk again is the same request, and is answered
        # without parsing it again. (chunk, request, HEAD), or None. (Requests are not changed by their handlers.)
        self.repeat: tuple[bytes, Request, bool] | None = None
        self.completed = 0  # requests completed in the chunk being parsed
        self.last: tuple[Request, bool] | None = None  # the last of them, if it may repeat
        # The last answer written whole on this kept-alive connection, the Date it went with and its bytes: the same
        # answer again within the second is written without reading it (in a fleet each VM's answer is cold).
        self.sent: Response | None = None
        self.sent_date = b""
        self.sent_wire = b""
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0
        self.body = b""

    # -- asyncio.Protocol ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        # Interned: the tables keyed by it (rate limits, a fleet's VMs) then find it by identity, not by comparing.
        self.peer = sys.intern(peer[0]) if isinstance(peer, tuple) else "unix"
        self.last_active = time.monotonic()
        if not self.server.admit(self):
            self.closing = True
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.release(self)
        self.closing = True
        # The parser holds this protocol (its callbacks) and this protocol the parser: without letting go of it
        # each closed connection is a cycle only the collector frees, and a fleet's clients leave thousands of them
        # to its full collections, which then scan every VM made (hundreds of ms). Nothing is parsed once closing.
        self.parser = None
        for item in self.pending:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        parser = self.parser
        if self.closing or parser is None:
            return
        repeat = self.repeat
        if repeat is not None and data == repeat[0] and not self.in_message:
            self._dispatch(repeat[1], True, repeat[2])
            return
        continuing = self.in_message
        if continuing:  # a request goes on into this chunk: bound it before the parser buffers any more of it
            self.message_bytes += len(data)
            if self.message_bytes > self.limits.max_message:
                self._refuse(431, "Request headers too large")
                return
        elif self.fresh:
            self.fresh = False
            if not _has_version(data):
                self._refuse(400, "Bad request")  # an HTTP/0.9 request line: no version, no headers
                return
        self.completed = 0
        try:
            parser.feed_data(data)
            if self.in_message:
                if not continuing:
                    self.message_bytes = len(data)  # a request began in this chunk and goes on past it
            elif (self.completed == 1 and not continuing and self.last is not None and not self.closing
                  and len(data) <= REPEAT_MOST):
                self.repeat = (data, *self.last)
        except _Reject as exc:
            self._refuse(exc.status, exc.message)
        except httptools.HttpParserUpgrade:
            # The request was answered in on_message_complete; we speak nothing but HTTP/1.1.
            self._finish_after_pending()
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                self._refuse(cause.status, cause.message)
            else:
                self._refuse(400, "Bad request")
        except httptools.HttpParserError:
            self._refuse(400, "Bad request")

    def eof_received(self) -> bool:
        """The client has sent all it will (a half-close): answer what it asked, then close."""
        self.closing = True
        if not self.pending and self.transport is not None:
            self.transport.close()
        return True  # keep the transport open for the answers still being made

    def pause_writing(self) -> None:
        # The client is not reading: stop reading its requests until it catches up.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    # -- httptools callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_message = True
        if not self.request_started:
            self.request_started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url:
            raise _Reject(414, "Request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > self.limits.max_headers or len(self.headers) >= self.limits.max_header_count:
            raise _Reject(431, "Request headers too large")
        name = name.lower()
        old = self.headers.get(name)
        self.headers[name] = value if old is None else old + b", " + value

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > self.limits.max_body:
            raise _Reject(413, "Request body too large")

    def on_message_complete(self) -> None:
        parser = self.parser
        assert parser is not None  # called by it, from feed_data
        method = parser.get_method().decode("ascii", "replace")
        request = Request(method, self.url, self.headers, self.body, self.peer)
        keep_alive = parser.should_keep_alive()
        head = method == "HEAD"
        self.completed += 1
        self.last = (request, head) if keep_alive and not self.body else None
        self.in_message = False
        self._reset()
        self.request_started = 0.0
        self._dispatch(request, keep_alive, head)

    def _dispatch(self, request: Request, keep_alive: bool, head: bool) -> None:
        try:
            result = self.server.handler(request)
        except Exception:  # noqa: BLE001 - a handler bug must not take the connection's other requests down
            self.server.log_exception(request)
            result = Response(500, b'{"error":"Internal server error"}')
        if not keep_alive:
            self.closing = True
        if result.__class__ is Response and not self.pending:
            self._write(result, not keep_alive, head)
        else:
            self._enqueue(result, not keep_alive, head)

    # -- writing ----------------------------------------------------------------------------------------
    def _write(self, response: Response, last: bool, head: bool = False) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        date = self.server.clock.date
        if response is self.sent and date is self.sent_date and not (last or head):
            transport.write(self.sent_wire)
            return
        if response.drop:
            transport.abort()
            return
        close = last or response.close
        wire = response.wire(date, self.server.server_line, close, head)
        transport.write(wire)
        if not (close or head or response.each is not None):
            self.sent, self.sent_date, self.sent_wire = response, date, wire
        if close:
            self.closing = True
            transport.close()

    def _enqueue(self, result: Any, last: bool, head: bool) -> None:
        if inspect.isawaitable(result):
            future = asyncio.ensure_future(result)
            self.server.tasks.add(future)
            self.pending.append((future, last, head))
            future.add_done_callback(self._done)
        else:
            self.pending.append((result, last, head))
            self._flush()

    def _done(self, future: asyncio.Future[Any]) -> None:
        self.server.tasks.discard(future)
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            item, last, head = self.pending[0]
            if isinstance(item, asyncio.Future):
                if not item.done():
                    return
                if item.cancelled():
                    self.pending.popleft()
                    continue
                exc = item.exception()
                if exc is not None:
                    self.server.log_exception(None, exc)
                    item = Response(500, b'{"error":"Internal server error"}')
                else:
                    item = item.result()
            self.pending.popleft()
            self._write(item, last, head)
        if self.closing and self.transport is not None and not self.request_started:
            self.transport.close()  # everything asked before a half-close or a shutdown is answered

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request we could not parse or accept, then close: its framing can't be trusted."""
        self.closing = True
        self.in_message = False
        body = b'{"error":"' + message.encode() + b'"}'
        self.pending.append((Response(status, body, close=True), True, False))
        self._flush()

    def _finish_after_pending(self) -> None:
        self.closing = True
        if not self.pending and self.transport is not None:
            self.transport.close()

    # -- housekeeping -----------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Called every ``Limits.tick`` (about once a second): enforce the request and idle timeouts."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.request_started and now - self.request_started > self.limits.request_timeout:
            self.request_started = 0.0
            self._refuse(408, "Request timeout")
        elif not self.request_started and not self.pending and now - self.last_active > self.limits.idle_timeout:
            self.transport.close()

    def idle(self) -> bool:
        return not self.request_started and not self.pending and not self.closing

    def shutdown(self) -> None:
        """Close now if nothing is in flight, otherwise after the responses being made."""
        self.closing = True
        if self.transport is not None and not self.pending and not self.request_started:
            self.transport.close()


async def _listen(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host`` (as asyncio's create_server binds them), all on one port."""
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # the IPv4 address has its own
            if len(sockets) > 1 and port == 0:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _has_version(data: bytes) -> bool:
    """False for a complete first line with no ``HTTP/x.y`` (an HTTP/0.9 request); True otherwise, an
    incomplete line included (the parser and the bounds decide about it)."""
    end = data.find(b"\n", 0, 16384)
    if end < 0:
        return True
    line = data[:end].strip()
    return not line or b" HTTP/" in line


class HttpServer:
    """Serves one handler on one listening socket until closed."""

    def __init__(self, handler: Handler, *, server_header: str = "azimds", limits: Limits | None = None,
                 on_error: Any = None, notice: Callable[[str], None] | None = None):
        self.handler = handler
        self.limits = limits or Limits()
        self.server_line = f"Server: {server_header}\r\n".encode("latin-1")
        self.clock = _Clock()
        self.connections: dict[Connection, None] = {}  # in the order they came: the oldest first
        self.per_peer: dict[str, int] = {}
        self.tasks: set[asyncio.Future[Any]] = set()  # answers being made in the background
        self.notice = notice  # told, at most every NOTICE_EVERY seconds per kind, when a cap turns clients away
        self._noticed: dict[str, float] = {}
        self.stopping = False
        self._sockets: list[socket.socket] = []  # listening
        self._connecting: set[asyncio.Task[Any]] = set()  # accepted sockets being given their transports
        self._housekeeper: asyncio.Task[None] | None = None
        self._on_error = on_error
        self.host = ""
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None) -> None:
        """Listen on every address ``host`` names (``port`` 0: one free port for all), or on ``sock``, already
        listening. Raises OSError (socket.gaierror for a name that does not resolve) when it cannot."""
        loop = asyncio.get_running_loop()
        sockets = [sock] if sock is not None else await _listen(loop, host, port)
        for listening in sockets:
            listening.setblocking(False)
            loop.add_reader(listening.fileno(), self._accept, listening)
        self._sockets = sockets
        bound = sockets[0].getsockname()
        self.host, self.port = bound[0], bound[1]
        self._housekeeper = loop.create_task(self._housekeeping())

    def _accept(self, listening: socket.socket) -> None:
        """Take every connection waiting on ``listening`` (up to ACCEPT_BATCH) and give each its transport."""
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPT_BATCH):
            try:
                accepted, _ = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: stop for a moment rather than spin on a full queue
                self._notify("accept", f"cannot accept connections: {exc.strerror or exc}; trying again in "
                                       f"{ACCEPT_RETRY:.0f} s")
                loop.remove_reader(listening.fileno())
                loop.call_later(ACCEPT_RETRY, self._resume, listening)
                return
            accepted.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(lambda: Connection(self), accepted))
            self._connecting.add(task)
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self._connecting.discard(task)
        if not task.cancelled():
            task.exception()  # a client gone before its transport was made: nothing to answer

    def _resume(self, listening: socket.socket) -> None:
        if not self.stopping and listening in self._sockets:
            asyncio.get_running_loop().add_reader(listening.fileno(), self._accept, listening)

    def admit(self, conn: Connection) -> bool:
        """Whether a new connection may stay: within its address's cap, and within the global cap once the
        oldest idle connection has made room for it."""
        if self.stopping:
            return False
        limits = self.limits
        count = self.per_peer.get(conn.peer, 0)
        if count >= limits.max_connections_per_peer:
            self._notify("peer", f"{conn.peer} has {count} connections open, the most one address may have; "
                                 "closing its new ones")
            return False
        if len(self.connections) >= limits.max_connections:
            oldest = next((c for c in self.connections if c.idle()), None)
            if oldest is None:
                self._notify("global", f"{len(self.connections)} connections are busy, the most this port takes; "
                                       "closing new ones")
                return False
            self._notify("idle", f"{len(self.connections)} connections open: closing the oldest idle ones to "
                                 "let new clients in")
            self.release(oldest)
            oldest.closing = True
            if oldest.transport is not None:
                oldest.transport.close()
        self.connections[conn] = None
        self.per_peer[conn.peer] = count + 1
        return True

    def release(self, conn: Connection) -> None:
        if self.connections.pop(conn, False) is None:
            left = self.per_peer.get(conn.peer, 1) - 1
            if left > 0:
                self.per_peer[conn.peer] = left
            else:
                self.per_peer.pop(conn.peer, None)

    def _notify(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if self.notice is not None and now - self._noticed.get(kind, -NOTICE_EVERY) >= NOTICE_EVERY:
            self._noticed[kind] = now
            self.notice(message)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _housekeeping(self) -> None:
        interval = self.limits.tick
        while True:
            await asyncio.sleep(interval)
            self.clock.refresh()
            now = time.monotonic()
            for conn in list(self.connections):
                conn.tick(now)

    async def close(self) -> None:
        """Stop accepting, let in-flight responses finish (up to the grace period), then close the rest."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        for listening in self._sockets:
            loop.remove_reader(listening.fileno())
            listening.close()
        self._sockets = []
        for conn in list(self.connections):
            conn.shutdown()
        deadline = time.monotonic() + self.limits.shutdown_grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        for task in list(self._connecting):
            task.cancel()

    def log_exception(self, request: Request | None, exc: BaseException | None = None) -> None:
        if self._on_error is not None:
            self._on_error(request, exc)
        else:
            import traceback

            traceback.print_exc() if exc is None else traceback.print_exception(exc)
