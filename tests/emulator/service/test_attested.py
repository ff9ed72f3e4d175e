"""Attested documents over real sockets: their content per api-version, their PKCS#7 form, the emulator's
CA, the docs' openssl verification flow run line by line, and verify_attested's failures, each with its reason."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from azimds import Emulator, azure
from azimds.attested import (
    AttestationError,
    ChainError,
    ExpiredError,
    FormatError,
    NameMismatchError,
    NonceError,
    SignatureError,
    verify_attested,
)
from azimds.emulator.service.pki import INTERMEDIATE_PATH, Pki, export_ca
from azimds.errors import StateError
from tests.support import DATA, fetch

DOC = "/metadata/attested/document"
DOC_TEXT = (DATA / "seed-imds-doc-2019.md").read_text()
STAMP = "%m/%d/%y %H:%M:%S -0000"


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def imds(state):
    with Emulator(state_dir=state) as emulator:
        yield emulator


def attest(imds: Emulator, version: str = "2025-04-07", query: str = "") -> dict:
    reply = fetch(imds.url, f"{DOC}?api-version={version}{query}")
    assert reply.status == 200, reply.body
    return reply.json()


def pkcs7(document: dict):
    from asn1crypto import cms

    return cms.ContentInfo.load(base64.b64decode(document["signature"]))["content"]


# -- the document -----------------------------------------------------------------------------------------------

def test_answer_form(imds):
    reply = fetch(imds.url, f"{DOC}?api-version=2018-10-01&nonce=1234567890")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json; charset=utf-8"
    body = reply.json()
    assert reply.body == json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    assert set(body) == {"encoding", "signature"} and body["encoding"] == "pkcs7"


@pytest.mark.parametrize("version", ["2018-10-01", "2019-04-30", "2019-11-01", "2020-09-01", "2025-04-07"])
def test_content_has_exactly_the_fields_of_the_version(imds, version):
    document = attest(imds, version)
    signed = pkcs7(document)["encap_content_info"]["content"].native
    content = json.loads(signed)
    assert signed == json.dumps(content, separators=(",", ":"), sort_keys=True).encode()  # compact, keys sorted
    assert tuple(sorted(content)) == azure.attested_fields(version)
    compute = imds.vm.instance["compute"]
    assert content["vmId"] == compute["vmId"] and content["plan"] == {"name": "", "product": "", "publisher": ""}
    if "subscriptionId" in content:
        assert content["subscriptionId"] == compute["subscriptionId"]
    if "sku" in content:
        assert content["sku"] == compute["sku"]
    assert content.get("licenseType", "") == ""
    verified = verify_attested(document, imds.ca_pem())
    assert verified.content == content


def test_six_hour_window_and_default_nonce_is_expires_on(imds):
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    content = verify_attested(attest(imds), imds.ca_pem()).content
    created = dt.datetime.strptime(content["timeStamp"]["createdOn"], STAMP).replace(tzinfo=dt.UTC)
    expires = dt.datetime.strptime(content["timeStamp"]["expiresOn"], STAMP).replace(tzinfo=dt.UTC)
    assert expires - created == dt.timedelta(hours=6) and abs(created - before) < dt.timedelta(seconds=5)
    assert content["nonce"] == expires.strftime("%Y%m%d-%H%M%S")
    assert re.fullmatch(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d -0000", content["timeStamp"]["createdOn"])


@pytest.mark.parametrize("nonce", ["1234567890", "a", "AbC123xyz", "x" * 32])
def test_given_nonce_is_signed(imds, nonce):
    assert verify_attested(attest(imds, query=f"&nonce={nonce}"), imds.ca_pem(), nonce=nonce).nonce == nonce


@pytest.mark.parametrize("nonce", ["x" * 33, "abc-def", "ab%20cd", "caf%C3%A9", "a.b", "%00"])
def test_bad_nonce_is_a_clear_400(imds, nonce):
    reply = fetch(imds.url, f"{DOC}?api-version=2025-04-07&nonce={nonce}")
    assert (reply.status, reply.body) == (400, b'{ "error": "Bad request: . nonce must be 1 to 32 letters or digits" }')


def test_empty_nonce_is_no_nonce(imds):
    content = verify_attested(attest(imds, query="&nonce="), imds.ca_pem()).content
    assert re.fullmatch(r"\d{8}-\d{6}", content["nonce"])


def test_request_rules(imds):
    old = fetch(imds.url, f"{DOC}?api-version=2018-04-02")
    assert old.status == 400 and old.json()["newest-versions"][0] == "2025-04-07"
    missing = fetch(imds.url, f"{DOC}?api-version=2025-04-07", metadata=False)
    assert missing.body == b'{ "error": "Bad request: . Required metadata header not specified" }'
    assert fetch(imds.url, f"{DOC}?api-version=2025-04-07", headers={"Metadata": "True"}).status == 200
    for path in ("/metadata/attested", "/metadata/attested/documents?api-version=2025-04-07"):
        assert (fetch(imds.url, path).status, fetch(imds.url, path).body) == (404, b'{"error":"Not Found"}')
    assert fetch(imds.url, f"{DOC}?api-version=2025-04-07", method="POST").status == 405


def test_signed_like_the_real_one(imds):
    signed = pkcs7(attest(imds))
    assert signed["version"].native == "v1"
    assert [a["algorithm"].native for a in signed["digest_algorithms"]] == ["sha256"]
    assert signed["encap_content_info"]["content_type"].native == "data"
    [signer] = signed["signer_infos"]
    assert not signer["signed_attrs"].native  # the signature covers the content itself
    assert signer["signature_algorithm"]["algorithm"].native in ("rsassa_pkcs1v15", "sha256_rsa")
    [cert] = [c.chosen for c in signed["certificates"]]  # only the signer's certificate
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    leaf = x509.load_der_x509_certificate(cert.dump())
    assert leaf.subject.rfc4514_string() == "CN=metadata.azure.com,O=Microsoft Corporation,L=Redmond,ST=WA,C=US"
    assert leaf.public_key().key_size == 2048
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert san == ["eastus.metadata.azure.com", "metadata.azure.com"]
    eku = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert eku == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    [aia] = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert aia.access_location.value == imds.url + INTERMEDIATE_PATH


@pytest.mark.parametrize("cloud, domain", sorted(azure.CLOUD_DOMAINS.items()))
def test_each_cloud_signs_with_its_own_name(cloud, domain):
    with Emulator({"compute": {"azEnvironment": cloud, "location": "westeurope"}}) as imds:
        document = attest(imds)
        ca = imds.ca_pem()
        assert verify_attested(document, ca, cloud=cloud).signer.subject.startswith(f"CN={domain},")
        other = "AzureChinaCloud" if cloud != "AzureChinaCloud" else "AzurePublicCloud"
        with pytest.raises(NameMismatchError) as info:
            verify_attested(document, ca, cloud=other)
        assert info.value.reason == "name" and f"westeurope.{domain}" in str(info.value)


def test_intermediate_is_fetched_from_the_aia_url_without_the_header(imds):
    before = len(imds.journal)
    verify_attested(attest(imds), imds.ca_pem())  # no intermediate given: fetched
    fetched = [e for e in imds.journal[before:] if e.url == INTERMEDIATE_PATH]
    assert [e.status for e in fetched] == [200]
    reply = fetch(imds.url, INTERMEDIATE_PATH, metadata=False)
    assert reply.headers["content-type"] == "application/pkix-cert"
    assert reply.body == Pki(imds.config.state_dir).der("intermediate")
    with pytest.raises(ChainError, match="cannot fetch the intermediate"):
        verify_attested(_with_aia(imds, "http://127.0.0.1:9/nothing.crt"), imds.ca_pem())
    with pytest.raises(ChainError):
        verify_attested(_with_aia(imds, "http://127.0.0.1:9/nothing.crt"), imds.ca_pem(), fetch=False)


def _with_aia(imds: Emulator, url: str) -> dict:
    """A document signed by a leaf whose AIA URL points at ``url`` (same CA)."""
    pki = Pki(imds.config.state_dir)
    content = pkcs7(attest(imds))["encap_content_info"]["content"].native
    der = pki.sign_attested(content, "metadata.azure.com", "eastus", url)
    return {"encoding": "pkcs7", "signature": base64.b64encode(der).decode()}


# -- the CA and its state directory ----------------------------------------------------------------------------

def test_ca_survives_a_restart_and_exports_as_pem(tmp_path):
    state = tmp_path / "state"
    with pytest.raises(StateError, match="holds no emulator CA"):
        export_ca(state)  # never makes one
    assert not state.exists()
    with Emulator(state_dir=state) as first:
        document = attest(first)
        exported = export_ca(state)
        assert first.ca_pem() == exported
    with Emulator(state_dir=state) as second:
        assert second.ca_pem() == exported
        verify_attested(attest(second), exported)
        # the first document's AIA URL died with the first emulator: the same intermediate, pinned, still works
        pinned = fetch(second.url, INTERMEDIATE_PATH, metadata=False).body
        verify_attested(document, exported, intermediates=[pinned])
    both = export_ca(state, intermediate=True)
    assert both.startswith(exported) and both.count("BEGIN CERTIFICATE") == 2
    keys = sorted(p.name for p in (state / "pki").glob("*.key"))
    assert keys == ["attested-leaf.key", "intermediate.key", "root.key"]
    assert all((state / "pki" / k).stat().st_mode & 0o077 == 0 for k in keys)


def test_serve_keeps_its_ca_across_restarts(serve, tmp_path):
    state = str(tmp_path / "state")
    roots = []
    for _ in range(2):
        proc = serve("--state-dir", state, "--control-port", "0", "--rate-limit", "0")
        reply = fetch(proc.url, f"{DOC}?api-version=2021-02-01&nonce=abc")
        roots.append(fetch(proc.url, "/azimds/ca/root.crt", metadata=False).body)
        from cryptography import x509

        root = x509.load_der_x509_certificate(roots[-1])
        assert verify_attested(reply.json(), root, nonce="abc").nonce == "abc"
        assert proc.stop() == 0
    assert roots[0] == roots[1]


# -- verify_attested's failures ---------------------------------------------------------------------------------

def test_tampered_content_fails_the_signature(imds):
    document = attest(imds, query="&nonce=abc")
    der = base64.b64decode(document["signature"])
    tampered = der.replace(b'"nonce":"abc"', b'"nonce":"abd"')
    assert tampered != der
    with pytest.raises(SignatureError) as info:
        verify_attested({"encoding": "pkcs7", "signature": base64.b64encode(tampered).decode()}, imds.ca_pem())
    assert info.value.reason == "signature"


def test_another_root_fails_the_chain(imds, tmp_path):
    with pytest.raises(ChainError) as info:
        verify_attested(attest(imds), Pki(tmp_path).export_pem())
    assert info.value.reason == "chain"


def test_wrong_nonce(imds):
    with pytest.raises(NonceError) as info:
        verify_attested(attest(imds, query="&nonce=abc"), imds.ca_pem(), nonce="abd")
    assert info.value.reason == "nonce" and "'abd'" in str(info.value)


def test_expired_and_not_yet_valid(imds):
    document = attest(imds)
    content = verify_attested(document, imds.ca_pem()).content
    created = dt.datetime.strptime(content["timeStamp"]["createdOn"], STAMP).replace(tzinfo=dt.UTC)
    verify_attested(document, imds.ca_pem(), now=created + dt.timedelta(hours=5, minutes=59))
    with pytest.raises(ExpiredError) as info:
        verify_attested(document, imds.ca_pem(), now=created + dt.timedelta(hours=7))
    assert info.value.reason == "expired"
    with pytest.raises(ExpiredError, match="not valid before"):
        verify_attested(document, imds.ca_pem(), now=(created - dt.timedelta(hours=1)).timestamp())


def test_documents_signed_with_a_manual_clock_follow_it():
    with Emulator(clock="manual") as imds:
        imds.world.advance_clock(3 * 86400)
        document = attest(imds)
        with pytest.raises(ExpiredError):
            verify_attested(document, imds.ca_pem())
        verify_attested(document, imds.ca_pem(), now=imds.world.clock.now())


def test_a_document_is_signed_once_a_second_and_fresh_nonces_do_not_hold_up_other_requests():
    """Within one second a URL's document is the same bytes (signed once); the next second it is signed anew.
    1,000 fresh nonces (20 connections, 50 pipelined on each) mean 1,000 RSA signatures: made on the signing
    threads, so instance requests beside them are answered in far less time than those signatures take."""
    import socket
    import threading
    import time

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    started = time.perf_counter()
    for i in range(1000):
        key.sign(b"%d" % i, padding.PKCS1v15(), hashes.SHA256())
    signing = time.perf_counter() - started  # what the flood costs, were it signed on the loop

    with Emulator(clock="manual", rate_limit=0) as imds:
        first, again = attest(imds, query="&nonce=abc"), attest(imds, query="&nonce=abc")
        assert first == again
        imds.control.advance(1)
        assert attest(imds, query="&nonce=abc")["signature"] != first["signature"]
        assert any(t.name.startswith("azimds-sign") for t in threading.enumerate())  # not the loop's thread

        host, port = imds.url.removeprefix("http://").rsplit(":", 1)
        done = threading.Barrier(21)

        def flood(n: int) -> None:
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                sock.sendall(b"".join(f"GET {DOC}?api-version=2025-04-07&nonce=c{n}n{i} HTTP/1.1\r\nHost: x\r\n"
                                      f"Metadata: true\r\n\r\n".encode() for i in range(50)))
                seen = b""
                while seen.count(b"HTTP/1.1 200 OK") < 50:
                    chunk = sock.recv(1 << 20)
                    assert chunk, "the connection closed before its 50 answers"
                    seen += chunk
            done.wait(30)

        floods = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(20)]
        for thread in floods:
            thread.start()
        latencies: list[float] = []
        while done.n_waiting < 20:
            started = time.perf_counter()
            reply = fetch(imds.url, "/metadata/instance/compute/name?api-version=2021-02-01&format=text")
            assert reply.status == 200
            latencies.append(time.perf_counter() - started)
        done.wait(30)
    # Signed on the loop, the flood would hold every instance request until it was over (one or two of them
    # would run beside it, waiting about as long as the signatures take). The first request may meet the
    # flood's arrival (1,000 requests parsed and handed out); the typical one does not wait at all.
    assert len(latencies) >= 5, f"the flood was answered before instance requests could run beside it: {latencies}"
    median = sorted(latencies)[len(latencies) // 2]
    assert median < signing / 10, (f"instance requests beside a flood whose signatures take {signing:.3f} s waited "
                                   f"{median:.3f} s (median of {len(latencies)})")


@pytest.mark.parametrize("document", [
    {"encoding": "base64", "signature": "MA=="}, {"encoding": "pkcs7", "signature": "not base64!"},
    {"encoding": "pkcs7", "signature": "MIIBAA=="}, {"encoding": "pkcs7"}, "{not json", 42,
])
def test_garbage_is_a_format_error(imds, document):
    with pytest.raises(FormatError) as info:
        verify_attested(document, imds.ca_pem())
    assert info.value.reason == "format" and isinstance(info.value, AttestationError)


def test_signed_attributes_are_verified_too(imds):
    """RFC 5652 §5.4: with signed attributes the signature covers them, and they carry the digest."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.hazmat.primitives.serialization import pkcs7 as builder

    pki = Pki(imds.config.state_dir)
    content = pkcs7(attest(imds, query="&nonce=attrs"))["encap_content_info"]["content"].native
    cert, key = pki.leaf("metadata.azure.com", "eastus", imds.url + INTERMEDIATE_PATH)
    der = builder.PKCS7SignatureBuilder().set_data(content).add_signer(cert, key, hashes.SHA256()).sign(
        Encoding.DER, [builder.PKCS7Options.Binary])
    assert pkcs7({"signature": base64.b64encode(der)})["signer_infos"][0]["signed_attrs"].native
    assert verify_attested(der, imds.ca_pem(), nonce="attrs").nonce == "attrs"
    with pytest.raises(SignatureError, match="message digest"):
        verify_attested(der.replace(b'"nonce":"attrs"', b'"nonce":"attrz"'), imds.ca_pem())


