"""HTTP/1.1 over a plain socket: the one way azimds talks to IMDS, a control plane or an AIA URL.

One request per connection (``Connection: close``): nothing is ever stale, nothing is shared between threads.
Like urllib3 it never reads ``HTTP_PROXY`` and friends (IMDS must not be reached through a proxy), and it
imports in a fraction of the time of ``http.client``, whose e-mail parser alone costs ~25 ms of every CLI
start. ``https://`` goes through ``http.client`` (IMDS itself is HTTP only). URLs are split and quoted here
rather than by ``urllib.parse``, which imports ``ipaddress`` and costs milliseconds more of every CLI call; host
names go to the resolver as ASCII bytes, so that the ``idna`` codec (and ``unicodedata``) load only for a
name that is not ASCII. Sockets are the interpreter's own (``_socket``): the ``socket`` module around them
converts its constants to enums at import, another 3-4 ms of every call.
"""

from __future__ import annotations

import _socket
import time

from ..errors import UsageError

__all__ = ["MAX_BODY", "Endpoint", "ProtocolError", "Reply", "failure_reason", "fetch", "quote", "split_url"]

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "") -> str:
    """``text`` percent-encoded as UTF-8, every byte but RFC 3986's unreserved characters and ``safe``."""
    allowed = _UNRESERVED | frozenset(safe.encode("ascii"))
    return "".join(chr(byte) if byte in allowed else f"%{byte:02X}" for byte in text.encode("utf-8"))


class SplitUrl:
    """A URL's parts, as ``urllib.parse.urlsplit`` names them; ``hostname`` lower case, brackets removed."""

    __slots__ = ("fragment", "hostname", "netloc", "path", "port", "query", "scheme")

    def __init__(self, scheme: str, netloc: str, path: str, query: str, fragment: str) -> None:
        self.scheme, self.netloc, self.path, self.query, self.fragment = scheme, netloc, path, query, fragment
        hostport = netloc.rpartition("@")[2]
        port = ""
        if hostport.startswith("["):
            host, bracket, rest = hostport[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"a bad IPv6 address in {netloc!r}")
            port = rest[1:]
        else:
            host, _, port = hostport.partition(":")
            if ":" in port:
                raise ValueError(f"a bad port in {netloc!r}")
        self.hostname = host.lower() or None
        if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
            raise ValueError(f"a bad port in {netloc!r}")
        self.port = int(port) if port else None


def split_url(text: str) -> SplitUrl:
    """``scheme://netloc/path?query#fragment`` in its parts (ValueError for a bad port or IPv6 address)."""
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme.isascii() or not scheme.isalpha():
        scheme, rest = "", text
    end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found >= 0:
            end = min(end, found)
    netloc, tail = (rest[:end], rest[end:]) if scheme else ("", rest)
    tail, _, fragment = tail.partition("#")
    path, _, query = tail.partition("?")
    return SplitUrl(scheme.lower(), netloc, path, query, fragment)

_MAX_HEAD = 64 * 1024
#: The largest answer body read: IMDS documents are kilobytes (userData is at most 64 KB); past this the
#: exchange fails rather than fill memory.
MAX_BODY = 4 * 1024 * 1024


class ProtocolError(ConnectionError):
    """An answer that is not HTTP/1.x, or a connection closed before the whole answer came."""


def failure_reason(exc: BaseException) -> str:
    """Why an exchange failed, in a few words ("timed out", "Connection refused", the protocol's complaint)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ProtocolError):
        return str(exc)
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


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
        try:
            parts = split_url(text.strip())
        except ValueError:
            raise UsageError(f"{what} is http://HOST[:PORT], not {text!r}") from None
        path = parts.path.rstrip("/")
        if parts.scheme not in ("http", "https") or not parts.hostname or path not in paths \
                or parts.query or parts.fragment:
            raise UsageError(f"{what} is http://HOST[:PORT], not {text!r}")
        port = parts.port
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._port = port
        host: str | bytes = parts.hostname.encode("ascii") if parts.hostname.isascii() else parts.hostname
        self._address = (host, port or (443 if parts.scheme == "https" else 80))
        self._host_header = parts.netloc.rpartition("@")[2]

    def exchange(self, method: str, target: str, *, headers: dict[str, str], body: bytes | None = None,
                 timeout: float, max_body: int = MAX_BODY) -> Reply:
        """One request and its answer on a fresh connection, all of it within ``timeout`` seconds (connecting,
        sending and every read: an answer that trickles in is cut off too). Raises OSError (TimeoutError when
        the time is up, ProtocolError for an answer that is not HTTP or is larger than ``max_body``)."""
        if self.scheme == "https":
            return _exchange_tls(self.host, self._port, timeout, method, target, headers, body, max_body)
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}",
                *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        deadline = time.monotonic() + timeout
        sock = _connect(self._address, timeout)
        try:
            reader = _Reader(sock, deadline, max_body)
            sock.settimeout(reader.left())
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
            return _read_reply(reader, method)
        finally:
            sock.close()


def _connect(address: tuple[str | bytes, int], timeout: float) -> _socket.socket:
    """A TCP connection to the first of ``address``'s addresses that answers (``socket.create_connection``)."""
    host, port = address
    failure: OSError | None = None
    for family, kind, proto, _, where in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(where)
            return sock
        except OSError as exc:
            failure = exc
            sock.close()
    raise failure or OSError(f"no address for {host!r}")


