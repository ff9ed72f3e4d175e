"""The signer's certificate chained to a trusted root, checked as a TLS server certificate would be.

``check_chain`` builds the path from the signer through the candidate intermediates to a trust root and checks
it with the rules of the web PKI profile that ``cryptography``'s server verifier applies (the verifier used
before the client became standard-library only), so the same chains pass and fail:

* every certificate: X.509 v3, the same signature algorithm inside and outside the signed part, a positive
  serial of at most 20 octets (21 with a sign octet), a non-empty issuer, UTCTime before 2050, valid at ``when``;
* the signer: an end entity (not cA, no keyCertSign, no nameConstraints), an authorityKeyIdentifier, a
  subjectAltName that names ``name``, serverAuth in its extendedKeyUsage when it has one;
* each issuer: cA in a critical basicConstraints whose pathLen admits the certificates below it, keyCertSign,
  serverAuth (or anyExtendedKeyUsage) in its extendedKeyUsage when it has one, a keyIdentifier in its
  authorityKeyIdentifier when it has one, its nameConstraints honoured, an RSA key of 2048 bits or more or an
  EC key on P-256/P-384/P-521, and a valid signature on the certificate below it: RSA PKCS#1 v1.5 or ECDSA,
  with SHA-256/384/512 (SHA-1 and MD5 are refused);
* no certificate with a critical extension these rules do not know.

Two differences, both refusals where cryptography accepts: RSA-PSS signatures (Azure's chains use PKCS#1 v1.5),
and name constraints on e-mail addresses or other kinds than DNS names, IP addresses and directory names.

The path ends at a certificate that is a trust root, or has a trust root's subject and key (a root given again,
re-issued or cross-signed). Candidates are tried trusted roots first, then by how well their key identifier
matches; at most 8 intermediates, 128 signature checks.
"""

from __future__ import annotations

import datetime as dt

from ..errors import ChainError
from ._crypto import EcKey, RsaKey, ecdsa_verify, rsa_verify
from ._x509 import (
    AUTHORITY_INFO_ACCESS,
    AUTHORITY_KEY_ID,
    BASIC_CONSTRAINTS,
    DIRECTORY_NAME,
    DNS_NAME,
    EXTENDED_KEY_USAGE,
    IP_ADDRESS,
    KEY_CERT_SIGN,
    KEY_USAGE,
    NAME_CONSTRAINTS,
    SUBJECT_ALT_NAME,
    SUBJECT_KEY_ID,
    Certificate,
    GeneralName,
)

__all__ = ["check_chain", "valid_dns_name"]

MAX_INTERMEDIATES = 8
SIGNATURE_BUDGET = 128
NAME_CHECK_BUDGET = 1 << 20
MIN_RSA_BITS = 2048

SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
ANY_EXTENDED_KEY_USAGE = "2.5.29.37.0"

_CA_USAGES = frozenset({SERVER_AUTH, ANY_EXTENDED_KEY_USAGE})
_EMPTY_NAME = b"\x30\x00"

#: The public key algorithms an issuer may have (AlgorithmIdentifier DER): RSA, EC on P-256, P-384, P-521.
_ISSUER_KEYS = frozenset(bytes.fromhex(h) for h in (
    "300d06092a864886f70d0101010500", "301306072a8648ce3d020106082a8648ce3d030107",
    "301006072a8648ce3d020106052b81040022", "301006072a8648ce3d020106052b81040023"))

#: The certificate signature algorithms accepted (AlgorithmIdentifier DER): (kind, hash).
_SIGNATURES = {
    bytes.fromhex("300d06092a864886f70d01010b0500"): ("rsa", "sha256"),
    bytes.fromhex("300d06092a864886f70d01010c0500"): ("rsa", "sha384"),
    bytes.fromhex("300d06092a864886f70d01010d0500"): ("rsa", "sha512"),
    bytes.fromhex("300a06082a8648ce3d040302"): ("ecdsa", "sha256"),
    bytes.fromhex("300a06082a8648ce3d040303"): ("ecdsa", "sha384"),
    bytes.fromhex("300a06082a8648ce3d040304"): ("ecdsa", "sha512"),
}
_RSA_PSS = bytes.fromhex("06092a864886f70d01010a")


_Subtrees = tuple[tuple[GeneralName, ...] | None, tuple[GeneralName, ...] | None]


class _Failure(Exception):
    """This path does not work (another may)."""


class _Exhausted(_Failure):
    """No path may be tried any more: a budget is spent."""


