"""A strict DER reader, so that the client can parse attested documents and certificates with the standard library.

It reads untrusted bytes: definite lengths only, in their shortest form; every length checked against the
element that holds it; nesting depth and total size bounded; values decoded only in their DER form (minimal
INTEGERs, BOOLEAN 0x00/0xFF, zero padding bits, UTCTime/GeneralizedTime to the second with ``Z``). Whatever
does not fit raises ``DerError``, and nothing else: callers turn it into the ``AttestationError`` that names
their context (``FormatError`` for the document, ``ChainError`` for a fetched certificate).

Elements are read lazily, by the schema the caller walks: ``parse(data)`` gives the outer element, a ``Reader``
over it gives its children one by one.
"""

from __future__ import annotations

import datetime as dt

__all__ = [
    "BIT_STRING", "BOOLEAN", "GENERALIZED_TIME", "INTEGER", "MAX_DEPTH", "MAX_SIZE", "NULL", "OCTET_STRING", "OID",
    "SEQUENCE", "SET", "UTC_TIME", "DerError", "Element", "Reader", "bit_string", "boolean", "context", "integer",
    "null", "octet_string", "octets", "oid", "parse", "string", "time", "unsigned",
]

#: The largest input read (an attested document is ~2-8 KB, a certificate ~1-2 KB; a CA bundle is read one
#: certificate at a time).
MAX_SIZE = 1 << 20
#: The deepest nesting read: X.509 and CMS need about 10 levels.
MAX_DEPTH = 32

BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31

_CONSTRUCTED = 0x20
_MAX_OID_BYTES = 128


class DerError(Exception):
    """Bytes that are not the DER expected: malformed, truncated, too deep or too large, or of another type."""


def context(number: int, *, constructed: bool = True) -> int:
    """The tag of ``[number]`` (context-specific): constructed for EXPLICIT or IMPLICIT SEQUENCE/SET."""
    return (0xA0 if constructed else 0x80) | number


class Element:
    """One TLV: ``tag`` (the identifier octet; high tag numbers as ``first << 32 | number``), where it lies."""

    __slots__ = ("data", "depth", "end", "offset", "start", "tag")

    def __init__(self, data: bytes, tag: int, start: int, offset: int, end: int, depth: int) -> None:
        self.data, self.tag, self.start, self.offset, self.end, self.depth = data, tag, start, offset, end, depth

    @property
    def constructed(self) -> bool:
        return bool((self.tag >> 32 if self.tag > 0xFF else self.tag) & _CONSTRUCTED)

    @property
    def content(self) -> bytes:
        """The value octets."""
        return self.data[self.offset:self.end]

    @property
    def raw(self) -> bytes:
        """The whole encoding: identifier, length and value."""
        return self.data[self.start:self.end]

    def reader(self) -> Reader:
        """The children of a constructed element, to read in order."""
        if not self.constructed:
            raise DerError(f"expected a constructed element, found tag 0x{self.tag:02x}")
        return Reader(self.data, self.offset, self.end, self.depth + 1)

    def children(self) -> list[Element]:
        reader = self.reader()
        out = []
        while not reader.at_end():
            out.append(reader.read())
        return out

    def expect(self, tag: int, what: str) -> Element:
        if self.tag != tag:
            raise DerError(f"{what}: expected tag 0x{tag:02x}, found 0x{self.tag:02x}")
        return self


