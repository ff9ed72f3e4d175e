"""The request and response values that pass between the HTTP core and the endpoints.

Kept apart from the server so endpoints can be written and tested without a socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Union

JSON = "application/json; charset=utf-8"

REASONS: dict[int, str] = {
    200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    409: "Conflict", 410: "Gone", 413: "Content Too Large", 414: "URI Too Long",
    415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}


class Request:
    """One parsed HTTP request. Header names are lower-case bytes; repeated headers are joined by ", ".

    ``kept`` is the handler's: what it derived from this request and may use again. A kept-alive connection that
    sends the same bytes again is handed the same Request (see ``server.Connection``), ``kept`` and all."""

    __slots__ = ("body", "headers", "kept", "method", "peer", "url")

    def __init__(self, method: str, url: bytes, headers: dict[bytes, bytes], body: bytes, peer: str):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.peer = peer
        self.kept: Any = None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url!r} from {self.peer}>"


class Response:
    """A complete response: status, body and content type, plus any extra headers.

    ``close`` asks the server to close the connection after writing it; ``drop`` closes it without
    writing anything (a fault). ``each`` makes one more header line (``b"Name: value\r\n"``) every time the
    response is sent: a per-request id, while the rest is made once. Instances are immutable by convention so
    endpoints may cache them.
    """

    __slots__ = ("_head", "_wire", "body", "close", "content_type", "drop", "each", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", content_type: str = JSON,
                 headers: tuple[tuple[str, str], ...] = (), close: bool = False, drop: bool = False,
                 each: Callable[[], bytes] | None = None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.close = close
        self.drop = drop
        self.each = each
        self._head: bytes | None = None
        self._wire: tuple[bytes, bytes, bytes] | None = None

    def head(self) -> bytes:
        """Status line and the headers that never change for this response (all but Date), cached."""
        head = self._head
        if head is None:
            lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}"]
            if self.status not in (204, 304):  # answers that never have a body say nothing of one
                lines += [f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}"]
            lines.extend(f"{name}: {value}" for name, value in self.headers)
            head = self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        return head

    def wire(self, date: bytes, server: bytes, close: bool = False, head: bool = False) -> bytes:
        """The whole response as sent, with ``date`` and ``server`` (header lines) after its head; ``close`` says
        so in a Connection header, ``head`` leaves the body out (a HEAD request). On a kept-alive connection it is
        kept until the date changes (once a second): an answer given again and again is joined once (unless a
        line of it is made each time)."""
        each = self.each
        if close or head or each is not None:
            return b"".join((self.head(), b"" if each is None else each(), date, server,
                             b"Connection: close\r\n\r\n" if close else b"\r\n", b"" if head else self.body))
        wire = self._wire
        if wire is None or wire[0] is not date or wire[1] is not server:
            wire = self._wire = (date, server, b"".join((self.head(), date, server, b"\r\n", self.body)))
        return wire[2]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:60]!r}>"


Handler = Callable[[Request], Union[Response, Awaitable[Response]]]
