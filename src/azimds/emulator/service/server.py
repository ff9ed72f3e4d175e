"""The HTTP/1.1 core: asyncio protocol + httptools parser, one buffer per response, bounded everything.

Written on the raw transport rather than a framework because the emulator must be as fast as a static
file server and must be able to misbehave on purpose (drop a connection, delay an answer) at socket level.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import httptools

from .http import Handler, Request, Response

__all__ = ["HttpServer", "Limits"]

BACKLOG = 4096  # the kernel caps it at net.core.somaxconn; bursts of new connections must not be dropped


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep one client from hurting the others. Times in seconds, sizes in bytes."""

    max_url: int = 8 * 1024
    max_headers: int = 16 * 1024  # names and values of one request together
    max_header_count: int = 100
    max_body: int = 64 * 1024
    idle_timeout: float = 60.0  # a keep-alive connection with nothing in flight
    request_timeout: float = 10.0  # from a request's first byte to its last
    max_connections: int = 10_000
    shutdown_grace: float = 5.0
    tick: float = 1.0  # how often the timeouts are enforced and the Date header refreshed

    def __post_init__(self) -> None:
        if not 0 < self.tick < float("inf"):  # 0 would spin the loop; NaN compares false
            raise ValueError(f"the housekeeping tick must be more than 0 seconds, not {self.tick}")


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


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, calls the handler, writes responses in request order."""

    def __init__(self, server: HttpServer):
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.last_active = 0.0
        self.request_started = 0.0  # 0 while between requests
        self.pending: deque[Any] = deque()  # responses (or futures of them) not yet written, in order
        self.closing = False
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
        self.peer = peer[0] if isinstance(peer, tuple) else "unix"
        self.last_active = time.monotonic()
        server = self.server
        if len(server.connections) >= self.limits.max_connections or server.stopping:
            transport.close()
            return
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        for item in self.pending:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
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

    def pause_writing(self) -> None:
        # The client is not reading: stop reading its requests until it catches up.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    # -- httptools callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
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
        request = Request(self.parser.get_method().decode("ascii", "replace"), self.url, self.headers,
                          self.body, self.peer)
        keep_alive = self.parser.should_keep_alive()
        self._reset()
        self.request_started = 0.0
        try:
            result = self.server.handler(request)
        except Exception:  # noqa: BLE001 - a handler bug must not take the connection's other requests down
            self.server.log_exception(request)
            result = Response(500, b'{"error":"Internal server error"}')
        if not keep_alive:
            self.closing = True
        if isinstance(result, Response) and not self.pending:
            self._write(result, not keep_alive)
        else:
            self._enqueue(result, not keep_alive)

    # -- writing ----------------------------------------------------------------------------------------
    def _write(self, response: Response, last: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if response.drop:
            transport.abort()
            return
        close = last or response.close
        transport.write(b"".join((response.head(), self.server.clock.date, self.server.server_line,
                                  b"Connection: close\r\n\r\n" if close else b"\r\n", response.body)))
        if close:
            self.closing = True
            transport.close()

    def _enqueue(self, result: Any, last: bool) -> None:
        if inspect.isawaitable(result):
            future = asyncio.ensure_future(result)
            self.pending.append((future, last))
            future.add_done_callback(lambda _f: self._flush())
        else:
            self.pending.append((result, last))
            self._flush()

    def _flush(self) -> None:
        while self.pending:
            item, last = self.pending[0]
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
            self._write(item, last)

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request we could not parse or accept, then close: its framing can't be trusted."""
        self.closing = True
        body = b'{"error":"' + message.encode() + b'"}'
        self.pending.append((Response(status, body, close=True), True))
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

    def shutdown(self) -> None:
        """Close now if nothing is in flight, otherwise after the responses being made."""
        self.closing = True
        if self.transport is not None and not self.pending and not self.request_started:
            self.transport.close()


class HttpServer:
    """Serves one handler on one listening socket until closed."""

    def __init__(self, handler: Handler, *, server_header: str = "azimds", limits: Limits | None = None,
                 on_error: Any = None):
        self.handler = handler
        self.limits = limits or Limits()
        self.server_line = f"Server: {server_header}\r\n".encode("latin-1")
        self.clock = _Clock()
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._on_error = on_error
        self.host = ""
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=BACKLOG)
        else:
            self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=BACKLOG,
                                                    reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        self.host, self.port = bound[0], bound[1]
        self._housekeeper = loop.create_task(self._housekeeping())

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
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        deadline = time.monotonic() + self.limits.shutdown_grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def log_exception(self, request: Request | None, exc: BaseException | None = None) -> None:
        if self._on_error is not None:
            self._on_error(request, exc)
        else:
            import traceback

            traceback.print_exc() if exc is None else traceback.print_exception(exc)