def check_chain(leaf: Certificate, intermediates: list[Certificate], roots: list[Certificate], name: str,
                when: dt.datetime) -> tuple[Certificate, ...]:
    """The path from ``leaf`` to a trusted root (leaf first, root last); raises ``ChainError``."""
    when = when.replace(microsecond=0)
    try:
        _check_end_entity(leaf, name, when)
        builder = _Builder(intermediates, roots, when)
        return tuple(builder.build(leaf, 0, ((leaf.ext.subject_alt_names or ()),)))
    except _Failure as exc:
        raise ChainError(f"the signer does not chain to a trusted root: {exc}") from None


class _Builder:
    def __init__(self, intermediates: list[Certificate], roots: list[Certificate], when: dt.datetime) -> None:
        self.roots = list(dict.fromkeys(roots))
        self.intermediates = list(dict.fromkeys(intermediates))
        self.anchors = {root.der for root in self.roots}
        self.anchor_keys = {(root.subject_der, root.spki) for root in self.roots}
        self.when = when
        self.signatures = SIGNATURE_BUDGET
        self.name_checks = NAME_CHECK_BUDGET

    def build(self, cert: Certificate, depth: int, names: tuple[tuple[GeneralName, ...], ...]) -> list[Certificate]:
        """``cert`` and the certificates above it up to a trust root; ``names``: the SANs below (and of) it."""
        if cert.ext.name_constraints is not None:
            self._check_name_constraints(cert, cert.ext.name_constraints, names)
        if cert.der in self.anchors or (cert.subject_der, cert.spki) in self.anchor_keys:
            return [cert]
        if depth > MAX_INTERMEDIATES:
            raise _Failure(f"more than {MAX_INTERMEDIATES} intermediates")
        last: _Failure | None = None
        for issuer in self._issuers(cert):
            try:
                self._check_issuer(issuer, cert, depth)
                self_issued = issuer.subject_der == issuer.issuer_der
                above = names if self_issued else (*names, issuer.ext.subject_alt_names or ())
                return [cert, *self.build(issuer, depth + 1, above)]
            except _Exhausted:
                raise
            except _Failure as exc:
                last = exc
        if last is not None:
            raise last
        raise _Failure(f"no trusted root or intermediate is {cert.issuer} (the issuer of {cert.subject})")

    def _issuers(self, cert: Certificate) -> list[Certificate]:
        """The certificates that may have issued ``cert``: trusted first, the likeliest (by key identifier) first."""
        named = [c for c in self.roots if c.subject_der == cert.issuer_der]
        named += [c for c in self.intermediates if c.subject_der == cert.issuer_der and c not in named]
        wanted = cert.ext.authority_key_id[0] if cert.ext.authority_key_id else None

        def unlikeliness(candidate: Certificate) -> int:
            have = candidate.ext.subject_key_id
            if wanted is None or have is None:
                return 1
            return 0 if wanted == have else 2

        return sorted(named, key=unlikeliness)

    def _check_issuer(self, issuer: Certificate, child: Certificate, depth: int) -> None:
        """``issuer`` is a CA allowed at ``depth`` and signed ``child``."""
        who = issuer.subject
        _check_basic(issuer, self.when)
        constraints = issuer.ext.basic_constraints
        if constraints is not None and constraints[1] is not None and depth > constraints[1]:
            raise _Failure(f"{who}: its path length constraint ({constraints[1]}) is exceeded")
        _check_ca_extensions(issuer)
        if issuer.key_algorithm not in _ISSUER_KEYS:
            raise _Failure(f"{who}: its public key algorithm is not allowed")
        kind_hash = _SIGNATURES.get(child.signature_algorithm)
        if kind_hash is None:
            pss = _RSA_PSS in child.signature_algorithm[:13]
            what = "RSA-PSS, not supported" if pss else "an algorithm not allowed"
            raise _Failure(f"{child.subject}: signed with {what}")
        key = issuer.public_key
        if isinstance(key, RsaKey) and key.bits < MIN_RSA_BITS:
            raise _Failure(f"{who}: its RSA key is too weak ({key.bits} bits)")
        self.signatures -= 1
        if self.signatures < 0:
            raise _Exhausted(f"more than {SIGNATURE_BUDGET} signature checks")
        kind, hash_name = kind_hash
        if kind == "rsa":
            valid = isinstance(key, RsaKey) and rsa_verify(key, hash_name, child.tbs, child.signature)
        else:
            valid = isinstance(key, EcKey) and ecdsa_verify(key, hash_name, child.tbs, child.signature)
        if not valid:
            raise _Failure(f"{child.subject}: its signature does not match the key of {who}")

    def _check_name_constraints(self, cert: Certificate, constraints: _Subtrees,
                                names: tuple[tuple[GeneralName, ...], ...]) -> None:
        permitted, excluded = constraints
        for san in (san for group in names for san in group):
            allowed = True
            for constraint in permitted or ():
                status = self._constraint_matches(constraint, san, excluded=False)
                if status is not None:
                    allowed = status
                    if allowed:
                        break
            if not allowed:
                raise _Failure(f"{cert.subject}: no permitted name constraint matches {_show(san)}")
            for constraint in excluded or ():
                if self._constraint_matches(constraint, san, excluded=True):
                    raise _Failure(f"{cert.subject}: an excluded name constraint matches {_show(san)}")

    def _constraint_matches(self, constraint: GeneralName, san: GeneralName, *, excluded: bool) -> bool | None:
        """Whether a constraint matches a name; None when it is of another kind."""
        self.name_checks -= 1
        if self.name_checks < 0:
            raise _Exhausted(f"more than {NAME_CHECK_BUDGET} name constraint checks")
        kind, value = constraint
        if kind != san[0]:
            return None
        if kind == DNS_NAME:
            base = value.decode("ascii")
            if not valid_dns_name(base):
                raise _Failure(f"malformed DNS name constraint {base!r}")
            pattern = san[1].decode("ascii")
            wildcard = pattern.startswith("*.")
            name = pattern[2:] if wildcard else pattern
            if not valid_dns_name(name):
                raise _Failure(f"DNS name constraints cannot apply to the malformed name {pattern!r}")
            if not wildcard:
                return _within(name, base)
            # *.name stands for a set of names: all of it must be permitted; any of it excluded
            return _within(name, base) or (excluded and base.partition(".")[2].lower() == name.lower())
        if kind == IP_ADDRESS:
            if len(value) not in (8, 32) or len(san[1]) not in (4, 16):
                raise _Failure("malformed IP address name constraint or name")
            half = len(value) // 2
            mask = int.from_bytes(value[half:], "big")
            prefix = bin(mask).count("1")
            if mask != ((1 << prefix) - 1) << (half * 8 - prefix):
                raise _Failure("malformed IP address name constraint")
            if len(san[1]) != half:
                return False
            return int.from_bytes(value[:half], "big") & mask == int.from_bytes(san[1], "big") & mask
        if kind == DIRECTORY_NAME and excluded:
            return False
        raise _Failure("a name constraint of a kind not supported")


