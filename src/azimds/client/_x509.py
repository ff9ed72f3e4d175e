"""X.509 certificates read with the standard library (RFC 5280), for the attested-document verifier.

``Certificate`` is what ``verify_attested`` gives back (``AttestedDocument.signer`` and ``.chain``): the DER, the
names as readable strings, the validity, the DNS names; and, for the chain checks, every field and extension
they need, decoded once when the certificate is read. Reading is strict (``_der``) and decodes the extensions
the checks use (basic constraints, key usage, extended key usage, subject and authority key identifiers,
subject alternative names, authority information access, name constraints): a certificate in which one of them
is malformed, or which carries an extension twice, is refused whole (``DerError``; the caller names the context).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass

from . import _der
from ._crypto import CURVES, EcKey, RsaKey
from ._der import BIT_STRING, BOOLEAN, INTEGER, OCTET_STRING, OID, SEQUENCE, SET, DerError, context

__all__ = ["Certificate", "load_certificates", "parse_certificate"]

# -- object identifiers -----------------------------------------------------------------------------------------

RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
EC_PUBLIC_KEY = "1.2.840.10045.2.1"

BASIC_CONSTRAINTS = "2.5.29.19"
KEY_USAGE = "2.5.29.15"
EXTENDED_KEY_USAGE = "2.5.29.37"
SUBJECT_ALT_NAME = "2.5.29.17"
AUTHORITY_KEY_ID = "2.5.29.35"
SUBJECT_KEY_ID = "2.5.29.14"
AUTHORITY_INFO_ACCESS = "1.3.6.1.5.5.7.1.1"
NAME_CONSTRAINTS = "2.5.29.30"
CA_ISSUERS = "1.3.6.1.5.5.7.48.2"
COMMON_NAME = "2.5.4.3"

#: keyUsage bits (RFC 5280 §4.2.1.3), as ``1 << bit``.
DIGITAL_SIGNATURE = 1 << 0
KEY_CERT_SIGN = 1 << 5

#: GeneralName choices (RFC 5280 §4.2.1.6), by their context tag number.
RFC822_NAME, DNS_NAME, DIRECTORY_NAME, URI, IP_ADDRESS = 1, 2, 4, 6, 7

_NAME_KEYS = {"2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C",
              "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID"}

GeneralName = tuple[int, bytes]  # (context tag number, the value's content octets; a directoryName's Name DER)


@dataclass(frozen=True)
class Extensions:
    """The extensions of a certificate: each (OID, critical) in order, and those the checks use, decoded."""

    listed: tuple[tuple[str, bool], ...] = ()
    subject_alt_names: tuple[GeneralName, ...] | None = None
    basic_constraints: tuple[bool, int | None] | None = None  # (cA, pathLenConstraint)
    key_usage: int | None = None  # bit n as 1 << n
    extended_key_usage: tuple[str, ...] | None = None
    authority_key_id: tuple[bytes | None, bool, bool] | None = None  # keyIdentifier, has issuer, has serial
    subject_key_id: bytes | None = None
    ca_issuers: tuple[str, ...] = ()  # authorityInfoAccess "CA Issuers" URIs
    name_constraints: tuple[tuple[GeneralName, ...] | None, tuple[GeneralName, ...] | None] | None = None


@dataclass(frozen=True, eq=False, repr=False)
class Certificate:
    """A parsed X.509 certificate. Equal to another when their DER is; read one with ``from_der``/``from_pem``.

    ``subject`` and ``issuer`` read like ``CN=metadata.azure.com, O=Microsoft Corporation, L=Redmond, ...``
    (RFC 4514 order, most specific first); ``not_before``/``not_after`` are aware UTC datetimes; ``dns_names``
    are the subjectAltName DNS names. Any object with a ``der`` attribute (bytes) may stand for a certificate
    wherever ``verify_attested`` takes one.
    """

    der: bytes
    subject: str
    issuer: str
    serial_number: int
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]
    # -- what the checks use --
    version: int  # 0 for v1 ... 2 for v3
    tbs: bytes  # the signed part, as signed
    tbs_signature_algorithm: bytes  # AlgorithmIdentifier DER, inside the signed part ...
    signature_algorithm: bytes  # ... and outside it
    signature: bytes
    serial_length: int  # octets of the serial's encoding
    issuer_der: bytes  # Name DER: names are compared by their bytes
    subject_der: bytes
    generalized_validity: tuple[bool, bool]  # notBefore, notAfter as GeneralizedTime (not UTCTime)
    spki: bytes  # SubjectPublicKeyInfo DER
    key_algorithm: bytes  # its AlgorithmIdentifier DER
    public_key: RsaKey | EcKey | None  # None: an algorithm not supported
    common_names: tuple[str, ...]
    ext: Extensions

    @classmethod
    def from_der(cls, der: bytes) -> Certificate:
        try:
            return parse_certificate(bytes(der))
        except DerError as exc:
            from ..errors import UsageError

            raise UsageError(f"not a certificate: {exc}") from None

    @classmethod
    def from_pem(cls, pem: str | bytes) -> list[Certificate]:
        """Every certificate of a PEM text (or of DER bytes: the one certificate)."""
        try:
            return load_certificates(pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem))
        except DerError as exc:
            from ..errors import UsageError

            raise UsageError(f"not a certificate: {exc}") from None

    def public_bytes_pem(self) -> str:
        body = base64.b64encode(self.der).decode("ascii")
        lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.der)

    def __repr__(self) -> str:
        return f"<Certificate subject={self.subject!r} issuer={self.issuer!r} not_after={self.not_after:%Y-%m-%d}>"


# -- reading --------------------------------------------------------------------------------------------------

_PEM = re.compile(rb"-----BEGIN (X509 )?CERTIFICATE-----([A-Za-z0-9+/=\s]*?)-----END \1?CERTIFICATE-----")


def load_certificates(data: bytes) -> list[Certificate]:
    """The certificates of PEM text (all of its CERTIFICATE blocks), or the one of DER bytes."""
    if b"-----BEGIN" not in data:
        return [parse_certificate(data)]
    certs = []
    for match in _PEM.finditer(data):
        try:
            der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        except (binascii.Error, ValueError):
            raise DerError("a PEM block is not base64") from None
        certs.append(parse_certificate(der))
    if not certs:
        raise DerError("no CERTIFICATE block in the PEM text")
    return certs


def parse_certificate(der: bytes) -> Certificate:
    """Read a DER certificate; raises ``DerError``."""
    top = _der.parse(der, "certificate").expect(SEQUENCE, "certificate").reader()
    tbs = top.read(SEQUENCE, "tbsCertificate")
    signature_algorithm = top.read(SEQUENCE, "signatureAlgorithm")
    signature = _der.octets(top.read(BIT_STRING, "signature"), "signature")
    top.finish("certificate")

    fields = tbs.reader()
    version = 0
    explicit = fields.optional(context(0))
    if explicit is not None:
        inner = explicit.reader()
        version = _der.integer(inner.read(INTEGER, "version"), "version")
        inner.finish("version")
        if version not in (0, 1, 2):
            raise DerError(f"unknown certificate version {version}")
    serial = fields.read(INTEGER, "serialNumber")
    tbs_signature_algorithm = fields.read(SEQUENCE, "signature")
    issuer = fields.read(SEQUENCE, "issuer")
    validity = fields.read(SEQUENCE, "validity").reader()
    not_before, before_generalized = _der.time(validity.read(what="notBefore"), "notBefore")
    not_after, after_generalized = _der.time(validity.read(what="notAfter"), "notAfter")
    validity.finish("validity")
    subject = fields.read(SEQUENCE, "subject")
    spki = fields.read(SEQUENCE, "subjectPublicKeyInfo")
    fields.optional(context(1, constructed=False))  # issuerUniqueID
    fields.optional(context(2, constructed=False))  # subjectUniqueID
    extensions = fields.optional(context(3))
    fields.finish("tbsCertificate")

    subject_text, common_names = _name(subject)
    key_algorithm, public_key = _public_key(spki)
    found = Extensions()
    if extensions is not None:
        inner = extensions.reader()
        found = _extensions(inner.read(SEQUENCE, "extensions"))
        inner.finish("extensions")
    dns_names = tuple(_ia5(value, "dNSName") for tag, value in found.subject_alt_names or () if tag == DNS_NAME)
    return Certificate(
        der=der, subject=subject_text, issuer=_name(issuer)[0], serial_number=_der.integer(serial, "serialNumber"),
        not_before=not_before, not_after=not_after, dns_names=dns_names, version=version, tbs=tbs.raw,
        tbs_signature_algorithm=tbs_signature_algorithm.raw, signature_algorithm=signature_algorithm.raw,
        signature=signature, serial_length=len(serial.content), issuer_der=issuer.raw, subject_der=subject.raw,
        generalized_validity=(before_generalized, after_generalized), spki=spki.raw, key_algorithm=key_algorithm,
        public_key=public_key, common_names=common_names, ext=found)


def algorithm(element: _der.Element) -> tuple[str, _der.Element | None]:
    """An AlgorithmIdentifier: (its OID, its parameters if any)."""
    reader = element.expect(SEQUENCE, "AlgorithmIdentifier").reader()
    algorithm_oid = _der.oid(reader.read(OID, "algorithm"), "algorithm")
    parameters = None if reader.at_end() else reader.read()
    reader.finish("AlgorithmIdentifier")
    return algorithm_oid, parameters


def _public_key(spki: _der.Element) -> tuple[bytes, RsaKey | EcKey | None]:
    reader = spki.reader()
    algorithm_element = reader.read(SEQUENCE, "subjectPublicKeyInfo algorithm")
    key = _der.octets(reader.read(BIT_STRING, "subjectPublicKey"), "subjectPublicKey")
    reader.finish("subjectPublicKeyInfo")
    algorithm_oid, parameters = algorithm(algorithm_element)
    if algorithm_oid == RSA_ENCRYPTION:
        numbers = _der.parse(key, "RSA public key").expect(SEQUENCE, "RSA public key").reader()
        n = _der.integer(numbers.read(INTEGER, "modulus"), "modulus")
        e = _der.integer(numbers.read(INTEGER, "publicExponent"), "publicExponent")
        numbers.finish("RSA public key")
        return algorithm_element.raw, RsaKey(n, e)
    if algorithm_oid == EC_PUBLIC_KEY and parameters is not None and parameters.tag == OID:
        curve = CURVES.get(_der.oid(parameters))
        if curve is not None:
            return algorithm_element.raw, EcKey(curve, key)
    return algorithm_element.raw, None


# -- names ----------------------------------------------------------------------------------------------------

def _name(element: _der.Element) -> tuple[str, tuple[str, ...]]:
    """A Name as an RFC 4514 string (most specific RDN first, ", " between RDNs), and its common names."""
    rdns: list[str] = []
    common_names: list[str] = []
    for rdn in element.expect(SEQUENCE, "Name").children():
        attributes = rdn.expect(SET, "RelativeDistinguishedName").children()
        if not attributes:
            raise DerError("an empty RelativeDistinguishedName")
        parts = []
        for attribute in attributes:
            reader = attribute.expect(SEQUENCE, "AttributeTypeAndValue").reader()
            kind = _der.oid(reader.read(OID, "attribute type"), "attribute type")
            value = reader.read(what="attribute value")
            reader.finish("AttributeTypeAndValue")
            text = _der.string(value)
            if kind == COMMON_NAME and text is not None:
                common_names.append(text)
            shown = _escape(text) if text is not None else "#" + value.raw.hex()
            parts.append(f"{_NAME_KEYS.get(kind, kind)}={shown}")
        rdns.append("+".join(parts))
    return ", ".join(reversed(rdns)), tuple(common_names)


def _escape(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;' else "\\00" if c == "\0" else c for c in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def _ia5(value: bytes, what: str) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise DerError(f"{what}: not IA5 (ASCII) text") from None


# -- extensions ----------------------------------------------------------------------------------------------------

def _extensions(sequence: _der.Element) -> Extensions:
    listed: list[tuple[str, bool]] = []
    values: dict[str, _der.Element] = {}
    for extension in sequence.children():
        reader = extension.expect(SEQUENCE, "Extension").reader()
        extension_oid = _der.oid(reader.read(OID, "extnID"), "extnID")
        flag = reader.optional(BOOLEAN)
        critical = _der.boolean(flag, "critical") if flag is not None else False
        value = _der.octet_string(reader.read(OCTET_STRING, "extnValue"), "extnValue")
        reader.finish("Extension")
        if any(extension_oid == seen for seen, _ in listed):
            raise DerError(f"extension {extension_oid} appears twice")
        listed.append((extension_oid, critical))
        if extension_oid in _DECODED:
            values[extension_oid] = _der.parse(value, extension_oid)
    san = values.get(SUBJECT_ALT_NAME)
    basic = values.get(BASIC_CONSTRAINTS)
    usage = values.get(KEY_USAGE)
    extended = values.get(EXTENDED_KEY_USAGE)
    authority = values.get(AUTHORITY_KEY_ID)
    subject = values.get(SUBJECT_KEY_ID)
    access = values.get(AUTHORITY_INFO_ACCESS)
    constraints = values.get(NAME_CONSTRAINTS)
    return Extensions(
        listed=tuple(listed),
        subject_alt_names=_subject_alt_name(san) if san is not None else None,
        basic_constraints=_basic_constraints(basic) if basic is not None else None,
        key_usage=_key_usage(usage) if usage is not None else None,
        extended_key_usage=_extended_key_usage(extended) if extended is not None else None,
        authority_key_id=_authority_key_id(authority) if authority is not None else None,
        subject_key_id=_der.octet_string(subject, "subjectKeyIdentifier") if subject is not None else None,
        ca_issuers=_authority_info_access(access) if access is not None else (),
        name_constraints=_name_constraints(constraints) if constraints is not None else None)


_DECODED = frozenset({SUBJECT_ALT_NAME, BASIC_CONSTRAINTS, KEY_USAGE, EXTENDED_KEY_USAGE, AUTHORITY_KEY_ID,
                      SUBJECT_KEY_ID, AUTHORITY_INFO_ACCESS, NAME_CONSTRAINTS})


def general_name(name: _der.Element, what: str) -> GeneralName:
    """One GeneralName: (its choice, its value)."""
    if name.tag > 0xFF or name.tag & 0xC0 != 0x80:
        raise DerError(f"{what}: not a GeneralName")
    number = name.tag & 0x1F
    if number == DIRECTORY_NAME:  # [4] EXPLICIT Name
        inner = name.reader()
        directory = inner.read(SEQUENCE, "directoryName")
        _name(directory)
        inner.finish("directoryName")
        return number, directory.raw
    if number in (RFC822_NAME, DNS_NAME, URI):
        if name.constructed:
            raise DerError(f"{what}: a constructed string")
        _ia5(name.content, what)
    return number, name.content


def _general_names(element: _der.Element, what: str) -> tuple[GeneralName, ...]:
    return tuple(general_name(name, what) for name in element.children())


def _subject_alt_name(value: _der.Element) -> tuple[GeneralName, ...]:
    names = _general_names(value.expect(SEQUENCE, "subjectAltName"), "subjectAltName")
    if not names:
        raise DerError("subjectAltName: empty")
    return names


def _basic_constraints(value: _der.Element) -> tuple[bool, int | None]:
    reader = value.expect(SEQUENCE, "basicConstraints").reader()
    flag = reader.optional(BOOLEAN)
    ca = _der.boolean(flag, "cA") if flag is not None else False
    length = reader.optional(INTEGER)
    path_length = _der.unsigned(length, "pathLenConstraint") if length is not None else None
    reader.finish("basicConstraints")
    return ca, path_length


def _key_usage(value: _der.Element) -> int:
    bits, _ = _der.bit_string(value, "keyUsage")
    usage = 0
    for index, octet in enumerate(bits[:2]):
        for bit in range(8):
            if octet & (0x80 >> bit):
                usage |= 1 << (index * 8 + bit)
    return usage


def _extended_key_usage(value: _der.Element) -> tuple[str, ...]:
    usages = tuple(_der.oid(item, "KeyPurposeId") for item in value.expect(SEQUENCE, "extKeyUsage").children())
    if not usages:
        raise DerError("extKeyUsage: empty")
    return usages


def _authority_key_id(value: _der.Element) -> tuple[bytes | None, bool, bool]:
    reader = value.expect(SEQUENCE, "authorityKeyIdentifier").reader()
    key_id = reader.optional(context(0, constructed=False))
    issuer = reader.optional(context(1))
    if issuer is not None:
        _general_names(issuer, "authorityCertIssuer")
    serial = reader.optional(context(2, constructed=False))
    reader.finish("authorityKeyIdentifier")
    return key_id.content if key_id is not None else None, issuer is not None, serial is not None


def _authority_info_access(value: _der.Element) -> tuple[str, ...]:
    urls = []
    descriptions = value.expect(SEQUENCE, "authorityInfoAccess").children()
    if not descriptions:
        raise DerError("authorityInfoAccess: empty")
    for description in descriptions:
        reader = description.expect(SEQUENCE, "AccessDescription").reader()
        method = _der.oid(reader.read(OID, "accessMethod"), "accessMethod")
        location = general_name(reader.read(what="accessLocation"), "accessLocation")
        reader.finish("AccessDescription")
        if method == CA_ISSUERS and location[0] == URI:
            urls.append(location[1].decode("ascii"))
    return tuple(urls)


def _name_constraints(value: _der.Element) -> tuple[tuple[GeneralName, ...] | None, tuple[GeneralName, ...] | None]:
    reader = value.expect(SEQUENCE, "nameConstraints").reader()
    subtrees: list[tuple[GeneralName, ...] | None] = []
    for number in (0, 1):  # permittedSubtrees, excludedSubtrees
        element = reader.optional(context(number))
        if element is None:
            subtrees.append(None)
            continue
        bases = []
        for subtree in element.children():
            inner = subtree.expect(SEQUENCE, "GeneralSubtree").reader()
            bases.append(general_name(inner.read(what="base"), "GeneralSubtree"))
            inner.optional(context(0, constructed=False))  # minimum
            inner.optional(context(1, constructed=False))  # maximum
            inner.finish("GeneralSubtree")
        subtrees.append(tuple(bases))
    reader.finish("nameConstraints")
    return subtrees[0], subtrees[1]