def test_the_docs_sample_document_passes_the_signature_check():
    """Microsoft's sample (its 2018 test certificate; digest OID sha256WithRSAEncryption, as real documents have)
    is parsed and its signature verified; it fails at the chain: MD5-signed, no SAN, long expired."""
    from asn1crypto import cms

    signature = re.search(r'"signature":"([^"]+)"', DOC_TEXT).group(1)
    sample_cert = cms.ContentInfo.load(base64.b64decode(signature))["content"]["certificates"][0].chosen.dump()
    with pytest.raises(ChainError):
        verify_attested({"encoding": "pkcs7", "signature": signature}, sample_cert,
                        now=dt.datetime(2018, 11, 20, 22, 8))
    with pytest.raises(NameMismatchError):
        verify_attested({"encoding": "pkcs7", "signature": signature}, sample_cert, cloud="AzureChinaCloud")


# -- the docs' openssl flow, line by line -----------------------------------------------------------------------

FLOW = re.search(r"# Get the signature\n(.*?)\n ```", DOC_TEXT, re.S).group(1)
FLOW_LINES = [line.strip() for line in FLOW.splitlines() if line.strip() and not line.strip().startswith("#")]
CHECKS = re.search(r"# Verify the subject name for the main certificate\n(.*?)\n```", DOC_TEXT, re.S).group(1)
CHECK_LINES = [line.strip() for line in CHECKS.splitlines() if line.strip() and not line.strip().startswith("#")]
TOOLS = ("curl", "jq", "openssl", "wget", "base64")