def _check_basic(cert: Certificate, when: dt.datetime) -> None:
    who = cert.subject
    if cert.version != 2:
        raise _Failure(f"{who}: not an X.509 v3 certificate")
    if cert.signature_algorithm != cert.tbs_signature_algorithm:
        raise _Failure(f"{who}: its signature algorithm differs inside and outside the signed part")
    if not 1 <= cert.serial_length <= 21:
        raise _Failure(f"{who}: its serial number is not 1 to 20 octets")
    if cert.serial_number < 0:
        raise _Failure(f"{who}: its serial number is negative")
    if cert.issuer_der == _EMPTY_NAME:
        raise _Failure(f"{who}: its issuer is empty")
    for generalized, moment in zip(cert.generalized_validity, (cert.not_before, cert.not_after), strict=True):
        if generalized and 1950 <= moment.year < 2050:
            raise _Failure(f"{who}: a validity date before 2050 is not a UTCTime")
    if not cert.not_before <= when <= cert.not_after:
        raise _Failure(f"{who}: not valid at {when:%Y-%m-%d %H:%M:%S} UTC (valid from "
                       f"{cert.not_before:%Y-%m-%d %H:%M:%S} to {cert.not_after:%Y-%m-%d %H:%M:%S} UTC)")


def _check_end_entity(cert: Certificate, name: str, when: dt.datetime) -> None:
    """The signer's certificate as the web PKI profile wants a server's."""
    _check_basic(cert, when)
    who = f"the signer's certificate ({cert.subject})"
    ext = cert.ext
    for oid, critical in ext.listed:
        if oid in (AUTHORITY_INFO_ACCESS, AUTHORITY_KEY_ID) and critical:
            raise _Failure(f"{who}: extension {oid} must not be critical")
        if oid == KEY_USAGE and (ext.key_usage or 0) & KEY_CERT_SIGN:
            raise _Failure(f"{who}: its keyUsage asserts keyCertSign")
        elif oid == SUBJECT_ALT_NAME:
            if critical != (cert.subject_der == _EMPTY_NAME):
                raise _Failure(f"{who}: subjectAltName must be critical exactly when the subject is empty")
            if not valid_dns_name(name):
                raise _Failure(f"{who}: {name!r} is not a valid DNS name")
            if not any(kind == DNS_NAME and _pattern_matches(value.decode("ascii"), name)
                       for kind, value in ext.subject_alt_names or ()):
                raise _Failure(f"{who}: no subjectAltName matches {name}")
        elif oid == BASIC_CONSTRAINTS and ext.basic_constraints and ext.basic_constraints[0]:
            raise _Failure(f"{who}: it is a CA certificate (basicConstraints cA)")
        elif oid == NAME_CONSTRAINTS:
            raise _Failure(f"{who}: nameConstraints is not allowed in it")
        elif oid == EXTENDED_KEY_USAGE:
            if critical:
                raise _Failure(f"{who}: extendedKeyUsage must not be critical")
            if SERVER_AUTH not in (ext.extended_key_usage or ()):
                raise _Failure(f"{who}: its extendedKeyUsage lacks serverAuth")
        elif critical and oid not in _KNOWN:
            raise _Failure(f"{who}: unknown critical extension {oid}")
    if ext.authority_key_id is None:
        raise _Failure(f"{who}: no authorityKeyIdentifier")
    if ext.subject_alt_names is None:
        raise _Failure(f"{who}: no subjectAltName")


