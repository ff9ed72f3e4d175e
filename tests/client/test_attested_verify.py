"""The standard-library verifier against documents and chains made with cryptography, compared with the verifier
it replaced (asn1crypto + cryptography's PolicyBuilder, kept in ``_reference_attested``): valid documents pass,
every kind of broken one fails with the same ``AttestationError`` subclass, random damage never raises anything
else nor passes with other content; the DER reader's bounds; no third-party module imported; its speed."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import subprocess
import sys

import pytest
from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azimds.client import Certificate, _der, _x509, verify_attested
from azimds.errors import (
    AttestationError,
    ChainError,
    ExpiredError,
    FormatError,
    UsageError,
)
from tests.client import _reference_attested as reference

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
DOMAIN = "metadata.azure.com"
AIA_URL = "http://127.0.0.1:9/intermediate.crt"


# -- keys, certificates and documents, made with cryptography --------------------------------------------------

@functools.cache
def key(name: str):
    """Keys made once per run: RSA-2048 unless the name says otherwise."""
    if name.startswith("p256"):
        return ec.generate_private_key(ec.SECP256R1())
    if name.startswith("p384"):
        return ec.generate_private_key(ec.SECP384R1())
    if name.startswith("p521"):
        return ec.generate_private_key(ec.SECP521R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=1024 if name.startswith("rsa1024") else 2048)


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "azimds tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


LEAF_NAME = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Microsoft Corporation"),
                       x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")


def usage(*, sign: bool = True, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=not cert_sign,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def make_cert(subject: x509.Name, subject_key, issuer: x509.Certificate | None, issuer_key, *, ca: bool,
              path_length: int | None = None, basic: str = "critical", key_usage: str = "default",
              eku: list | str | None = "default", san: list[str] | None = None, aki: str = "key id",
              aia: bool = False, not_before: dt.datetime = NOW - 30 * DAY, not_after: dt.datetime = NOW + 300 * DAY,
              hash_algorithm=None, extra: tuple = (), serial: int | None = None) -> x509.Certificate:
    """A certificate; the keyword arguments choose each extension (``None`` or "none": absent)."""
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer is not None else subject)
               .public_key(subject_key.public_key()).serial_number(serial or x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False))
    if basic != "none":
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
                                        critical=basic == "critical")
    if key_usage == "default":
        builder = builder.add_extension(usage(sign=True, cert_sign=ca), critical=True)
    elif key_usage == "no cert sign":
        builder = builder.add_extension(usage(sign=True, cert_sign=False), critical=True)
    elif key_usage == "cert sign":
        builder = builder.add_extension(usage(sign=True, cert_sign=True), critical=True)
    if eku == "default":
        eku = None if ca else [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False)
    if issuer is not None and aki == "key id":
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                                        critical=False)
    elif issuer is not None and aki == "issuer and serial":
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(ski, [x509.DirectoryName(issuer.issuer)],
                                                                    issuer.serial_number), critical=False)
    if aia:
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(AIA_URL))]), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    if isinstance(hash_algorithm, hashes.SHA1):  # cryptography no longer signs certificates with SHA-1
        return resign(builder.sign(issuer_key, hashes.SHA256()), issuer_key)
    if hash_algorithm is None:
        hash_algorithm = hashes.SHA256() if not isinstance(issuer_key, ec.EllipticCurvePrivateKey) else \
            {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[issuer_key.curve.key_size]
    return builder.sign(issuer_key, hash_algorithm)


def resign(cert: x509.Certificate, issuer_key) -> x509.Certificate:
    """The certificate signed again with sha1WithRSAEncryption (inside and outside the signed part)."""
    parsed = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha1_rsa"})
    parsed["tbs_certificate"]["signature"] = algorithm
    parsed["signature_algorithm"] = algorithm
    tbs = parsed["tbs_certificate"].dump(force=True)
    parsed["signature_value"] = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    return x509.load_der_x509_certificate(parsed.dump(force=True))


def chain(root: dict | None = None, inter: dict | None = None, leaf: dict | None = None, *,
          keys: tuple[str, str, str] = ("root", "inter", "leaf")) -> tuple[x509.Certificate, ...]:
    """(root, intermediate, leaf): the emulator's shape, each part changed by its keyword arguments."""
    root_key, inter_key, leaf_key = (key(k) for k in keys)
    root_cert = make_cert(name("Test Root"), root_key, None, root_key, **{"ca": True, **(root or {})})
    inter_cert = make_cert(name("Test Issuing CA"), inter_key, root_cert, root_key,
                           **{"ca": True, "path_length": 0, **(inter or {})})
    leaf_cert = make_cert(LEAF_NAME, leaf_key, inter_cert, inter_key,
                          **{"ca": False, "san": [f"eastus.{DOMAIN}", DOMAIN], "aia": True, **(leaf or {})})
    return root_cert, inter_cert, leaf_cert


