"""Signature verification with ``pow`` and ``hashlib``, so that the client checks attested documents and their
certificate chains without a third-party package.

RSA PKCS#1 v1.5 (RFC 8017 §8.2.2): the signature is raised to the public exponent and the result compared,
whole, with the EMSA-PKCS1-v1_5 encoding expected for the message: nothing of the decrypted block is parsed,
so no lenient parse can be fooled (Bleichenbacher's 2006 forgery). ECDSA (FIPS 186-5) on P-256, P-384 and
P-521, for CA certificates with EC keys. Only public values are handled: no secret, no timing concern.
"""

from __future__ import annotations

import hashlib
import hmac

from . import _der

__all__ = ["CURVES", "HASHES", "Curve", "EcKey", "RsaKey", "ecdsa_verify", "rsa_verify"]

#: hashlib names by size; the DigestInfo DER that precedes each digest in EMSA-PKCS1-v1_5 (RFC 8017 §9.2).
HASHES = ("sha1", "sha256", "sha384", "sha512")
_DIGEST_INFO = {
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

# OpenSSL's limits (OPENSSL_RSA_MAX_MODULUS_BITS, and the public exponent of large moduli): they bound the
# work one signature check can cost.
_RSA_MAX_BITS = 16384
_RSA_SMALL_BITS = 3072
_RSA_MAX_EXPONENT_BITS = 64


class RsaKey:
    """An RSA public key: modulus ``n``, exponent ``e``."""

    __slots__ = ("e", "n")

    def __init__(self, n: int, e: int) -> None:
        if n <= 0 or n.bit_length() > _RSA_MAX_BITS or not n & 1:
            raise _der.DerError("RSA modulus out of range")
        large = n.bit_length() > _RSA_SMALL_BITS and e.bit_length() > _RSA_MAX_EXPONENT_BITS
        if e < 3 or not e & 1 or e >= n or large:
            raise _der.DerError("RSA public exponent out of range")
        self.n, self.e = n, e

    @property
    def bits(self) -> int:
        return self.n.bit_length()


def rsa_verify(key: RsaKey, hash_name: str, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``message`` signed with RSASSA-PKCS1-v1_5 and ``hash_name`` by ``key``'s owner."""
    size = (key.n.bit_length() + 7) // 8
    if len(signature) != size:
        return False
    number = int.from_bytes(signature, "big")
    if number >= key.n:
        return False
    encoded = pow(number, key.e, key.n).to_bytes(size, "big")
    digest_info = _DIGEST_INFO[hash_name] + hashlib.new(hash_name, message).digest()
    if size < len(digest_info) + 11:
        return False
    expected = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
    return hmac.compare_digest(encoded, expected)


# -- ECDSA ----------------------------------------------------------------------------------------------------

class Curve:
    """A short-Weierstrass prime curve y² = x³ - 3x + b (the NIST curves), of prime order ``n``, cofactor 1."""

    __slots__ = ("b", "g", "n", "name", "p", "size")

    def __init__(self, name: str, p: int, b: int, gx: int, gy: int, n: int) -> None:
        self.name, self.p, self.b, self.g, self.n = name, p, b, (gx, gy), n
        self.size = (p.bit_length() + 7) // 8

    def on_curve(self, x: int, y: int) -> bool:
        return 0 <= x < self.p and 0 <= y < self.p and (y * y - x * x * x + 3 * x - self.b) % self.p == 0


CURVES = {
    "1.2.840.10045.3.1.7": Curve(
        "P-256", 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
        0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551),
    "1.3.132.0.34": Curve(
        "P-384", 2**384 - 2**128 - 2**96 + 2**32 - 1,
        0xB3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF,
        0xAA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A385502F25DBF55296C3A545E3872760AB7,
        0x3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C00A60B1CE1D7E819D7A431D7C90EA0E5F,
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973),
    "1.3.132.0.35": Curve(
        "P-521", 2**521 - 1,
        0x0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF109E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00,
        0x00C6858E06B70404E9CD9E3ECB662395B4429C648139053FB521F828AF606B4D3DBAA14B5E77EFE75928FE1DC127A2FFA8DE3348B3C1856A429BF97E7E31C2E5BD66,
        0x011839296A789A3BC0045C8A5FB42C7D1BD998F54449579B446817AFBD17273E662C97EE72995EF42640C550B9013FAD0761353C7086A272C24088BE94769FD16650,
        0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409),
}


class EcKey:
    """An EC public key: a point of ``curve`` (checked to lie on it; cofactor 1, so in the group)."""

    __slots__ = ("curve", "x", "y")

    def __init__(self, curve: Curve, point: bytes) -> None:
        size = curve.size
        if len(point) == 1 + 2 * size and point[0] == 4:
            x, y = int.from_bytes(point[1:1 + size], "big"), int.from_bytes(point[1 + size:], "big")
        elif len(point) == 1 + size and point[0] in (2, 3):  # compressed: p ≡ 3 (mod 4) for the three curves
            x = int.from_bytes(point[1:], "big")
            if x >= curve.p:
                raise _der.DerError("EC point out of range")
            y = pow((x * x * x - 3 * x + curve.b) % curve.p, (curve.p + 1) // 4, curve.p)
            if y & 1 != point[0] & 1:
                y = (curve.p - y) % curve.p
        else:
            raise _der.DerError("EC point not in the uncompressed or compressed form")
        if not curve.on_curve(x, y):
            raise _der.DerError("EC point not on the curve")
        self.curve, self.x, self.y = curve, x, y


def ecdsa_verify(key: EcKey, hash_name: str, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (DER ``SEQUENCE { r, s }``) is ECDSA over ``message`` with ``hash_name`` by ``key``."""
    curve = key.curve
    try:
        reader = _der.parse(signature, "ECDSA signature").expect(_der.SEQUENCE, "ECDSA signature").reader()
        r = _der.integer(reader.read())
        s = _der.integer(reader.read())
        reader.finish("ECDSA signature")
    except _der.DerError:
        return False
    n = curve.n
    if not (0 < r < n and 0 < s < n):
        return False
    digest = hashlib.new(hash_name, message).digest()
    e = int.from_bytes(digest, "big")
    if len(digest) * 8 > n.bit_length():
        e >>= len(digest) * 8 - n.bit_length()
    w = pow(s, -1, n)
    point = _shamir(curve, e * w % n, curve.g, r * w % n, (key.x, key.y))
    if point is None:
        return False
    return point[0] % n == r


_Jacobian = tuple[int, int, int]  # (X, Y, Z): x = X/Z², y = Y/Z³; Z = 0 is the point at infinity


def _double(p: int, point: _Jacobian) -> _Jacobian:
    x, y, z = point
    if not y or not z:
        return (0, 1, 0)
    yy = y * y % p
    s = 4 * x * yy % p
    zz = z * z % p
    m = 3 * (x - zz) * (x + zz) % p  # a = -3
    x3 = (m * m - 2 * s) % p
    return x3, (m * (s - x3) - 8 * yy * yy) % p, 2 * y * z % p


def _add(p: int, one: _Jacobian, two: _Jacobian) -> _Jacobian:
    x1, y1, z1 = one
    x2, y2, z2 = two
    if not z1:
        return two
    if not z2:
        return one
    z1z1, z2z2 = z1 * z1 % p, z2 * z2 % p
    u1, u2 = x1 * z2z2 % p, x2 * z1z1 % p
    s1, s2 = y1 * z2 * z2z2 % p, y2 * z1 * z1z1 % p
    h, r = (u2 - u1) % p, (s2 - s1) % p
    if not h:
        return _double(p, one) if not r else (0, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    return x3, (r * (v - x3) - s1 * hhh) % p, h * z1 * z2 % p


def _shamir(curve: Curve, k1: int, p1: tuple[int, int], k2: int, p2: tuple[int, int]) -> tuple[int, int] | None:
    """k1·P1 + k2·P2 in affine coordinates, None for the point at infinity."""
    p = curve.p
    a: _Jacobian = (p1[0], p1[1], 1)
    b: _Jacobian = (p2[0], p2[1], 1)
    both = _add(p, a, b)
    table = {1: a, 2: b, 3: both}
    result: _Jacobian = (0, 1, 0)
    for bit in range(max(k1.bit_length(), k2.bit_length()) - 1, -1, -1):
        result = _double(p, result)
        index = (k1 >> bit & 1) | (k2 >> bit & 1) << 1
        if index:
            result = _add(p, result, table[index])
    x, y, z = result
    if not z:
        return None
    inverse = pow(z, -1, p)
    zz = inverse * inverse % p
    return x * zz % p, y * zz * inverse % p
