"""`azimds token`, `azimds attested [--verify]` and `azimds ca export` against `azimds serve`, and the client."""

from __future__ import annotations

import json
import subprocess

import jwt
import pytest

from azimds import Emulator
from azimds.client import Client, ImdsError
from tests.support import AZIMDS


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AZIMDS, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.support import ServeProcess

    state = tmp_path_factory.mktemp("state")
    proc = ServeProcess("--state-dir", str(state), "--rate-limit", "0")
    yield proc, state
    proc.stop()


def test_token_command(served):
    proc, _ = served
    run = cli("token", "--endpoint", proc.url, "--resource", "https://vault.azure.net")
    assert run.returncode == 0, run.stderr
    claims = jwt.decode(run.stdout.strip(), options={"verify_signature": False})
    assert claims["aud"] == "https://vault.azure.net" and claims["idtyp"] == "app"
    whole = json.loads(cli("token", "--endpoint", proc.url, "--json").stdout)
    assert whole["resource"] == "https://management.azure.com/" and whole["token_type"] == "Bearer"


def test_token_for_an_unknown_identity_is_one_line_and_exit_2(served):
    proc, _ = served
    run = cli("token", "--endpoint", proc.url, "--client-id", "00000000-0000-0000-0000-000000000000")
    assert run.returncode == 2 and "Identity not found" in run.stderr and "Traceback" not in run.stderr
    assert cli("token", "--client-id", "a", "--object-id", "b").returncode == 2  # one selector at most


def test_attested_verify_against_the_exported_root(served, tmp_path):
    proc, state = served
    root = tmp_path / "root.pem"
    export = cli("ca", "export", "--state-dir", str(state), "--output", str(root))
    assert export.returncode == 0 and root.read_text().startswith("-----BEGIN CERTIFICATE-----")
    run = cli("attested", "--endpoint", proc.url, "--nonce", "1234567890", "--verify", "--trust-root", str(root))
    assert run.returncode == 0, run.stderr
    content = json.loads(run.stdout)
    assert content["nonce"] == "1234567890" and "timeStamp" in content and "vmId" in content


def test_attested_verify_fails_against_another_root(served, tmp_path):
    proc, _ = served
    other = tmp_path / "other"
    from azimds.emulator.service.pki import Pki

    Pki(other).export_pem()  # another emulator's CA
    assert cli("ca", "export", "--state-dir", str(other), "--output", str(tmp_path / "other.pem")).returncode == 0
    run = cli("attested", "--endpoint", proc.url, "--verify", "--trust-root", str(tmp_path / "other.pem"))
    assert run.returncode == 3 and "attestation failed (chain)" in run.stderr


def test_ca_export_never_makes_a_ca(tmp_path):
    missing = tmp_path / "nonexistent" / "dir"
    run = cli("ca", "export", "--state-dir", str(missing))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (f"azimds: {missing}: holds no emulator CA (no pki/root.key); azimds serve makes one there "
                          "on first use, and a running emulator serves its root at /azimds/ca/root.crt\n")
    assert not missing.exists() and not missing.parent.exists()


def test_attested_without_verify_prints_the_document(served):
    proc, _ = served
    document = json.loads(cli("attested", "--endpoint", proc.url).stdout)
    assert document["encoding"] == "pkcs7" and document["signature"]


def test_client_keeps_tokens_until_near_expiry():
    with Emulator() as imds:
        client = Client(imds.url, limiter=None)
        first = client.token()
        assert client.token() == first  # kept: no second request
        assert sum("/identity/oauth2/token" in e.url for e in imds.journal) == 1
        fresh = client.token(bypass_cache=True)
        assert fresh["access_token"] != first["access_token"]
        assert sum("bypass_cache=true" in e.url for e in imds.journal) == 1
        with pytest.raises(ImdsError, match="Identity not found"):
            client.token(object_id="00000000-0000-0000-0000-000000000000")
        with pytest.raises(ValueError):
            client.token(client_id="a", resource_id="b")
        assert client.attested("abc")["encoding"] == "pkcs7"
