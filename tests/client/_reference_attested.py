"""The verifier as it was before the client became standard-library only (asn1crypto + cryptography's
PolicyBuilder server verifier): the reference the standard-library verifier is compared with.

A copy of ``azimds.client._attested`` at the commit before the rewrite; only the imports (absolute) and a
``zip(strict=True)`` differ. Used by ``test_attested_verify.py`` alone.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azimds.azure import TIMESTAMP_FORMAT, cloud_domain
from azimds.errors import (
    ChainError,
    ExpiredError,
    FormatError,
    NameMismatchError,
    NonceError,
    SignatureError,
    UsageError,
)

__all__ = ["AttestedDocument", "verify_attested"]


@dataclass(frozen=True)
class AttestedDocument:
    """A verified document: its signed content, and what it was verified with."""

    content: dict[str, Any]
    signed_bytes: bytes  # the content exactly as signed
    signer: Any  # cryptography x509.Certificate
    chain: tuple[Any, ...]  # signer first, trusted root last
    created_on: dt.datetime
    expires_on: dt.datetime

    @property
    def nonce(self) -> str:
        return self.content.get("nonce", "")

    @property
    def vm_id(self) -> str:
        return self.content.get("vmId", "")

    @property
    def subscription_id(self) -> str | None:
        return self.content.get("subscriptionId")


def verify_attested(document: Any, trust_roots: Any, nonce: str | None = None,
                    now: dt.datetime | float | None = None, *, cloud: str = "AzurePublicCloud",
                    intermediates: Iterable[Any] = (), fetch: bool = True, timeout: float = 5.0,
                    skew: float = 300.0) -> AttestedDocument:
    """Verify an attested document; returns it verified or raises an ``AttestationError`` subclass.

    ``document``: the endpoint's answer (a dict, or its JSON text/bytes), the base64 ``signature`` or the
    DER bytes. ``trust_roots``: certificates (cryptography objects, PEM or DER bytes, PEM text, or paths
    of PEM/DER files; one or several). ``now``: a datetime (naive means UTC) or epoch seconds; default the
    current time. ``cloud``: the VM's ``azEnvironment`` (decides the certificate name). ``intermediates``:
    issuing CA certificates to use (pinned) besides those in the document; with ``fetch`` (default) the
    one at the signer's AIA URL is downloaded when no given certificate issued the signer.
    """
    when = _instant(now)
    der = _der(document)
    signed, signer, embedded = _parse_and_check_signature(der)
    roots = _certificates(trust_roots, "trust_roots")
    if not roots:
        raise UsageError("trust_roots: give at least one root certificate")
    candidates = [c for c in embedded if c != signer] + _certificates(list(intermediates), "intermediates")
    domain = cloud_domain(cloud)
    name = _check_name(signer, domain)
    chain = _check_chain(signer, candidates, roots, name, when, fetch, timeout)
    content = _content(signed)
    created, expires = _window(content)
    slack = dt.timedelta(seconds=skew)
    if when > expires + slack:
        raise ExpiredError(f"the document expired at {expires:%Y-%m-%d %H:%M:%S} UTC")
    if when < created - slack:
        raise ExpiredError(f"the document is not valid before {created:%Y-%m-%d %H:%M:%S} UTC")
    if nonce is not None and content.get("nonce") != nonce:
        raise NonceError(f"expected nonce {nonce!r}, the document has {content.get('nonce')!r}")
    return AttestedDocument(content, signed, signer, chain, created, expires)


# -- parsing and the signature ---------------------------------------------------------------------------

def _der(document: Any) -> bytes:
    if isinstance(document, (bytes, bytearray)) and document[:1] == b"\x30":
        return bytes(document)
    if isinstance(document, (bytes, bytearray)):
        document = bytes(document).decode("utf-8", "replace")
    if isinstance(document, str):
        text = document.strip()
        if text.startswith("{"):
            try:
                document = json.loads(text)
            except ValueError:
                raise FormatError("the document is not valid JSON") from None
        else:
            return _b64(text)
    if not isinstance(document, dict):
        raise FormatError(f"expected the attested answer, its signature or DER bytes, not {type(document).__name__}")
    if document.get("encoding") != "pkcs7":
        raise FormatError(f"encoding is {document.get('encoding')!r}, not 'pkcs7'")
    signature = document.get("signature")
    if not isinstance(signature, str):
        raise FormatError("the document has no signature")
    return _b64(signature)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise FormatError("the signature is not base64") from None


_HASHES = {  # digest algorithm OIDs, and the signature OIDs some signers (Azure among them) put there
    "1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512", "1.2.840.113549.1.1.5": "sha1", "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384", "1.2.840.113549.1.1.13": "sha512",
}
_RSA_SIGNATURES = {"1.2.840.113549.1.1.1"} | {oid for oid in _HASHES if oid.startswith("1.2.840.113549.1.1.")}


def _parse_and_check_signature(der: bytes) -> tuple[bytes, Any, list[Any]]:
    """(signed content, signer certificate, every embedded certificate); checks the one signature."""
    from asn1crypto import cms
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise FormatError(f"a PKCS#7 {info['content_type'].native}, not signed data")
        signed_data = info["content"]
        encap = signed_data["encap_content_info"]
        content = encap["content"].native if encap["content"] else None
        infos = list(signed_data["signer_infos"])
        certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in signed_data["certificates"] or []
                 if c.name == "certificate"]
        asn1_certs = [c.chosen for c in signed_data["certificates"] or [] if c.name == "certificate"]
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - asn1crypto and cryptography raise many kinds for bad input
        raise FormatError(f"not a PKCS#7 SignedData: {exc}") from None
    if not isinstance(content, bytes):
        raise FormatError("the signed content is not embedded")
    if len(infos) != 1:
        raise FormatError(f"expected one signer, found {len(infos)}")
    signer_info = infos[0]
    signer = _find_signer(signer_info["sid"], certs, asn1_certs)
    hash_name = _HASHES.get(signer_info["digest_algorithm"]["algorithm"].dotted)
    if hash_name is None:
        raise SignatureError(f"unsupported digest algorithm {signer_info['digest_algorithm']['algorithm'].dotted}")
    if signer_info["signature_algorithm"]["algorithm"].dotted not in _RSA_SIGNATURES:
        raise SignatureError("only RSA (PKCS#1 v1.5) signatures are supported, as the real service uses")
    attrs = signer_info["signed_attrs"]
    if attrs.native:  # present: the signature covers them, and they carry the content's digest
        digests = [a["values"][0].native for a in attrs if a["type"].native == "message_digest"]
        types = [a["values"][0].native for a in attrs if a["type"].native == "content_type"]
        if digests != [hashlib.new(hash_name, content).digest()]:
            raise SignatureError("the message digest attribute does not match the content")
        if types != [encap["content_type"].native]:
            raise SignatureError("the content type attribute does not match the content")
        covered = b"\x31" + attrs.dump()[1:]  # [0] IMPLICIT re-tagged as the SET OF it is (RFC 5652 §5.4)
    else:
        covered = content
    key = signer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("the signer's key is not RSA")
    try:
        key.verify(signer_info["signature"].native, covered, padding.PKCS1v15(), getattr(hashes, hash_name.upper())())
    except InvalidSignature:
        raise SignatureError("the signature does not match the content and the signer's key") from None
    return content, signer, certs


def _find_signer(sid: Any, certs: list[Any], asn1_certs: list[Any]) -> Any:
    for cert, asn1_cert in zip(certs, asn1_certs, strict=True):
        if sid.name == "issuer_and_serial_number":
            if (asn1_cert.issuer == sid.chosen["issuer"]
                    and asn1_cert.serial_number == sid.chosen["serial_number"].native):
                return cert
        elif asn1_cert.key_identifier == sid.chosen.native:
            return cert
    raise FormatError("the signer's certificate is not in the document")


def _content(signed: bytes) -> dict[str, Any]:
    try:
        content = json.loads(signed)
    except ValueError:
        raise FormatError("the signed content is not JSON") from None
    if not isinstance(content, dict):
        raise FormatError("the signed content is not a JSON object")
    return content


def _window(content: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    stamp = content.get("timeStamp")
    try:
        return tuple(dt.datetime.strptime(stamp[k], TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)  # type: ignore[return-value]
                     for k in ("createdOn", "expiresOn"))
    except (TypeError, KeyError, ValueError):
        raise FormatError(f"timeStamp is not createdOn/expiresOn in the form {TIMESTAMP_FORMAT!r}: {stamp!r}") from None


# -- certificates ------------------------------------------------------------------------------------------

def _certificates(source: Any, what: str) -> list[Any]:
    from cryptography import x509

    items = [source] if isinstance(source, (str, bytes, bytearray, Path, x509.Certificate)) else list(source)
    out: list[Any] = []
    for item in items:
        if isinstance(item, x509.Certificate):
            out.append(item)
            continue
        if isinstance(item, Path) or (isinstance(item, str) and "-----BEGIN" not in item):
            item = Path(item).read_bytes()
        data = item.encode() if isinstance(item, str) else bytes(item)
        try:
            out.extend(x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                       else [x509.load_der_x509_certificate(data)])
        except ValueError as exc:
            raise UsageError(f"{what}: not a certificate: {exc}") from None
    return out


def _check_name(signer: Any, domain: str) -> str:
    """The signer's DNS name that makes it the cloud's metadata certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        names = signer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        names = [a.value for a in signer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    for name in names:
        lowered = name.lower()
        if lowered == domain or (lowered.endswith("." + domain) and "*" not in lowered):
            return name
    raise NameMismatchError(f"the signer is {', '.join(names) or 'unnamed'}, not {domain} (or a name under it)")


def _check_chain(signer: Any, candidates: list[Any], roots: list[Any], name: str, when: dt.datetime,
                 fetch: bool, timeout: float) -> tuple[Any, ...]:
    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    issuers = candidates + roots
    if fetch and not any(c.subject == signer.issuer for c in issuers):
        candidates = candidates + _fetch_issuers(signer, timeout)
    verifier = PolicyBuilder().store(Store(roots)).time(when.replace(tzinfo=None)).build_server_verifier(
        x509.DNSName(name))
    try:
        return tuple(verifier.verify(signer, candidates))
    except VerificationError as exc:
        raise ChainError(f"the signer does not chain to a trusted root: {exc}") from None


def _fetch_issuers(cert: Any, timeout: float) -> list[Any]:
    """The certificates at ``cert``'s AIA "CA Issuers" URLs (DER or PEM)."""
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID

    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        raise ChainError("no intermediate in the document or given, and the signer has no AIA URL") from None
    urls = [d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(d.access_location, x509.UniformResourceIdentifier)]
    if not urls:
        raise ChainError("no intermediate in the document or given, and the signer has no CA Issuers URL")
    from azimds.client.transport import fetch

    found: list[Any] = []
    problems = []
    for url in urls:
        if not url.lower().startswith(("http://", "https://")):
            problems.append(f"{url}: not an http(s) URL")
            continue
        try:
            reply = fetch(url, timeout=timeout)
        except (OSError, UsageError) as exc:
            problems.append(f"{url}: {exc}")
            continue
        if reply.status != 200:
            problems.append(f"{url}: HTTP {reply.status}")
            continue
        try:
            found.extend(_certificates(reply.body, url))
        except UsageError as exc:
            problems.append(str(exc))
    if not found:
        raise ChainError("cannot fetch the intermediate: " + "; ".join(problems))
    return found


def _instant(now: dt.datetime | float | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    if isinstance(now, (int, float)):
        return dt.datetime.fromtimestamp(now, dt.UTC)
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)