class Reader:
    """Reads the elements between ``start`` and ``end`` of ``data`` one after the other."""

    __slots__ = ("data", "depth", "end", "pos")

    def __init__(self, data: bytes, start: int, end: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise DerError(f"nested deeper than {MAX_DEPTH} levels")
        self.data, self.pos, self.end, self.depth = data, start, end, depth

    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek(self) -> int | None:
        """The tag of the next element, None at the end."""
        if self.at_end():
            return None
        return _header(self.data, self.pos, self.end)[0]

    def read(self, tag: int | None = None, what: str = "element") -> Element:
        """The next element (of ``tag`` if given)."""
        if self.at_end():
            raise DerError(f"{what}: missing")
        found, offset, end = _header(self.data, self.pos, self.end)
        element = Element(self.data, found, self.pos, offset, end, self.depth)
        if tag is not None:
            element.expect(tag, what)
        self.pos = end
        return element

    def optional(self, tag: int) -> Element | None:
        """The next element if it has ``tag``, else None (and nothing is consumed)."""
        return self.read(tag) if self.peek() == tag else None

    def finish(self, what: str) -> None:
        """Nothing may follow."""
        if not self.at_end():
            raise DerError(f"{what}: unexpected data after its last field")


def parse(data: bytes, what: str = "DER") -> Element:
    """The one element that ``data`` is, whole (nothing before or after it)."""
    if not isinstance(data, bytes):
        raise DerError(f"{what}: expected bytes, not {type(data).__name__}")
    if len(data) > MAX_SIZE:
        raise DerError(f"{what}: larger than {MAX_SIZE} bytes")
    reader = Reader(data, 0, len(data), 0)
    element = reader.read(what=what)
    reader.finish(what)
    return element


def _header(data: bytes, pos: int, limit: int) -> tuple[int, int, int]:
    """(tag, offset of the value, end of the value) of the TLV at ``pos``, all within ``limit``."""
    if pos >= limit:
        raise DerError("truncated: no tag")
    first = data[pos]
    pos += 1
    tag = first
    if first & 0x1F == 0x1F:  # high tag number form, base-128
        number = 0
        for count in range(4):
            if pos >= limit:
                raise DerError("truncated tag")
            octet = data[pos]
            pos += 1
            if count == 0 and octet == 0x80:
                raise DerError("tag number not in its shortest form")
            number = number << 7 | octet & 0x7F
            if not octet & 0x80:
                break
        else:
            raise DerError("tag number too large")
        if number < 0x1F:
            raise DerError("tag number not in its shortest form")
        tag = first << 32 | number
    if pos >= limit:
        raise DerError("truncated: no length")
    length = data[pos]
    pos += 1
    if length & 0x80:
        count = length & 0x7F
        if count == 0:
            raise DerError("indefinite length (BER, not DER)")
        if count > 4:
            raise DerError("length too large")
        if pos + count > limit:
            raise DerError("truncated length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
        if length < 0x80 or length >> (8 * (count - 1)) == 0:
            raise DerError("length not in its shortest form")
    end = pos + length
    if end > limit:
        raise DerError(f"truncated: {length} bytes announced, {limit - pos} there")
    return tag, pos, end


# -- values ---------------------------------------------------------------------------------------------------

def integer(element: Element, what: str = "INTEGER") -> int:
    content = element.expect(INTEGER, what).content
    if not content:
        raise DerError(f"{what}: empty")
    if len(content) > 1 and ((content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)):
        raise DerError(f"{what}: not in its shortest form")
    return int.from_bytes(content, "big", signed=True)


def unsigned(element: Element, what: str = "INTEGER") -> int:
    value = integer(element, what)
    if value < 0:
        raise DerError(f"{what}: negative")
    return value


def boolean(element: Element, what: str = "BOOLEAN") -> bool:
    content = element.expect(BOOLEAN, what).content
    if content not in (b"\x00", b"\xff"):
        raise DerError(f"{what}: not 0x00 or 0xFF")
    return content == b"\xff"


def null(element: Element, what: str = "NULL") -> None:
    if element.expect(NULL, what).end != element.offset:
        raise DerError(f"{what}: not empty")


def octet_string(element: Element, what: str = "OCTET STRING") -> bytes:
    return element.expect(OCTET_STRING, what).content


def bit_string(element: Element, what: str = "BIT STRING") -> tuple[bytes, int]:
    """(the bytes, how many bits of the last byte are unused); unused bits must be zero."""
    content = element.expect(BIT_STRING, what).content
    if not content:
        raise DerError(f"{what}: empty")
    unused = content[0]
    if unused > 7 or (unused and len(content) == 1):
        raise DerError(f"{what}: bad count of unused bits")
    if unused and content[-1] & ((1 << unused) - 1):
        raise DerError(f"{what}: unused bits are not zero")
    return content[1:], unused


def octets(element: Element, what: str = "BIT STRING") -> bytes:
    """A BIT STRING that holds whole bytes (a key, a signature)."""
    value, unused = bit_string(element, what)
    if unused:
        raise DerError(f"{what}: not a whole number of bytes")
    return value


def oid(element: Element, what: str = "OBJECT IDENTIFIER") -> str:
    """The dotted form."""
    content = element.expect(OID, what).content
    if not content or len(content) > _MAX_OID_BYTES:
        raise DerError(f"{what}: empty or too long")
    if content[-1] & 0x80:
        raise DerError(f"{what}: truncated")
    arcs: list[int] = []
    value = 0
    fresh = True
    for octet in content:
        if fresh and octet == 0x80:
            raise DerError(f"{what}: arc not in its shortest form")
        value = value << 7 | octet & 0x7F
        fresh = not octet & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(map(str, head + arcs[1:]))


def time(element: Element, what: str = "time") -> tuple[dt.datetime, bool]:
    """A UTCTime or GeneralizedTime (``Z``, whole seconds) as an aware datetime; and whether it was generalized."""
    content = element.content
    if element.tag == UTC_TIME and len(content) == 13:
        digits, generalized = content[:12], False
    elif element.tag == GENERALIZED_TIME and len(content) == 15:
        digits, generalized = content[:14], True
    else:
        raise DerError(f"{what}: not a UTCTime or GeneralizedTime in the form YYMMDDHHMMSSZ")
    if content[-1:] != b"Z" or not digits.isdigit():
        raise DerError(f"{what}: not a UTCTime or GeneralizedTime in the form YYMMDDHHMMSSZ")
    if generalized:
        year, rest = int(digits[:4]), digits[4:]
    else:
        year, rest = int(digits[:2]), digits[2:]
        year += 1900 if year >= 50 else 2000
    try:
        return dt.datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]), int(rest[8:10]),
                           tzinfo=dt.UTC), generalized
    except ValueError:
        raise DerError(f"{what}: not a valid date and time") from None


_STRINGS = {0x0C: "utf-8", 0x12: "ascii", 0x13: "ascii", 0x16: "ascii", 0x1A: "ascii", 0x14: "latin-1",
            0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def string(element: Element) -> str | None:
    """The text of a character string (UTF8String, PrintableString, IA5String, BMPString, ...), or None."""
    codec = _STRINGS.get(element.tag)
    if codec is None:
        return None
    try:
        return element.content.decode(codec)
    except UnicodeDecodeError:
        return None
