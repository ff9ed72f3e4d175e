"""The emulator's keys: a certificate authority (root → intermediate → attested-document signing leaf) and
the managed-identity token signing key.

The real service signs attested documents with a certificate named ``metadata.azure.com`` issued by a
Microsoft intermediate under a public root; nobody but Microsoft can make one, so the emulator has its own
root, which a test (or a VM image under test) trusts instead: ``export_ca`` gives it as PEM. The leaf
mirrors the real one: RSA-2048, subject ``C=US, ST=WA, L=Redmond, O=Microsoft Corporation,
CN=<domain>``, SAN ``<region>.<domain>`` and ``<domain>``, EKU serverAuth + clientAuth, and an AIA "CA
Issuers" URL at which the emulator itself serves the intermediate (DER), as the docs' openssl flow needs.

Keys and the two CA certificates live in ``STATE_DIR/pki/`` so a restart keeps the same CA (a root once
trusted stays trusted); without a state directory they live in memory, shared by every emulator of the
process (``Pki.shared()``: a test suite makes its keys once) and gone when it exits. Leaf
certificates are made from the persisted leaf key when first needed, because their SAN and AIA URL depend
on the VM and on the address the emulator is reachable at. ``cryptography`` is imported on first use.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from ...errors import StateError
from ..statedir import StateDir

__all__ = ["INTERMEDIATE_PATH", "ROOT_PATH", "Pki", "export_ca"]

#: Where the emulator serves its CA certificates (DER), without the Metadata header. The leaf's AIA URL
#: is the public base URL + INTERMEDIATE_PATH.
INTERMEDIATE_PATH = "/azimds/ca/intermediate.crt"
ROOT_PATH = "/azimds/ca/root.crt"

_SHARED_LOCK = threading.Lock()
_LEAF_SUBJECT = (("C", "US"), ("ST", "WA"), ("L", "Redmond"), ("O", "Microsoft Corporation"))
_DAY = dt.timedelta(days=1)


class Pki:
    """Loads or makes the emulator's keys and certificates, once each; thread-safe."""

    _shared: Pki | None = None

    def __init__(self, state_dir: str | Path | None = None):
        self.dir = Path(state_dir) / "pki" if state_dir is not None else None
        self._lock = threading.RLock()
        self._keys: dict[str, Any] = {}
        self._certs: dict[str, Any] = {}
        self._leaves: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._signed: dict[tuple[bytes, str, str, str], bytes] = {}  # recent signatures, by what they sign

    @classmethod
    def for_state_dir(cls, state_dir: str | Path | None) -> Pki:
        """The keys of ``state_dir``, or without one the process's in-memory keys (made once, on first use)."""
        if state_dir is not None:
            return cls(state_dir)
        with _SHARED_LOCK:
            if cls._shared is None:
                cls._shared = cls(None)
            return cls._shared

    def prepare(self) -> None:
        """Make the CA now if the state directory has none yet, on a thread of its own, so that the first
        attested document does not wait for it and ``azimds ca export`` finds it soon after start."""
        if self.dir is None or ((self.dir / "root.crt").exists() and (self.dir / "intermediate.crt").exists()):
            return
        threading.Thread(target=self.intermediate, name="azimds-ca", daemon=True).start()

    def check(self) -> None:
        """Refuse keys and certificates in the state directory that cannot be read (StateError naming the
        file), before anything signs with them; those that are missing are made when first needed."""
        if self.dir is None or not self.dir.exists():
            return
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        for name in ("root", "intermediate", "attested-leaf", "token-signing"):
            for suffix, load in ((".key", lambda data: serialization.load_pem_private_key(data, password=None)),
                                 (".crt", x509.load_pem_x509_certificate)):
                path = self.dir / f"{name}{suffix}"
                if not path.exists():
                    continue
                try:
                    loaded = load(path.read_bytes())
                except (OSError, ValueError, TypeError) as exc:
                    raise StateError(str(path), f"not a usable {'key' if suffix == '.key' else 'certificate'} "
                                                f"({' '.join(str(exc).split())[:200]}); 'azimds state reset' sets "
                                                "the state aside") from None
                if suffix == ".key":
                    from cryptography.hazmat.primitives.asymmetric import rsa

                    if not isinstance(loaded, rsa.RSAPrivateKey):
                        raise StateError(str(path), "not an RSA key")
                    self._keys[name] = loaded

    # -- the chain ---------------------------------------------------------------------------------------
    def root(self) -> tuple[Any, Any]:
        """The self-signed root CA: (certificate, private key)."""
        with self._lock:
            key = self._key("root")
            cert = self._cert("root", key, lambda: _root_cert(key))
            return cert, key

    def intermediate(self) -> tuple[Any, Any]:
        """The issuing CA, signed by the root: (certificate, private key)."""
        with self._lock:
            root_cert, root_key = self.root()
            key = self._key("intermediate")
            cert = self._cert("intermediate", key, lambda: _intermediate_cert(key, root_cert, root_key),
                              issuer=root_cert)
            return cert, key

    def leaf(self, domain: str, region: str, aia_url: str) -> tuple[Any, Any]:
        """The attested-document signing certificate for a cloud domain and region: (certificate, key)."""
        with self._lock:
            found = self._leaves.get((domain, region, aia_url))
            if found is None:
                issuer_cert, issuer_key = self.intermediate()
                key = self._key("attested-leaf")
                cert = _leaf_cert(key, issuer_cert, issuer_key, domain, region, aia_url)
                found = self._leaves[(domain, region, aia_url)] = (cert, key)
            return found

    def has_leaf(self, domain: str, region: str, aia_url: str) -> bool:
        """Whether ``leaf`` would answer at once (else it reads or makes keys: slow, do it off the loop)."""
        return (domain, region, aia_url) in self._leaves

    def token_signer(self) -> tuple[Any, Any]:
        """The managed-identity token signing key and its self-signed certificate (as Entra ID's are)."""
        with self._lock:
            key = self._key("token-signing")
            cert = self._cert("token-signing", key, lambda: _self_signed(key, "azimds token signing", years=5,
                                                                         ca=False))
            return cert, key

    # -- what others need ----------------------------------------------------------------------------------
    def sign_attested(self, content: bytes, domain: str, region: str, aia_url: str) -> bytes:
        """PKCS#7 SignedData (DER) as the real service makes it: SHA-256 with RSA, the content embedded, no
        signed attributes, only the signer's certificate embedded."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

        cert, key = self.leaf(domain, region, aia_url)
        cache_key = (content, domain, region, aia_url)
        signed = self._signed.get(cache_key)
        if signed is None:  # RSA PKCS#1 v1.5 is deterministic: the same content gets the same bytes
            signed = (pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(cert, key, hashes.SHA256())
                      .sign(Encoding.DER, [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoAttributes]))
            if len(self._signed) >= 1024:
                self._signed.clear()
            self._signed[cache_key] = signed
        return signed

    def der(self, which: str) -> bytes:
        """``root`` or ``intermediate`` certificate, DER."""
        from cryptography.hazmat.primitives.serialization import Encoding

        cert = self.root()[0] if which == "root" else self.intermediate()[0]
        der: bytes = cert.public_bytes(Encoding.DER)
        return der

    def export_pem(self, *, intermediate: bool = False) -> str:
        """The root certificate as PEM (and the intermediate after it, if asked): what a client trusts."""
        from cryptography.hazmat.primitives.serialization import Encoding

        certs = [self.root()[0]] + ([self.intermediate()[0]] if intermediate else [])
        return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)

    # -- storage ---------------------------------------------------------------------------------------------
    def _key(self, name: str) -> Any:
        key = self._keys.get(name)
        if key is not None:
            return key
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        path = self.dir / f"{name}.key" if self.dir else None
        if path is not None and path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if path is not None:
                pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
                if not _publish(path, pem, 0o600):  # another process made it first: use theirs
                    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        self._keys[name] = key
        return key

    def _cert(self, name: str, key: Any, make: Any, issuer: Any = None) -> Any:
        cert = self._certs.get(name)
        if cert is not None:
            return cert
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        path = self.dir / f"{name}.crt" if self.dir else None
        if path is not None and path.exists():
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            if not _belongs(cert, key, issuer):  # a key was replaced by hand: make a matching certificate
                cert = make()
                _publish(path, cert.public_bytes(Encoding.PEM), 0o644, replace=True)
        else:
            cert = make()
            if path is not None and not _publish(path, cert.public_bytes(Encoding.PEM), 0o644):
                other = x509.load_pem_x509_certificate(path.read_bytes())
                if _belongs(other, key, issuer):
                    cert = other
        self._certs[name] = cert
        return cert


def export_ca(state_dir: str | Path, *, intermediate: bool = False) -> str:
    """The root (and optionally the intermediate) of the CA in ``state_dir`` as PEM. Never makes a CA: a
    mistyped directory must not quietly get a new one. Raises StateError when the directory holds none."""
    pki = Pki(state_dir)
    assert pki.dir is not None
    wanted = ["root.key", "root.crt"] + (["intermediate.key", "intermediate.crt"] if intermediate else [])
    missing = [name for name in wanted if not (pki.dir / name).is_file()]
    if missing and StateDir(state_dir).holder() is not None:  # an emulator started there moments ago is making its CA
        import time

        deadline = time.monotonic() + 10.0
        while missing and time.monotonic() < deadline:
            time.sleep(0.05)
            missing = [name for name in wanted if not (pki.dir / name).is_file()]
    if missing:
        raise StateError(str(state_dir), f"holds no emulator CA (no pki/{missing[0]}); azimds serve makes one "
                                         "there on first use, and a running emulator serves its root at "
                                         f"{ROOT_PATH}")
    pki.check()
    return pki.export_pem(intermediate=intermediate)


def thumbprint(cert: Any) -> str:
    """base64url SHA-1 of the DER certificate, unpadded: a JWT ``x5t`` (and Entra ID's ``kid``)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    digest = hashlib.sha1(cert.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# -- files -------------------------------------------------------------------------------------------------

def _publish(path: Path, data: bytes, mode: int, replace: bool = False) -> bool:
    """Write ``path`` whole or not at all; False if it already existed (and ``replace`` is off)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if hasattr(os, "fchmod"):  # not on Windows
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _belongs(cert: Any, key: Any, issuer: Any) -> bool:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return False
    if issuer is not None:
        try:
            cert.verify_directly_issued_by(issuer)
        except Exception:  # noqa: BLE001 - any failure means "not issued by this root"
            return False
    return True


# -- certificates ------------------------------------------------------------------------------------------

def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _short_id(key: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()[:8].upper()


def _name(*pairs: tuple[str, str]) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    oids = {"C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
            "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in pairs])


def _builder(subject: Any, issuer: Any, key: Any, years: float) -> Any:
    from cryptography import x509

    now = _now()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _DAY)
            .not_valid_after(now + dt.timedelta(days=round(365.25 * years)))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))


def _ca_usage() -> Any:
    from cryptography import x509

    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


def _root_cert(key: Any) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    name = _name(("C", "US"), ("O", "azimds"), ("CN", f"azimds Emulator Root CA {_short_id(key)}"))
    return (_builder(name, name, key, 25)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .sign(key, hashes.SHA256()))


def _intermediate_cert(key: Any, root_cert: Any, root_key: Any) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    name = _name(("C", "US"), ("O", "azimds"), ("CN", f"azimds Emulator TLS Issuing CA {_short_id(key)}"))
    return (_builder(name, root_cert.subject, key, 12)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(_aki(root_cert), critical=False)
            .sign(root_key, hashes.SHA256()))


def _leaf_cert(key: Any, issuer_cert: Any, issuer_key: Any, domain: str, region: str, aia_url: str) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

    names = ([f"{region.lower()}.{domain}"] if region else []) + [domain]
    return (_builder(_name(*_LEAF_SUBJECT, ("CN", domain)), issuer_cert.subject, key, 1)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(_aki(issuer_cert), critical=False)
            .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(aia_url))]), critical=False)
            .sign(issuer_key, hashes.SHA256()))


def _self_signed(key: Any, common_name: str, years: float, ca: bool) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    name = _name(("CN", common_name))
    return (_builder(name, name, key, years)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


def _aki(issuer_cert: Any) -> Any:
    from cryptography import x509

    ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
