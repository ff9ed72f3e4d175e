"""Verify an attested document (``GET /metadata/attested/document``) as a relying party should.

``verify_attested(document, trust_roots)`` checks, in this order, and raises a specific ``AttestationError``
(its ``reason`` names the check) at the first that fails:

``format``     the answer is a PKCS#7 SignedData with embedded content, one signer and its certificate
``signature``  the signer's RSA signature covers the content (directly, as the real service signs, or
               through signed attributes, RFC 5652 §5.4), and any message digest attribute matches
``name``       the signer's certificate is the cloud's metadata certificate (``metadata.azure.com`` for
               the public cloud, ``.us``/``.cn``/``microsoftazure.de`` for the others)
``chain``      the signer's certificate chains to one of ``trust_roots`` at ``now``, through the
               intermediates in the document, those given, or the one its AIA "CA Issuers" URL serves
``expired``    ``now`` lies within the document's ``timeStamp`` window (with ``skew`` seconds of slack)
``nonce``      the document carries the expected nonce (when one is given)

It works on the emulator's documents (trust the root ``azimds ca export`` gives) and on real ones (trust
the public root Microsoft's intermediate chains to). Standard library only, like the whole client: the DER,
PKCS#7, X.509 and RSA work is done by ``_der``, ``_pkcs7``, ``_x509``, ``_chain`` and ``_crypto``; the chain
rules are those of the web PKI server profile (see ``_chain``). Certificates come back as ``Certificate``
objects (``azimds.client.Certificate``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..azure import TIMESTAMP_FORMAT, cloud_domain
from ..errors import (
    ChainError,
    ExpiredError,
    FormatError,
    NameMismatchError,
    NonceError,
    UsageError,
)
from ._chain import check_chain
from ._der import DerError
from ._pkcs7 import signed_content
from ._x509 import AUTHORITY_INFO_ACCESS, Certificate, load_certificates

__all__ = ["AttestedDocument", "Certificate", "verify_attested"]


@dataclass(frozen=True)
class AttestedDocument:
    """A verified document: its signed content, and what it was verified with."""

    content: dict[str, Any]
    signed_bytes: bytes  # the content exactly as signed
    signer: Certificate
    chain: tuple[Certificate, ...]  # signer first, trusted root last
    created_on: dt.datetime
    expires_on: dt.datetime

    @property
    def nonce(self) -> str:
        nonce: str = self.content.get("nonce", "")
        return nonce

    @property
    def vm_id(self) -> str:
        vm_id: str = self.content.get("vmId", "")
        return vm_id

    @property
    def subscription_id(self) -> str | None:
        subscription: str | None = self.content.get("subscriptionId")
        return subscription


def verify_attested(document: Any, trust_roots: Any, nonce: str | None = None,
                    now: dt.datetime | float | None = None, *, cloud: str = "AzurePublicCloud",
                    intermediates: Iterable[Any] = (), fetch: bool = True, timeout: float = 5.0,
                    skew: float = 300.0) -> AttestedDocument:
    """Verify an attested document; returns it verified or raises an ``AttestationError`` subclass.

    ``document``: the endpoint's answer (a dict, or its JSON text/bytes), the base64 ``signature`` or the
    DER bytes. ``trust_roots``: certificates (``Certificate`` objects, PEM or DER bytes, PEM text, paths of
    PEM/DER files, or any object with a ``der`` attribute; one or several; a ``cryptography`` certificate is
    taken too, through its ``public_bytes``, without importing anything). ``now``: a datetime (naive means
    UTC) or epoch seconds; default the current time. ``cloud``: the VM's ``azEnvironment`` (decides the
    certificate name). ``intermediates``: issuing CA certificates to use (pinned) besides those in the
    document, taken as ``trust_roots`` are; with ``fetch`` (default) the one at the signer's AIA URL is
    downloaded when no given certificate issued the signer.
    """
    when = _instant(now)
    der = _der(document)
    signed, signer, embedded = signed_content(der)
    roots = _certificates(trust_roots, "trust_roots")
    if not roots:
        raise UsageError("trust_roots: give at least one root certificate")
    candidates = [c for c in embedded if c != signer] + _certificates(intermediates, "intermediates")
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


def _content(signed: bytes) -> dict[str, Any]:
    try:
        content = json.loads(signed)
    except ValueError:
        raise FormatError("the signed content is not JSON") from None
    if not isinstance(content, dict):
        raise FormatError("the signed content is not a JSON object")
    return content


def _window(content: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    stamp: Any = content.get("timeStamp")
    try:
        created, expires = (dt.datetime.strptime(stamp[k], TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)
                            for k in ("createdOn", "expiresOn"))
    except (TypeError, KeyError, ValueError):
        raise FormatError(f"timeStamp is not createdOn/expiresOn in the form {TIMESTAMP_FORMAT!r}: {stamp!r}") from None
    return created, expires


# -- certificates ------------------------------------------------------------------------------------------

def _certificates(source: Any, what: str) -> list[Certificate]:
    """The certificates of one item or of an iterable of them (see ``verify_attested``); raises UsageError."""
    if isinstance(source, (str, bytes, bytearray, Path)) or _is_certificate(source):
        items = [source]
    else:
        try:
            items = list(source)
        except TypeError:
            raise UsageError(f"{what}: expected certificates, not {type(source).__name__}") from None
    out: list[Certificate] = []
    for item in items:
        if isinstance(item, Certificate):
            out.append(item)
            continue
        data = _foreign_der(item)
        if data is None:
            if isinstance(item, Path) or (isinstance(item, str) and "-----BEGIN" not in item):
                try:
                    data = Path(item).read_bytes()
                except OSError as exc:
                    raise UsageError(f"{what}: cannot read {item}: {exc.strerror or exc}") from None
            elif isinstance(item, str):
                data = item.encode()
            elif isinstance(item, (bytes, bytearray, memoryview)):
                data = bytes(item)
            else:
                raise UsageError(f"{what}: not a certificate: {type(item).__name__}")
        try:
            out.extend(load_certificates(data))
        except DerError as exc:
            raise UsageError(f"{what}: not a certificate: {exc}") from None
    return out


def _is_certificate(item: Any) -> bool:
    return isinstance(item, Certificate) or hasattr(item, "der") or callable(getattr(item, "public_bytes", None))


def _foreign_der(item: Any) -> bytes | None:
    """The DER of a certificate object of another kind: one with ``der`` bytes, or a ``cryptography`` one.

    A cryptography certificate is asked for its DER with cryptography's own ``Encoding.DER``, found among the
    modules already loaded (it is, if such an object exists): nothing is imported here.
    """
    der = getattr(item, "der", None)
    if isinstance(der, (bytes, bytearray)):
        return bytes(der)
    public_bytes = getattr(item, "public_bytes", None)
    if not callable(public_bytes):
        return None
    serialization = sys.modules.get("cryptography.hazmat.primitives.serialization")
    encoding = getattr(getattr(serialization, "Encoding", None), "DER", None)
    data = public_bytes(encoding) if encoding is not None else None
    if not isinstance(data, bytes):
        raise UsageError(f"not a certificate: {type(item).__name__} (give its DER bytes)")
    return data


def _check_name(signer: Certificate, domain: str) -> str:
    """The signer's DNS name that makes it the cloud's metadata certificate."""
    names = signer.dns_names if signer.ext.subject_alt_names is not None else signer.common_names
    for name in names:
        lowered = name.lower()
        if lowered == domain or (lowered.endswith("." + domain) and "*" not in lowered):
            return name
    raise NameMismatchError(f"the signer is {', '.join(names) or 'unnamed'}, not {domain} (or a name under it)")


def _check_chain(signer: Certificate, candidates: list[Certificate], roots: list[Certificate], name: str,
                 when: dt.datetime, fetch: bool, timeout: float) -> tuple[Certificate, ...]:
    issuers = candidates + roots
    if fetch and not any(c.subject_der == signer.issuer_der for c in issuers):
        candidates = candidates + _fetch_issuers(signer, timeout)
    return check_chain(signer, candidates, roots, name, when)


def _fetch_issuers(cert: Certificate, timeout: float) -> list[Certificate]:
    """The certificates at ``cert``'s AIA "CA Issuers" URLs (DER or PEM)."""
    if not any(oid == AUTHORITY_INFO_ACCESS for oid, _ in cert.ext.listed):
        raise ChainError("no intermediate in the document or given, and the signer has no AIA URL")
    urls = cert.ext.ca_issuers
    if not urls:
        raise ChainError("no intermediate in the document or given, and the signer has no CA Issuers URL")
    from .transport import fetch

    found: list[Certificate] = []
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
