"""PKCS#7 / CMS SignedData (RFC 5652) read and its one signature checked, for the attested-document verifier.

``signed_content(der)`` reads a ContentInfo holding a SignedData with embedded content, exactly one SignerInfo and
the signer's certificate among those embedded (found by issuerAndSerialNumber or subjectKeyIdentifier), and checks
the signer's RSA PKCS#1 v1.5 signature: over the content itself, as the real service signs, or over the signed
attributes (RFC 5652 §5.4: re-tagged as the SET OF they are), which must then carry the content's message digest
and content type. Structure problems raise ``FormatError``, signature problems ``SignatureError``.
"""

from __future__ import annotations

import hashlib

from ..errors import FormatError, SignatureError
from . import _der
from ._crypto import RsaKey, rsa_verify
from ._der import INTEGER, OCTET_STRING, OID, SEQUENCE, SET, DerError, context
from ._x509 import Certificate, algorithm, parse_certificate

__all__ = ["signed_content"]

SIGNED_DATA = "1.2.840.113549.1.7.2"
_CONTENT_TYPES = {  # names for the message of a ContentInfo that is not SignedData
    "1.2.840.113549.1.7.1": "data", "1.2.840.113549.1.7.3": "enveloped data",
    "1.2.840.113549.1.7.4": "signed and enveloped data", "1.2.840.113549.1.7.5": "digested data",
    "1.2.840.113549.1.7.6": "encrypted data", "1.2.840.113549.1.9.16.1.2": "authenticated data",
}
_CONTENT_TYPE_ATTRIBUTE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST_ATTRIBUTE = "1.2.840.113549.1.9.4"

#: Digest algorithm OIDs, and the signature OIDs some signers (Azure among them) put in their place.
HASHES = {
    "1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512", "1.2.840.113549.1.1.5": "sha1", "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384", "1.2.840.113549.1.1.13": "sha512",
}
#: rsaEncryption, and the PKCS#1 v1.5 signature OIDs: the signature algorithms accepted in a SignerInfo.
RSA_SIGNATURES = {"1.2.840.113549.1.1.1"} | {oid for oid in HASHES if oid.startswith("1.2.840.113549.1.1.")}


class _SignerInfo:
    __slots__ = ("attributes", "covered", "digest_algorithm", "sid", "signature", "signature_algorithm")

    def __init__(self, sid: tuple[bytes, int] | bytes, digest_algorithm: str,
                 attributes: list[tuple[str, list[_der.Element]]], covered: bytes, signature_algorithm: str,
                 signature: bytes) -> None:
        self.sid, self.digest_algorithm, self.signature_algorithm = sid, digest_algorithm, signature_algorithm
        self.attributes, self.covered, self.signature = attributes, covered, signature


def signed_content(der: bytes) -> tuple[bytes, Certificate, list[Certificate]]:
    """(the signed content, the signer's certificate, every embedded certificate), the one signature checked."""
    try:
        content_type, content, certificates, infos = _read(der)
    except DerError as exc:
        raise FormatError(f"not a PKCS#7 SignedData: {exc}") from None
    if content is None:
        raise FormatError("the signed content is not embedded")
    if len(infos) != 1:
        raise FormatError(f"expected one signer, found {len(infos)}")
    info = infos[0]
    signer = _find_signer(info.sid, certificates)
    hash_name = HASHES.get(info.digest_algorithm)
    if hash_name is None:
        raise SignatureError(f"unsupported digest algorithm {info.digest_algorithm}")
    if info.signature_algorithm not in RSA_SIGNATURES:
        raise SignatureError("only RSA (PKCS#1 v1.5) signatures are supported, as the real service uses")
    if info.attributes:  # present: the signature covers them, and they carry the content's digest
        attributes = info.attributes
        digests = [_single(values, OCTET_STRING) for kind, values in attributes if kind == _MESSAGE_DIGEST_ATTRIBUTE]
        types = [_single(values, OID) for kind, values in attributes if kind == _CONTENT_TYPE_ATTRIBUTE]
        if digests != [hashlib.new(hash_name, content).digest()]:
            raise SignatureError("the message digest attribute does not match the content")
        if types != [content_type]:
            raise SignatureError("the content type attribute does not match the content")
        covered = info.covered
    else:
        covered = content
    key = signer.public_key
    if not isinstance(key, RsaKey):
        raise SignatureError("the signer's key is not RSA")
    if not rsa_verify(key, hash_name, covered, info.signature):
        raise SignatureError("the signature does not match the content and the signer's key")
    return content, signer, certificates