def fetch(url: str, *, timeout: float, redirects: int = 3) -> Reply:
    """GET an absolute http(s) URL, following up to ``redirects`` redirections."""
    for _ in range(redirects + 1):
        try:
            parts = split_url(url)
        except ValueError:
            raise UsageError(f"a URL is http://HOST[:PORT]/PATH, not {url!r}") from None
        endpoint = Endpoint(f"{parts.scheme}://{parts.netloc}", what="a URL")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reply = endpoint.exchange("GET", target, headers={"User-Agent": "azimds"}, timeout=timeout)
        location = reply.header("location")
        if reply.status not in (301, 302, 303, 307, 308) or not location:
            return reply
        url = location if "://" in location else endpoint.url + location
    raise ProtocolError(f"more than {redirects} redirections")


class _Reader:
    """Reads an answer within a deadline and a size bound."""

    __slots__ = ("deadline", "got", "max_body", "sock")

    def __init__(self, sock: _socket.socket, deadline: float, max_body: int) -> None:
        self.sock, self.deadline, self.max_body, self.got = sock, deadline, max_body, 0

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        return left

    def recv(self, size: int = 65536) -> bytes:
        self.sock.settimeout(self.left())
        chunk = self.sock.recv(size)
        self.got += len(chunk)
        if self.got > self.max_body + _MAX_HEAD:
            raise ProtocolError(f"the answer is larger than {self.max_body // 1024 // 1024} MiB")
        return chunk


def _read_reply(reader: _Reader, method: str) -> Reply:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = reader.recv()
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
        content = _dechunk(reader, rest)
    elif "content-length" in fields:
        length = int(fields["content-length"]) if fields["content-length"].isdigit() else -1
        if length < 0:
            raise ProtocolError("bad Content-Length")
        if length > reader.max_body:
            raise ProtocolError(f"the answer is larger than {reader.max_body // 1024 // 1024} MiB")
        content = _read_exactly(reader, rest, length)
    else:
        content = rest + _read_to_end(reader)
    return Reply(status, fields, content)


def _read_exactly(reader: _Reader, have: bytes, length: int) -> bytes:
    parts, got = [have], len(have)
    while got < length:
        chunk = reader.recv(min(65536, length - got))
        if not chunk:
            raise ProtocolError("the answer was cut short")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)[:length]


def _read_to_end(reader: _Reader) -> bytes:
    parts = []
    while chunk := reader.recv():
        parts.append(chunk)
    return b"".join(parts)


def _dechunk(reader: _Reader, data: bytes) -> bytes:
    out: list[bytes] = []
    while True:
        while b"\r\n" not in data:
            chunk = reader.recv()
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
        data = _read_exactly(reader, data, size + 2)
        out.append(data[:size])
        data = data[size + 2:]


def _exchange_tls(host: str, port: int | None, timeout: float, method: str, target: str,
                  headers: dict[str, str], body: bytes | None, max_body: int) -> Reply:
    import http.client

    connection = http.client.HTTPSConnection(host, port, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        fields = {name.lower(): value for name, value in response.getheaders()}
        content = response.read(max_body + 1)
        if len(content) > max_body:
            raise ProtocolError(f"the answer is larger than {max_body // 1024 // 1024} MiB")
        return Reply(response.status, fields, content)
    except http.client.HTTPException as exc:
        raise ProtocolError(str(exc) or type(exc).__name__) from exc
    finally:
        connection.close()
