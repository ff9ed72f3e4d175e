"""HTTP/1.1 over a plain socket: the one way azimds talks to IMDS, a control plane or an AIA URL.

One request per connection (``Connection: close``): nothing is ever stale, nothing is shared between threads.
Like urllib3 it never reads ``HTTP_PROXY`` and friends (IMDS must not be reached through a proxy), and it
imports in a fraction of the time of ``http.client``, whose e-mail parser alone costs ~25 ms of every CLI
start. ``https://`` goes through ``http.client`` (IMDS itself is HTTP only).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from ..errors import UsageError

__all__ = ["Endpoint", "ProtocolError", "Reply", "fetch"]

_MAX_HEAD = 64 * 1024


class ProtocolError(ConnectionError):
    """An answer that is not HTTP/1.x, or a connection closed before the whole answer came."""


class Reply:
    """One answer: status, headers (lower-case names) and the body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Endpoint:
    """A base URL, ``http[s]://HOST[:PORT]`` (optionally ending in one of ``paths``), and how to reach it."""

    __slots__ = ("_address", "_host_header", "_port", "host", "scheme", "url")

    def __init__(self, text: str, *, paths: tuple[str, ...] = ("",), what: str = "an endpoint") -> None:
        parts = urlsplit(text.strip())
        path = parts.path.rstrip("/")
        if parts.scheme not in ("http", "https") or not parts.hostname or path not in paths \
                or parts.query or parts.fragment:
            raise UsageError(f"{what} is http://HOST[:PORT], not {text!r}")
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"{what} is http://HOST[:PORT], not {text!r}") from None
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._port = port
        self._address = (parts.hostname, port or (443 if parts.scheme == "https" else 80))
        self._host_header = parts.netloc.rpartition("@")[2]

    def exchange(self, method: str, target: str, *, headers: dict[str, str], body: bytes | None = None,
                 timeout: float) -> Reply:
        """One request and its answer on a fresh connection. Raises OSError (ProtocolError included)."""
        if self.scheme == "https":
            return _exchange_tls(self.host, self._port, timeout, method, target, headers, body)
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}",
                *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        with socket.create_connection(self._address, timeout=timeout) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
            return _read_reply(sock, method)


def fetch(url: str, *, timeout: float, redirects: int = 3) -> Reply:
    """GET an absolute http(s) URL, following up to ``redirects`` redirections."""
    for _ in range(redirects + 1):
        parts = urlsplit(url)
        endpoint = Endpoint(f"{parts.scheme}://{parts.netloc}", what="a URL")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reply = endpoint.exchange("GET", target, headers={"User-Agent": "azimds"}, timeout=timeout)
        location = reply.header("location")
        if reply.status not in (301, 302, 303, 307, 308) or not location:
            return reply
        url = location if "://" in location else endpoint.url + location
    raise ProtocolError(f"more than {redirects} redirections")


def _read_reply(sock: socket.socket, method: str) -> Reply:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ProtocolError("connection closed without an answer" if not buffer else "the answer was cut short")
        buffer += chunk
        if len(buffer) > _MAX_HEAD and b"\r\n\r\n" not in buffer:
            raise ProtocolError("the answer's headers are too long")
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, remainder = lines[0].partition(" ")
    code = remainder[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"not an HTTP answer: {lines[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    status = int(code)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        content = b""
    elif "chunked" in fields.get("transfer-encoding", "").lower():
        content = _dechunk(sock, rest)
    elif "content-length" in fields:
        length = int(fields["content-length"]) if fields["content-length"].isdigit() else -1
        if length < 0:
            raise ProtocolError("bad Content-Length")
        content = _read_exactly(sock, rest, length)
    else:
        content = rest + _read_to_end(sock)
    return Reply(status, fields, content)


def _read_exactly(sock: socket.socket, have: bytes, length: int) -> bytes:
    parts, got = [have], len(have)
    while got < length:
        chunk = sock.recv(min(65536, length - got))
        if not chunk:
            raise ProtocolError("the answer was cut short")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)[:length]


def _read_to_end(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def _dechunk(sock: socket.socket, data: bytes) -> bytes:
    out: list[bytes] = []
    while True:
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ProtocolError("the answer was cut short")
            data += chunk
        size_line, _, data = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise ProtocolError("bad chunk size") from None
        if size == 0:
            return b"".join(out)
        data = _read_exactly(sock, data, size + 2)
        out.append(data[:size])
        data = data[size + 2:]


def _exchange_tls(host: str, port: int | None, timeout: float, method: str, target: str,
                  headers: dict[str, str], body: bytes | None) -> Reply:
    import http.client

    connection = http.client.HTTPSConnection(host, port, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        fields = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, fields, response.read())
    except http.client.HTTPException as exc:
        raise ProtocolError(str(exc) or type(exc).__name__) from exc
    finally:
        connection.close()