def _read(der: bytes) -> tuple[bytes, bytes | None, list[Certificate], list[_SignerInfo]]:
    """(content type DER, content, certificates, signer infos) of a ContentInfo holding SignedData."""
    info = _der.parse(der, "ContentInfo").expect(SEQUENCE, "ContentInfo").reader()
    kind = info.read(OID, "contentType")
    if _der.oid(kind) != SIGNED_DATA:
        name = _der.oid(kind)
        raise FormatError(f"a PKCS#7 {_CONTENT_TYPES.get(name, name)}, not signed data")
    explicit = info.read(context(0), "content").reader()
    signed_data = explicit.read(SEQUENCE, "SignedData").reader()
    explicit.finish("content")
    info.finish("ContentInfo")

    _der.integer(signed_data.read(INTEGER, "version"), "version")
    for digest_algorithm in signed_data.read(SET, "digestAlgorithms").children():
        algorithm(digest_algorithm)
    encapsulated = signed_data.read(SEQUENCE, "encapContentInfo").reader()
    content_type = encapsulated.read(OID, "eContentType")
    _der.oid(content_type)
    content = None
    wrapped = encapsulated.optional(context(0))
    if wrapped is not None:
        inner = wrapped.reader()
        content = _der.octet_string(inner.read(OCTET_STRING, "eContent"), "eContent")
        inner.finish("eContent")
    encapsulated.finish("encapContentInfo")
    certificates = []
    choices = signed_data.optional(context(0))
    if choices is not None:
        for index, choice in enumerate(choices.children()):
            if choice.tag == SEQUENCE:
                try:
                    certificates.append(parse_certificate(choice.raw))
                except DerError as exc:
                    raise DerError(f"certificate {index + 1}: {exc}") from None
            elif choice.tag not in (context(0), context(1), context(2), context(3)):  # other choices: not used
                raise DerError(f"certificate {index + 1}: not a CertificateChoices")
    signed_data.optional(context(1))  # crls
    infos = [_signer_info(element) for element in signed_data.read(SET, "signerInfos").children()]
    signed_data.finish("SignedData")
    return content_type.raw, content, certificates, infos


def _signer_info(element: _der.Element) -> _SignerInfo:
    reader = element.expect(SEQUENCE, "SignerInfo").reader()
    _der.integer(reader.read(INTEGER, "version"), "version")
    sid_element = reader.read(what="sid")
    sid: tuple[bytes, int] | bytes
    if sid_element.tag == SEQUENCE:  # issuerAndSerialNumber
        pair = sid_element.reader()
        issuer = pair.read(SEQUENCE, "issuer")
        serial = _der.integer(pair.read(INTEGER, "serialNumber"), "serialNumber")
        pair.finish("issuerAndSerialNumber")
        sid = (issuer.raw, serial)
    elif sid_element.tag == context(0, constructed=False):  # subjectKeyIdentifier
        sid = sid_element.content
    else:
        raise DerError("sid: neither issuerAndSerialNumber nor subjectKeyIdentifier")
    digest_algorithm, _ = algorithm(reader.read(SEQUENCE, "digestAlgorithm"))
    signed = reader.optional(context(0))
    attributes = _attributes(signed) if signed is not None else []
    # the signature covers the [0] IMPLICIT attributes re-tagged as the SET OF they are (RFC 5652 §5.4)
    covered = b"\x31" + signed.raw[1:] if signed is not None else b""
    signature_algorithm, _ = algorithm(reader.read(SEQUENCE, "signatureAlgorithm"))
    signature = _der.octet_string(reader.read(OCTET_STRING, "signature"), "signature")
    reader.optional(context(1))  # unsignedAttrs
    reader.finish("SignerInfo")
    return _SignerInfo(sid, digest_algorithm, attributes, covered, signature_algorithm, signature)


def _attributes(element: _der.Element) -> list[tuple[str, list[_der.Element]]]:
    """Each (type, values) of a SET OF Attribute."""
    out = []
    for attribute in element.children():
        reader = attribute.expect(SEQUENCE, "Attribute").reader()
        kind = _der.oid(reader.read(OID, "attrType"), "attrType")
        values = reader.read(SET, "attrValues").children()
        reader.finish("Attribute")
        out.append((kind, values))
    return out


def _single(values: list[_der.Element], tag: int) -> bytes | None:
    """The one value of an attribute, if it has one of this type: OCTET STRING content, or OID DER."""
    if len(values) != 1 or values[0].tag != tag:
        return None
    return values[0].content if tag == OCTET_STRING else values[0].raw


def _find_signer(sid: tuple[bytes, int] | bytes, certificates: list[Certificate]) -> Certificate:
    for cert in certificates:
        if isinstance(sid, tuple):
            if cert.issuer_der == sid[0] and cert.serial_number == sid[1]:
                return cert
        elif cert.ext.subject_key_id == sid:
            return cert
    raise FormatError("the signer's certificate is not in the document")