def _check_ca_extensions(cert: Certificate) -> None:
    who = cert.subject
    ext = cert.ext
    for oid, critical in ext.listed:
        if oid in (AUTHORITY_INFO_ACCESS, AUTHORITY_KEY_ID, SUBJECT_KEY_ID, EXTENDED_KEY_USAGE) and critical:
            raise _Failure(f"{who}: extension {oid} must not be critical")
        if oid == AUTHORITY_KEY_ID and ext.authority_key_id is not None and ext.authority_key_id[0] is None:
            raise _Failure(f"{who}: its authorityKeyIdentifier has no keyIdentifier")
        elif oid == KEY_USAGE and not (ext.key_usage or 0) & KEY_CERT_SIGN:
            raise _Failure(f"{who}: its keyUsage lacks keyCertSign")
        elif oid == BASIC_CONSTRAINTS:
            if not critical:
                raise _Failure(f"{who}: basicConstraints must be critical")
            if not (ext.basic_constraints and ext.basic_constraints[0]):
                raise _Failure(f"{who}: not a CA (basicConstraints cA is false)")
        elif oid == NAME_CONSTRAINTS and ext.name_constraints is not None and not any(ext.name_constraints):
            raise _Failure(f"{who}: nameConstraints with neither permitted nor excluded subtrees")
        elif oid == EXTENDED_KEY_USAGE and not _CA_USAGES & set(ext.extended_key_usage or ()):
            raise _Failure(f"{who}: its extendedKeyUsage lacks serverAuth")
        elif critical and oid not in _KNOWN:
            raise _Failure(f"{who}: unknown critical extension {oid}")
    if ext.key_usage is None:
        raise _Failure(f"{who}: no keyUsage")
    if ext.basic_constraints is None:
        raise _Failure(f"{who}: no basicConstraints (not a CA)")


_KNOWN = frozenset({AUTHORITY_INFO_ACCESS, AUTHORITY_KEY_ID, SUBJECT_KEY_ID, KEY_USAGE, SUBJECT_ALT_NAME,
                    BASIC_CONSTRAINTS, NAME_CONSTRAINTS, EXTENDED_KEY_USAGE})


# -- DNS names -------------------------------------------------------------------------------------------------------

def valid_dns_name(name: str) -> bool:
    """A host name: 1 to 253 characters, labels of 1 to 63 letters, digits and inner hyphens."""
    if not name or len(name) > 253:
        return False
    return all(label and len(label) <= 63 and label[0] != "-" and label[-1] != "-"
               and all(c.isascii() and (c.isalnum() or c == "-") for c in label) for label in name.split("."))


def _pattern_matches(pattern: str, name: str) -> bool:
    """A subjectAltName DNS name (``*.`` wildcard in the left-most label allowed) matches a name."""
    if pattern.startswith("*."):
        parent = name.partition(".")[2]
        return bool(parent) and valid_dns_name(pattern[2:]) and pattern[2:].lower() == parent.lower()
    return valid_dns_name(pattern) and pattern.lower() == name.lower()


def _within(name: str, base: str) -> bool:
    """``name`` is ``base`` or under it (label by label, case-insensitive)."""
    labels, base_labels = name.lower().split("."), base.lower().split(".")
    return len(labels) >= len(base_labels) and labels[len(labels) - len(base_labels):] == base_labels


def _show(name: GeneralName) -> str:
    kind, value = name
    return value.decode("ascii") if kind == DNS_NAME else f"a name of kind {kind}"