def content(nonce: str = "abc", created: dt.datetime = NOW - dt.timedelta(minutes=5)) -> bytes:
    stamp = "%m/%d/%y %H:%M:%S -0000"
    body = {"nonce": nonce, "plan": {"name": "", "product": "", "publisher": ""}, "vmId": "vm-1",
            "timeStamp": {"createdOn": created.strftime(stamp),
                          "expiresOn": (created + dt.timedelta(hours=6)).strftime(stamp)}}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def document(signer: x509.Certificate, signer_key, certs: list[x509.Certificate], data: bytes | None = None, *,
             hash_name: str = "sha256", digest_oid: str | None = None, attributes: str = "none",
             sid: str = "issuer and serial", signers: int = 1, detached: bool = False, flip_signature: bool = False,
             signature_oid: str = "rsassa_pkcs1v15") -> bytes:
    """PKCS#7 SignedData DER, built with asn1crypto and signed with cryptography; ``attributes``: "none",
    "good", "wrong digest" (the digest of other content), "tampered" (changed after signing)."""
    data = content() if data is None else data
    asn1_signer = asn1_x509.Certificate.load(signer.public_bytes(Encoding.DER))
    if sid == "issuer and serial":
        identifier = cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber(
            {"issuer": asn1_signer.issuer, "serial_number": asn1_signer.serial_number})})
    else:
        identifier = cms.SignerIdentifier({"subject_key_identifier": asn1_signer.key_identifier})
    hash_algorithm = HASHES[hash_name]()
    info = {"version": "v1" if sid == "issuer and serial" else "v3", "sid": identifier,
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_oid or hash_name}),
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": signature_oid})}
    if attributes == "none":
        covered = data
    else:
        digested = data if attributes != "wrong digest" else data + b" "
        signed = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.new(hash_name, digested).digest()]}),
        ])
        covered = signed.dump()
        if attributes == "tampered":
            signed = cms.CMSAttributes([*signed, cms.CMSAttribute(
                {"type": "signing_time", "values": [cms.Time(name="utc_time", value=NOW)]})])
        info["signed_attrs"] = signed
    signature = signer_key.sign(covered, padding.PKCS1v15(), hash_algorithm)
    if flip_signature:
        signature = signature[:-1] + bytes([signature[-1] ^ 1])
    info["signature"] = signature
    signed_data = cms.SignedData({
        "version": "v1", "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest_oid or hash_name})],
        "encap_content_info": {"content_type": "data", "content": None if detached else data},
        "certificates": [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in certs],
        "signer_infos": [cms.SignerInfo(info)] * signers,
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def outcome(verify, document_der: bytes, roots, intermediates=(), **options) -> str:
    """"ok", or the name of the AttestationError raised; anything else raised is the reference's bug."""
    options = {"now": NOW, "fetch": False, "nonce": "abc", **options}
    try:
        verify(document_der, roots, intermediates=intermediates, **options)
    except AttestationError as exc:
        return type(exc).__name__
    return "ok"


def both(document_der: bytes, roots, intermediates=(), **options) -> tuple[str, str]:
    """(the standard-library verifier's outcome, the reference's): a reference crash reads "crash"."""
    mine = outcome(verify_attested, document_der, roots, intermediates, **options)
    try:
        theirs = outcome(reference.verify_attested, document_der, roots, intermediates, **options)
    except Exception:  # noqa: BLE001 - the reference leaks ValueError and the like for some bad input
        theirs = "crash"
    return mine, theirs


# -- the cases ------------------------------------------------------------------------------------------------------

def case(root=None, inter=None, leaf=None, *, keys=("root", "inter", "leaf"), embed="leaf", given="inter",
         **doc) -> tuple[bytes, str, list[bytes]]:
    """(document, trust roots PEM, intermediates DER) for a chain changed as asked."""
    root_cert, inter_cert, leaf_cert = chain(root, inter, leaf, keys=keys)
    embedded = {"leaf": [leaf_cert], "both": [leaf_cert, inter_cert], "inter": [inter_cert]}[embed]
    document_der = document(leaf_cert, key(keys[2]), embedded, **doc)
    return document_der, pem(root_cert), [der(inter_cert)] if given == "inter" else []


OK, FORMAT, SIGNATURE, NAME, CHAIN = "ok", "FormatError", "SignatureError", "NameMismatchError", "ChainError"
UNKNOWN = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")

CASES = {
    # the document
    "valid": ({}, OK),
    "valid, intermediate embedded": ({"embed": "both", "given": None}, OK),
    "valid, signer by subjectKeyIdentifier": ({"sid": "key id"}, OK),
    "valid, sha1 signer": ({"hash_name": "sha1"}, OK),
    "valid, sha384 signer": ({"hash_name": "sha384"}, OK),
    "valid, sha512 signer": ({"hash_name": "sha512"}, OK),
    "valid, Azure's sha256WithRSAEncryption digest OID": ({"digest_oid": "1.2.840.113549.1.1.11"}, OK),
    "valid, sha256_rsa signature OID": ({"signature_oid": "sha256_rsa"}, OK),
    "valid, signed attributes": ({"attributes": "good"}, OK),
    "valid, signed attributes, sha512": ({"attributes": "good", "hash_name": "sha512"}, OK),
    "signed attributes with another digest": ({"attributes": "wrong digest"}, SIGNATURE),
    "signed attributes changed after signing": ({"attributes": "tampered"}, SIGNATURE),
    "signature flipped": ({"flip_signature": True}, SIGNATURE),
    "signature flipped, signed attributes": ({"flip_signature": True, "attributes": "good"}, SIGNATURE),
    "md5 digest": ({"digest_oid": "md5", "hash_name": "sha256"}, SIGNATURE),
    "ECDSA signature algorithm": ({"signature_oid": "sha256_ecdsa"}, SIGNATURE),
    "signer not embedded": ({"embed": "inter"}, FORMAT),
    "two signers": ({"signers": 2}, FORMAT),
    "content not embedded": ({"detached": True}, FORMAT),
    # the name
    "another name": ({"leaf": {"san": ["metadata.example.com"]}}, NAME),
    "a wildcard name only": ({"leaf": {"san": [f"*.{DOMAIN}"]}}, NAME),
    "a name under the domain": ({"leaf": {"san": [f"westeurope.{DOMAIN}"]}}, OK),
    # the signer's certificate
    "leaf expired": ({"leaf": {"not_after": NOW - DAY}}, CHAIN),
    "leaf not yet valid": ({"leaf": {"not_before": NOW + DAY}}, CHAIN),
    "leaf without serverAuth": ({"leaf": {"eku": [ExtendedKeyUsageOID.CLIENT_AUTH]}}, CHAIN),
    "leaf without extendedKeyUsage": ({"leaf": {"eku": None}}, OK),
    "leaf with anyExtendedKeyUsage only": ({"leaf": {"eku": [x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]}},
                                           CHAIN),
    "leaf is a CA": ({"leaf": {"ca": True}}, CHAIN),
    "leaf with keyCertSign": ({"leaf": {"key_usage": "cert sign"}}, CHAIN),
    "leaf without keyUsage": ({"leaf": {"key_usage": "none"}}, OK),
    "leaf without basicConstraints": ({"leaf": {"basic": "none"}}, OK),
    "leaf without authorityKeyIdentifier": ({"leaf": {"aki": "none"}}, CHAIN),
    "leaf without subjectAltName (CN only)": ({"leaf": {"san": None}}, CHAIN),
    "leaf with an unknown critical extension": ({"leaf": {"extra": ((UNKNOWN, True),)}}, CHAIN),
    "leaf with an unknown extension": ({"leaf": {"extra": ((UNKNOWN, False),)}}, OK),
    "leaf signed with SHA-1": ({"leaf": {"hash_algorithm": hashes.SHA1()}}, CHAIN),
    "leaf signed with SHA-384": ({"leaf": {"hash_algorithm": hashes.SHA384()}}, OK),
    "leaf signed with SHA-512": ({"leaf": {"hash_algorithm": hashes.SHA512()}}, OK),
    "leaf signed by another key": ({"keys": ("root", "inter", "leaf"), "leaf": {"_wrong_issuer": True}}, CHAIN),
    "leaf RSA-1024 (only issuers need 2048)": ({"keys": ("root", "inter", "rsa1024 leaf")}, OK),
    # the intermediate
    "intermediate not a CA": ({"inter": {"ca": False, "key_usage": "cert sign", "eku": None}}, CHAIN),
    "intermediate without basicConstraints": ({"inter": {"basic": "none"}}, CHAIN),
    "intermediate basicConstraints not critical": ({"inter": {"basic": "not critical"}}, CHAIN),
    "intermediate without keyCertSign": ({"inter": {"key_usage": "no cert sign"}}, CHAIN),
    "intermediate without keyUsage": ({"inter": {"key_usage": "none"}}, CHAIN),
    "intermediate expired": ({"inter": {"not_after": NOW - DAY}}, CHAIN),
    "intermediate for clients only": ({"inter": {"eku": [ExtendedKeyUsageOID.CLIENT_AUTH]}}, CHAIN),
    "intermediate for any usage": ({"inter": {"eku": [x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]}}, OK),
    "intermediate with an unknown critical extension": ({"inter": {"extra": ((UNKNOWN, True),)}}, CHAIN),
    "intermediate signed with SHA-1": ({"inter": {"hash_algorithm": hashes.SHA1()}}, CHAIN),
    "intermediate RSA-1024": ({"keys": ("root", "rsa1024 inter", "leaf")}, CHAIN),
    "intermediate EC P-256": ({"keys": ("root", "p256 inter", "leaf")}, OK),
    "intermediate EC P-384": ({"keys": ("root", "p384 inter", "leaf")}, OK),
    "intermediate EC P-521": ({"keys": ("root", "p521 inter", "leaf")}, OK),
    "root EC P-384, intermediate EC P-256": ({"keys": ("p384 root", "p256 inter", "leaf")}, OK),
    "intermediate AKI with issuer and serial": ({"inter": {"aki": "issuer and serial"}}, OK),
    "intermediate AKI without keyIdentifier": ({"inter": {"aki": "none", "extra": ((x509.AuthorityKeyIdentifier(
        None, None, None), False),)}}, CHAIN),
    "intermediate permits the domain": ({"inter": {"extra": ((x509.NameConstraints([x509.DNSName(DOMAIN)], None),
                                                               True),)}}, OK),
    "intermediate permits another domain": ({"inter": {"extra": ((x509.NameConstraints(
        [x509.DNSName("example.com")], None), True),)}}, CHAIN),
    "intermediate excludes the domain": ({"inter": {"extra": ((x509.NameConstraints(
        None, [x509.DNSName(f"eastus.{DOMAIN}")]), True),)}}, CHAIN),
    "no intermediate": ({"given": None}, CHAIN),
    # the root
    "root expired": ({"root": {"not_after": NOW - DAY}}, CHAIN),
    "root path length 0 (the intermediate makes 1)": ({"root": {"path_length": 0}}, CHAIN),
    "root path length 1": ({"root": {"path_length": 1}}, OK),
    "root without keyCertSign": ({"root": {"key_usage": "no cert sign"}}, CHAIN),
    "root not a CA": ({"root": {"ca": False, "key_usage": "cert sign", "eku": None}}, CHAIN),
    "root signed with SHA-1 (its own signature is not checked)": ({"root": {"hash_algorithm": hashes.SHA1()}}, OK),
}


def build_case(options: dict) -> tuple[bytes, str, list[bytes]]:
    options = dict(options)
    leaf = dict(options.pop("leaf", {}) or {})
    if leaf.pop("_wrong_issuer", False):  # the intermediate's name, another key's signature
        root_cert, inter_cert, _ = chain()
        impostor = make_cert(name("Test Issuing CA"), key("other"), root_cert, key("root"), ca=True, path_length=0)
        leaf_cert = make_cert(LEAF_NAME, key("leaf"), impostor, key("other"), ca=False,
                              san=[DOMAIN], aia=True)
        return document(leaf_cert, key("leaf"), [leaf_cert]), pem(root_cert), [der(inter_cert)]
    return case(leaf=leaf, **options)


@pytest.mark.parametrize("label", list(CASES))
def test_same_verdict_as_the_cryptography_verifier(label):
    options, expected = CASES[label]
    document_der, roots, intermediates = build_case(options)
    mine, theirs = both(document_der, roots, intermediates)
    assert (mine, theirs) == (expected, expected)


def test_curve_constants():
    from azimds.client._crypto import CURVES, _shamir

    for curve in CURVES.values():
        assert curve.on_curve(*curve.g) and curve.n.bit_length() == curve.p.bit_length()
        assert _shamir(curve, curve.n, curve.g, 0, curve.g) is None  # n·G is the point at infinity


def test_chain_and_certificates_returned():
    root_cert, inter_cert, leaf_cert = chain()
    document_der = document(leaf_cert, key("leaf"), [leaf_cert, inter_cert])
    verified = verify_attested(document_der, pem(root_cert), nonce="abc", now=NOW, fetch=False)
    assert [c.der for c in verified.chain] == [der(leaf_cert), der(inter_cert), der(root_cert)]
    assert verified.signer is verified.chain[0] and isinstance(verified.signer, Certificate)
    signer = verified.signer
    assert signer.subject == f"CN={DOMAIN}, O=Microsoft Corporation, C=US"
    assert signer.issuer == "CN=Test Issuing CA, O=azimds tests, C=US"
    assert signer.dns_names == (f"eastus.{DOMAIN}", DOMAIN)
    assert (signer.not_before, signer.not_after) == (leaf_cert.not_valid_before_utc, leaf_cert.not_valid_after_utc)
    assert signer.serial_number == leaf_cert.serial_number
    assert signer.public_bytes_pem() == leaf_cert.public_bytes(Encoding.PEM).decode()
    assert Certificate.from_pem(signer.public_bytes_pem()) == [signer] and hash(signer) == hash(signer.der)
    assert verified.vm_id == "vm-1" and verified.nonce == "abc" and verified.signed_bytes == content()


@pytest.mark.parametrize("form", ["pem text", "pem bytes", "der bytes", "path", "str path", "Certificate",
                                  "cryptography", "der attribute", "list"])
def test_trust_roots_in_every_form(form, tmp_path):
    root_cert, inter_cert, leaf_cert = chain()
    document_der = document(leaf_cert, key("leaf"), [leaf_cert, inter_cert])
    (tmp_path / "root.pem").write_text(pem(root_cert))

    class Holder:
        der = root_cert.public_bytes(Encoding.DER)

    roots = {"pem text": pem(root_cert), "pem bytes": pem(root_cert).encode(), "der bytes": der(root_cert),
             "path": tmp_path / "root.pem", "str path": str(tmp_path / "root.pem"),
             "Certificate": Certificate.from_der(der(root_cert)), "cryptography": root_cert, "der attribute": Holder(),
             "list": [pem(chain(keys=("other", "inter", "leaf"))[0]), der(root_cert)]}[form]
    assert verify_attested(document_der, roots, now=NOW, fetch=False).chain[-1].der == der(root_cert)
    # intermediates too, in the same forms
    bare = document(leaf_cert, key("leaf"), [leaf_cert])
    assert len(verify_attested(bare, pem(root_cert), intermediates=pem(inter_cert), now=NOW, fetch=False).chain) == 3


def test_bad_trust_roots_are_usage_errors(tmp_path):
    document_der, _, _ = case(embed="both", given=None)
    for bad in (b"not a certificate", "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
                tmp_path / "missing.pem", 42, [b"\x30\x03\x02\x01\x01"]):
        with pytest.raises(UsageError):
            verify_attested(document_der, bad, now=NOW, fetch=False)
    with pytest.raises(UsageError):
        verify_attested(document_der, [], now=NOW, fetch=False)


def test_a_re_issued_root_given_as_an_intermediate_ends_the_chain():
    """A certificate with a trust root's subject and key counts as that root (the reference needs the same DER)."""
    root_cert, inter_cert, leaf_cert = chain(root={"not_after": NOW - DAY})  # the trusted copy expired
    renewed = make_cert(name("Test Root"), key("root"), None, key("root"), ca=True)  # same name and key
    document_der = document(leaf_cert, key("leaf"), [leaf_cert, inter_cert])
    verified = verify_attested(document_der, pem(root_cert), intermediates=[der(renewed)], now=NOW, fetch=False)
    assert verified.chain[-1].der == der(renewed)
    with pytest.raises(ChainError):
        verify_attested(document_der, pem(root_cert), now=NOW, fetch=False)


def test_a_pinned_signer_is_its_own_chain():
    leaf_cert = chain()[2]
    document_der = document(leaf_cert, key("leaf"), [leaf_cert])
    assert both(document_der, pem(leaf_cert)) == ("ok", "ok")
    assert [c.der for c in verify_attested(document_der, pem(leaf_cert), now=NOW, fetch=False).chain] == [
        der(leaf_cert)]


def test_path_length_counts_the_intermediates_below():
    root_cert = make_cert(name("Test Root"), key("root"), None, key("root"), ca=True)
    for upper_length, expected in ((0, "ChainError"), (1, "ok"), (None, "ok")):
        upper = make_cert(name("Upper CA"), key("upper"), root_cert, key("root"), ca=True, path_length=upper_length)
        lower = make_cert(name("Lower CA"), key("inter"), upper, key("upper"), ca=True, path_length=0)
        leaf_cert = make_cert(LEAF_NAME, key("leaf"), lower, key("inter"), ca=False, san=[DOMAIN])
        document_der = document(leaf_cert, key("leaf"), [leaf_cert, lower, upper])
        assert both(document_der, pem(root_cert)) == (expected, expected)


def test_expired_document_is_still_expired():
    root_cert, inter_cert, leaf_cert = chain()
    document_der = document(leaf_cert, key("leaf"), [leaf_cert, inter_cert])
    assert both(document_der, pem(root_cert), now=NOW + DAY) == ("ExpiredError", "ExpiredError")
    with pytest.raises(ExpiredError):
        verify_attested(document_der, pem(root_cert), now=NOW + DAY, fetch=False)


@pytest.mark.parametrize("cut", [0, 1, 2, 10, 100, 500, -300, -257, -1])
def test_truncated_documents_are_format_errors(cut):
    document_der, roots, intermediates = case()
    mine, theirs = both(document_der[:cut], roots, intermediates)
    assert mine == "FormatError" and theirs in ("FormatError", "crash")


# -- random damage -----------------------------------------------------------------------------------------------

@functools.cache
def damage_target() -> tuple[bytes, str, bytes, tuple[bytes, ...]]:
    """A valid document with signed attributes and its intermediate embedded: (DER, roots, content, chain)."""
    root_cert, inter_cert, leaf_cert = chain()
    document_der = document(leaf_cert, key("leaf"), [leaf_cert, inter_cert], attributes="good")
    return document_der, pem(root_cert), content(), (der(leaf_cert), der(inter_cert), der(root_cert))


def check_damaged(damaged: bytes) -> None:
    """Refused with an AttestationError (never anything else), or accepted with the very content and chain, and
    then by the reference too (the damage was to unsigned bytes both ignore). The reference may accept what the
    standard-library verifier refuses: it reads the unsigned parts of the SignedData lazily, or not at all."""
    _, roots, signed, chain_der = damage_target()
    try:
        verified = verify_attested(damaged, roots, now=NOW, fetch=False)
    except AttestationError:
        return
    assert verified.signed_bytes == signed and tuple(c.der for c in verified.chain) == chain_der
    assert outcome(reference.verify_attested, damaged, roots, nonce=None) == "ok"


DAMAGE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@DAMAGE
@given(st.data())
def test_flipped_bytes(data):
    original = damage_target()[0]
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        damaged[data.draw(st.integers(0, len(original) - 1))] ^= data.draw(st.integers(1, 255))
    check_damaged(bytes(damaged))


@DAMAGE
@given(st.data())
def test_cut_inserted_and_removed_bytes(data):
    original = damage_target()[0]
    at = data.draw(st.integers(0, len(original) - 1))
    how = data.draw(st.sampled_from(["cut", "insert", "remove"]))
    damaged = {"cut": original[:at], "insert": original[:at] + bytes([data.draw(st.integers(0, 255))]) + original[at:],
               "remove": original[:at] + original[at + 1:]}[how]
    check_damaged(damaged)


def test_flips_in_signed_bytes_are_always_refused_like_the_reference_does():
    """Every single-bit flip in the content, the signature or a certificate's signed part fails, in both."""
    original, roots, signed, _ = damage_target()
    regions = [original.index(signed), len(original) - 256]  # the content; the signature (the last 256 bytes)
    tbs = [_x509.parse_certificate(d).tbs for d in damage_target()[3][:2]]
    regions += [original.index(t) + 40 for t in tbs]
    for start in regions:
        for offset in range(0, 40, 7):
            damaged = bytearray(original)
            damaged[start + offset] ^= 0x10
            mine, theirs = both(bytes(damaged), roots)
            assert mine != "ok" and theirs != "ok", (start, offset, mine, theirs)


# -- the DER reader's bounds -------------------------------------------------------------------------------------

def nested(depth: int) -> bytes:
    data = b"\x05\x00"
    for _ in range(depth):
        data = bytes([0x30, len(data)]) + data if len(data) < 128 else b"\x30\x82" + len(data).to_bytes(2, "big") + data
    return data


def test_reader_bounds():
    element = _der.parse(nested(_der.MAX_DEPTH + 5))
    with pytest.raises(_der.DerError, match="deeper"):
        for _ in range(_der.MAX_DEPTH + 5):
            element = element.reader().read()
    with pytest.raises(_der.DerError, match="larger"):
        _der.parse(b"\x04\x84" + (_der.MAX_SIZE).to_bytes(4, "big") + bytes(_der.MAX_SIZE))
    for bad, why in ((b"\x30\x80\x00\x00", "indefinite"), (b"\x02\x81\x01\x00", "shortest"),
                     (b"\x30\x05\x02\x01", "truncated"), (b"\x02\x01\x00\x00", "after"),
                     (b"\x02\x85\x00\x00\x00\x00\x01\x00", "too large"), (b"\x1f\x80\x01\x00", "shortest")):
        with pytest.raises(_der.DerError, match=why):
            _der.parse(bad)
    assert _der.integer(_der.parse(b"\x02\x02\x00\x80")) == 128
    for bad in (b"\x02\x02\x00\x7f", b"\x02\x02\xff\x80", b"\x02\x00"):
        with pytest.raises(_der.DerError):
            _der.integer(_der.parse(bad))
    assert _der.oid(_der.parse(bytes.fromhex("06092a864886f70d01010b"))) == "1.2.840.113549.1.1.11"
    with pytest.raises(_der.DerError):
        _der.oid(_der.parse(bytes.fromhex("0603808001")))
    with pytest.raises(FormatError):
        verify_attested(nested(200), "unused", now=NOW)
    with pytest.raises(FormatError):
        verify_attested(b"\x30" + b"\x84\x7f\xff\xff\xff", "unused", now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_another_exception(data):
    with pytest.raises(_der.DerError):
        _x509.parse_certificate(b"\x30" + bytes([len(data)]) + data if len(data) < 128 else data)
    with pytest.raises(FormatError):
        verify_attested(b"\x30" + data, "unused", now=NOW)


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
def test_every_certificate_of_the_system_bundle_reads_as_cryptography_reads_it():
    from pathlib import Path

    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        pytest.skip("no system CA bundle")
    data = bundle.read_bytes()
    mine = _x509.load_certificates(data)
    theirs = x509.load_pem_x509_certificates(data)
    assert [c.der for c in mine] == [der(c) for c in theirs]
    for ours, cert in zip(mine, theirs, strict=True):
        assert ours.subject.replace(", ", ",") == cert.subject.rfc4514_string().replace("\\, ", "\\,")
        assert (ours.not_before, ours.not_after) == (cert.not_valid_before_utc, cert.not_valid_after_utc)


# -- ECDSA against cryptography ----------------------------------------------------------------------------------

@pytest.mark.parametrize("curve, hash_name", [("p256", "sha256"), ("p384", "sha384"), ("p521", "sha512"),
                                              ("p256", "sha512"), ("p384", "sha256")])
def test_ecdsa_verifies_what_cryptography_signs(curve, hash_name):
    from azimds.client._crypto import CURVES, EcKey, ecdsa_verify

    private = key(f"{curve} ecdsa")
    oid = {"p256": "1.2.840.10045.3.1.7", "p384": "1.3.132.0.34", "p521": "1.3.132.0.35"}[curve]
    point = EcKey(CURVES[oid], private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    for index in range(5):
        message = f"message {index}".encode()
        signature = private.sign(message, ec.ECDSA(HASHES[hash_name]()))
        assert ecdsa_verify(point, hash_name, message, signature)
        assert not ecdsa_verify(point, hash_name, message + b"!", signature)
        assert not ecdsa_verify(point, hash_name, message, signature[:-1] + bytes([signature[-1] ^ 1]))


# -- standard library only, and fast ---------------------------------------------------------------------------------

def test_verifying_imports_nothing_but_the_standard_library(tmp_path):
    root_cert, inter_cert, leaf_cert = chain()
    (tmp_path / "doc.der").write_bytes(document(leaf_cert, key("leaf"), [leaf_cert, inter_cert]))
    (tmp_path / "root.pem").write_text(pem(root_cert))
    script = f"""
import datetime, json, sys
before = set(sys.modules)
from azimds.client import verify_attested
doc = open({str(tmp_path / "doc.der")!r}, "rb").read()
now = datetime.datetime.fromisoformat({NOW.isoformat()!r})
verified = verify_attested(doc, {str(tmp_path / "root.pem")!r}, now=now, fetch=False)
assert len(verified.chain) == 3
new = sorted(set(sys.modules) - before)
print(json.dumps(new))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    loaded = {name.split(".")[0] for name in json.loads(run.stdout)}
    foreign = sorted(loaded - set(sys.stdlib_module_names) - {"azimds"})
    assert foreign == [], f"verifying imported {foreign}"
    assert "azimds.client._attested" in json.loads(run.stdout)