def test_the_doc_has_the_lines_we_expect():
    assert len(FLOW_LINES) == 7 and FLOW_LINES[0].startswith("curl") and FLOW_LINES[4].startswith("wget")
    assert len(CHECK_LINES) == 5 and CHECK_LINES[-1].startswith("openssl verify")


@pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                    reason=f"needs {', '.join(TOOLS)} (make sysdeps installs them)")
def test_openssl_flow_of_the_docs(imds, tmp_path, state):
    """Each line as the docs print it, only the address changed (and the root: the emulator's, exported)."""
    (tmp_path / "root.pem").write_text(export_ca(state))
    outputs = []
    for line in FLOW_LINES + CHECK_LINES:
        command = line.replace("http://169.254.169.254", imds.url).replace(
            "/etc/ssl/certs/Baltimore_CyberTrust_Root.pem", "root.pem")
        run = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, capture_output=True, text=True,
                             timeout=30, env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)})
        assert run.returncode == 0, (command, run.stdout, run.stderr)
        outputs.append(run)
    smime = outputs[6]
    assert "Verification successful" in smime.stderr  # OpenSSL 3 may exit 0 on failure: read the words
    content = json.loads(smime.stdout)
    assert content["vmId"] == imds.vm.instance["compute"]["vmId"] and set(content) == {"nonce", "plan", "timeStamp",
                                                                                      "vmId"}
    subject, issuer, inter_subject, inter_issuer, verify = outputs[7:]
    assert subject.stdout.strip() == ("subject=C = US, ST = WA, L = Redmond, O = Microsoft Corporation, "
                                      "CN = metadata.azure.com")
    assert issuer.stdout.strip() == inter_subject.stdout.strip().replace("subject=", "issuer=")
    assert "azimds Emulator Root CA" in inter_issuer.stdout
    assert verify.stdout.strip() == "signer.pem: OK"
    # the intermediate came from the AIA URL, over HTTP, without the Metadata header
    assert any(e.url == INTERMEDIATE_PATH and e.status == 200 for e in imds.journal)
    assert (tmp_path / "intermediate.cer").read_bytes() == Pki(state).der("intermediate")
    # and the same root refuses a signer it did not issue
    (tmp_path / "other.pem").write_text(Pki(tmp_path / "other").export_pem())
    refused = subprocess.run(["openssl", "verify", "-CAfile", "other.pem", "-untrusted", "intermediate.pem",
                              "signer.pem"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "OK" not in refused.stdout
