"""Managed identity over real sockets: the token endpoint's answers and errors, its cache and limits, the
tokens validated with PyJWT against the key set fetched from the emulator, and the Azure SDK's credentials."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import jwt
import pytest
import urllib3

from azimds import Emulator
from azimds.emulator.model import profile
from azimds.emulator.model.faults import FaultRule as Fault
from azimds.errors import ProfileError
from tests.support import Reply, fetch

RESOURCE = "https://management.azure.com"
TOKEN = "/metadata/identity/oauth2/token?api-version=2018-02-01"
KEYS = {"access_token", "client_id", "expires_in", "expires_on", "ext_expires_in", "not_before", "resource",
        "token_type"}
CLAIMS = {"aud", "iss", "iat", "nbf", "exp", "aio", "appid", "appidacr", "idp", "idtyp", "oid", "rh", "sub", "tid",
          "uti", "ver", "xms_az_rid", "xms_cae", "xms_mirid", "xms_tcdt"}
MISSING_HEADER = b'{"error":"invalid_request","error_description":"Required metadata header not specified"}'
NOT_FOUND = b'{"error":"invalid_request","error_description":"Identity not found"}'
MULTIPLE = (b'{"error":"invalid_request","error_description":"Multiple user assigned identities exist, please specify '
            b'the clientId / resourceId of the identity in the token request"}')
UAMI = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
TWO_UAMIS = {"compute": {"name": "two"}, "identity": {"userAssigned": [{"name": "first-id"}, {"name": "second-id"}]}}


@pytest.fixture(scope="module")
def mi():
    """The default VM (a system-assigned and a user-assigned identity), no limits."""
    with Emulator() as emulator:
        yield emulator


def ids(imds: Emulator) -> profile.Identities:
    return imds.vm.identities


def token(imds: Emulator, query: str = "", **kw) -> Reply:
    return fetch(imds.url, f"{TOKEN}&resource={RESOURCE}{query}", **kw)


def http() -> urllib3.PoolManager:
    return urllib3.PoolManager()  # never reads proxy variables


def validate(imds: Emulator, access_token: str, audience: str = RESOURCE) -> dict:
    """PyJWT validation with nothing but what the emulator publishes: discovery document, then its key set."""
    tenant = ids(imds).tenant_id
    config = json.loads(http().request("GET", f"{imds.url}/{tenant}/.well-known/openid-configuration").data)
    keys = jwt.PyJWKSet.from_json(http().request("GET", config["jwks_uri"]).data.decode())
    kid = jwt.get_unverified_header(access_token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(access_token, key.key, algorithms=config["id_token_signing_alg_values_supported"],
                      audience=audience, issuer=config["issuer"], options={"require": ["exp", "nbf", "iat"]})


# -- the 200 --------------------------------------------------------------------------------------------------

def test_every_token_answer_has_its_own_request_id_a_version_4_guid(mi):
    """Over 4,096 answers in a row (where the ids' random head is renewed), on one kept-alive connection."""
    import socket
    import uuid

    host, port = mi.url.removeprefix("http://").rsplit(":", 1)
    request = (f"GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource={RESOURCE} HTTP/1.1\r\n"
               "Host: x\r\nMetadata: true\r\n\r\n").encode()
    seen: list[str] = []
    buffer = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        while len(seen) < 4200:
            sock.sendall(request * 100)
            while buffer.count(b"\r\n\r\n") < 100:
                buffer += sock.recv(1 << 20)
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
                length = int(fields["Content-Length"])
                while len(rest) < length:
                    rest += sock.recv(1 << 20)
                seen.append(fields["x-ms-request-id"])
                buffer = rest[length:]
    assert len(set(seen)) == len(seen) >= 4200
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in seen)


def test_token_answer_has_the_real_shape(mi):
    reply = token(mi, "&bypass_cache=true")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json; charset=utf-8"
    assert reply.headers["x-ms-request-id"] and reply.headers["server"].startswith("IMDS/")
    body = reply.json()
    assert reply.body == json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    assert set(body) == KEYS and all(isinstance(v, str) for v in body.values())
    assert int(body["expires_on"]) - int(body["not_before"]) == 86700
    assert body["ext_expires_in"] == "86399" and body["token_type"] == "Bearer" and body["resource"] == RESOURCE
    assert body["expires_in"] == "86400"  # a fresh token
    assert abs(int(body["expires_on"]) - (time.time() + 86400)) < 5
    assert body["client_id"] == ids(mi).system.client_id


def test_token_validates_against_the_published_keys_only(mi):
    body = token(mi).json()
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256" and header["typ"] == "JWT" and header["kid"] == header["x5t"]
    claims = validate(mi, body["access_token"])
    system = ids(mi).system
    assert set(claims) == CLAIMS
    assert claims["iss"] == claims["idp"] == f"https://sts.windows.net/{ids(mi).tenant_id}/"
    assert (claims["appid"], claims["oid"], claims["sub"], claims["tid"]) == (
        system.client_id, system.object_id, system.object_id, ids(mi).tenant_id)
    assert (claims["ver"], claims["idtyp"], claims["appidacr"]) == ("1.0", "app", "2")
    # real tokens (2023 capture) name the VM twice and spell resourcegroups in lower case
    vm_id = mi.vm.instance["compute"]["resourceId"].replace("/resourceGroups/", "/resourcegroups/")
    assert "/resourcegroups/" in vm_id and claims["xms_mirid"] == claims["xms_az_rid"] == vm_id
    assert claims["xms_cae"] == "1"
    assert claims["exp"] - claims["nbf"] == 86700 and claims["iat"] == claims["nbf"]
    assert (str(claims["nbf"]), str(claims["exp"])) == (body["not_before"], body["expires_on"])
    # a token made with another key, even under the same kid, does not validate
    from cryptography.hazmat.primitives.asymmetric import rsa

    forged = jwt.encode(claims, rsa.generate_private_key(65537, 2048), algorithm="RS256",
                        headers={"kid": header["kid"]})
    with pytest.raises(jwt.InvalidSignatureError):
        validate(mi, forged)


def test_discovery_and_keys_need_no_metadata_header(mi):
    tenant = ids(mi).tenant_id
    for path in (f"/{tenant}/.well-known/openid-configuration", f"/{tenant}/v2.0/.well-known/openid-configuration"):
        reply = fetch(mi.url, path, metadata=False)
        assert reply.status == 200 and reply.json()["issuer"] == f"https://sts.windows.net/{tenant}/"
        assert reply.json()["jwks_uri"] == f"{mi.url}/common/discovery/keys"
    keys = [fetch(mi.url, p, metadata=False).json() for p in ("/common/discovery/keys", "/discovery/keys",
                                                                f"/{tenant}/discovery/keys")]
    assert keys[0] == keys[1] == keys[2] and keys[0]["keys"][0]["kty"] == "RSA"
    assert fetch(mi.url, "/00000000-0000-4000-8000-000000000000/.well-known/openid-configuration").status == 404
    assert fetch(mi.url, "/common/discovery/keys", method="POST", metadata=False).status == 405


def test_info_answers_the_tenant(mi):
    reply = fetch(mi.url, "/metadata/identity/info?api-version=2018-02-01")
    assert reply.status == 200 and reply.body == f'{{"tenantId":"{ids(mi).tenant_id}"}}'.encode()
    assert len(reply.body) == 51


# -- choosing the identity --------------------------------------------------------------------------------------

@pytest.mark.parametrize("selector", ["client_id", "object_id", "msi_res_id", "mi_res_id"])
def test_each_selector_picks_the_user_assigned_identity(mi, selector):
    uami = ids(mi).user[0]
    value = {"client_id": uami.client_id.upper(), "object_id": uami.object_id,
             "msi_res_id": uami.resource_id.lower(), "mi_res_id": uami.resource_id}[selector]
    body = token(mi, f"&{selector}={value}").json()
    assert body["client_id"] == uami.client_id
    claims = validate(mi, body["access_token"])
    assert (claims["appid"], claims["oid"], claims["xms_mirid"]) == (
        uami.client_id, uami.object_id, uami.resource_id.replace("/resourceGroups/", "/resourcegroups/"))


def test_the_system_identity_answers_to_its_own_client_id(mi):
    assert token(mi, f"&client_id={ids(mi).system.client_id}").json()["client_id"] == ids(mi).system.client_id


@pytest.mark.parametrize("query", ["&client_id=00000000-0000-4000-8000-000000000000", "&object_id=nope",
                                   "&msi_res_id=" + UAMI.format(sub="x", rg="y", name="zzz")])
def test_unknown_identity_is_the_real_400(mi, query):
    reply = token(mi, query)
    assert (reply.status, reply.body) == (400, NOT_FOUND)
    assert reply.headers["content-length"] == str(len(NOT_FOUND))


def test_two_selectors_are_refused_and_an_empty_one_ignored(mi):
    uami = ids(mi).user[0]
    reply = token(mi, f"&client_id={uami.client_id}&object_id={uami.object_id}")
    assert reply.status == 400 and reply.json()["error_description"].startswith("Only one of client_id")
    assert token(mi, f"&client_id={uami.client_id}&msi_res_id=").json()["client_id"] == uami.client_id


def test_vm_without_identity_and_with_several_user_assigned():
    with Emulator({"compute": {"name": "bare"}}) as bare, Emulator(TWO_UAMIS) as two:
        assert (token(bare).status, token(bare).body) == (400, NOT_FOUND)
        assert fetch(bare.url, "/metadata/identity/info?api-version=2018-02-01").status == 200
        assert (token(two).status, token(two).body) == (400, MULTIPLE)
        second = ids(two).user[1]
        assert second.resource_id == UAMI.format(sub=two.vm.instance["compute"]["subscriptionId"], rg="azimds-rg",
                                                 name="second-id")
        assert token(two, f"&msi_res_id={second.resource_id}").json()["client_id"] == second.client_id
    with Emulator({"identity": {"userAssigned": [{"name": "only-one"}]}}) as one:
        assert token(one).json()["client_id"] == ids(one).user[0].client_id  # the only one needs no selector


# -- errors -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Metadata": "false"}])
def test_missing_metadata_header_is_the_real_88_bytes(mi, headers):
    reply = token(mi, metadata=False, headers=headers)
    assert (reply.status, reply.body, reply.headers["content-length"]) == (400, MISSING_HEADER, "88")


@pytest.mark.parametrize("query", ["", "&resource="])
def test_missing_resource(mi, query):
    reply = fetch(mi.url, TOKEN + query)
    assert reply.status == 400
    assert reply.body == (b'{"error":"invalid_request","error_description":'
                          b'"Required query variable \'resource\' is missing"}')


@pytest.mark.parametrize("path", ["/metadata/identity", "/metadata/identity/", "/metadata/identity/oauth2",
                                  "/metadata/identity/token?api-version=2018-02-01",
                                  "/metadata/identity/oauth2/token/x?api-version=2018-02-01"])
@pytest.mark.parametrize("metadata", [True, False])
def test_other_identity_paths_are_404(mi, path, metadata):
    reply = fetch(mi.url, path, metadata=metadata)
    assert (reply.status, reply.body) == (404, b'{"error":"Not Found"}')


@pytest.mark.parametrize("version", ["", "2017-12-01", "2018-02-02", "latest"])
def test_bad_api_version(mi, version):
    reply = fetch(mi.url, f"/metadata/identity/oauth2/token?api-version={version}&resource={RESOURCE}")
    assert reply.status == 400 and reply.json()["newest-versions"] == ["2025-04-07", "2024-07-17", "2024-03-15"]


def test_only_get(mi):
    reply = token(mi, method="POST")
    assert reply.status == 405 and reply.headers["allow"] == "GET"


# -- the cache ------------------------------------------------------------------------------------------------------

@pytest.fixture
def manual():
    with Emulator(clock="manual") as emulator:
        yield emulator


def test_tokens_are_cached_so_expires_in_falls(manual):
    mi = manual
    resource = "https://vault.azure.net"
    first = fetch(mi.url, f"{TOKEN}&resource={resource}").json()
    mi.world.advance_clock(100)
    second = fetch(mi.url, f"{TOKEN}&resource={resource}").json()
    assert second["access_token"] == first["access_token"] and second["expires_on"] == first["expires_on"]
    assert int(second["expires_in"]) == int(first["expires_in"]) - 100
    other = fetch(mi.url, f"{TOKEN}&resource={resource}/").json()  # another resource, another token
    assert other["access_token"] != first["access_token"] and other["resource"] == resource + "/"
    uami = fetch(mi.url, f"{TOKEN}&resource={resource}&client_id={ids(mi).user[0].client_id}").json()
    assert uami["access_token"] != first["access_token"]  # and another identity too
    fresh = fetch(mi.url, f"{TOKEN}&resource={resource}&bypass_cache=TRUE").json()
    assert fresh["access_token"] != first["access_token"] and fresh["expires_in"] == "86400"
    assert fetch(mi.url, f"{TOKEN}&resource={resource}").json()["access_token"] == fresh["access_token"]
    mi.world.advance_clock(86400 - 299)  # under 5 minutes left: the next request gets a new token
    renewed = fetch(mi.url, f"{TOKEN}&resource={resource}").json()
    assert renewed["access_token"] != fresh["access_token"] and renewed["expires_in"] == "86400"


# -- limits ---------------------------------------------------------------------------------------------------------

def test_identity_has_its_own_20_per_second_and_the_instance_5_do_not_throttle_it():
    with Emulator(rate_limit=5, identity_rate_limit=20, identity_concurrency=5) as imds:
        instance = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
        assert [fetch(imds.url, instance, source="127.0.0.21").status for _ in range(5)] == [200] * 5
        statuses = [token(imds, source="127.0.0.21").status for _ in range(24)]
        assert statuses[:20] == [200] * 20 and 429 in statuses[20:]
        throttled = token(imds, source="127.0.0.21")
        assert throttled.status == 429 and int(throttled.headers["retry-after"]) >= 1
        assert throttled.json() == {"error": "too_many_requests", "error_description": "Too many requests"}
        assert token(imds, source="127.0.0.22").status == 200  # per source address
        # and identity requests took nothing from the instance budget of a fresh caller
        assert [token(imds, source="127.0.0.23").status for _ in range(10)] == [200] * 10
        assert [fetch(imds.url, instance, source="127.0.0.23").status for _ in range(5)] == [200] * 5


def test_at_most_five_identity_requests_in_flight():
    slow = Fault(path="/metadata/identity/*", latency=0.4)
    with Emulator(identity_concurrency=5, faults=[slow]) as imds:
        results: list[int] = []

        def call(source: str) -> None:
            results.append(token(imds, source=source).status)

        threads = [threading.Thread(target=call, args=("127.0.0.31",)) for _ in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [200] * 5 + [429] * 3
        assert time.monotonic() - started < 2
        # Still delayed (so still counted in flight, and refused if the slots had leaked), but briefly.
        imds.control.clear_faults()
        imds.control.add_fault(Fault(path="/metadata/identity/*", latency=0.01))
        other = [token(imds, source="127.0.0.32").status]  # another caller is not affected
        assert other == [200] and token(imds, source="127.0.0.31").status == 200  # and the slots came back


# -- the Azure SDK ---------------------------------------------------------------------------------------------------

@pytest.fixture
def sdk_env(mi, monkeypatch):
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT",
                 "MSI_SECRET", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
                 "AZURE_FEDERATED_TOKEN_FILE", "AZURE_TOKEN_CREDENTIALS", "AZURE_USERNAME", "HTTP_PROXY",
                 "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", mi.url)
    return mi


def test_managed_identity_credential(sdk_env):
    from azure.identity import ManagedIdentityCredential

    with ManagedIdentityCredential() as credential:
        access = credential.get_token(f"{RESOURCE}/.default")
    claims = validate(sdk_env, access.token)
    assert claims["appid"] == ids(sdk_env).system.client_id
    assert abs(access.expires_on - claims["exp"]) <= 1


def test_managed_identity_credential_with_client_id(sdk_env):
    from azure.identity import ManagedIdentityCredential

    uami = ids(sdk_env).user[0]
    with ManagedIdentityCredential(client_id=uami.client_id) as credential:
        access = credential.get_token("https://storage.azure.com/.default")
    claims = validate(sdk_env, access.token, audience="https://storage.azure.com")
    assert (claims["appid"], claims["xms_mirid"]) == (uami.client_id,
                                                      uami.resource_id.replace("/resourceGroups/", "/resourcegroups/"))


def test_default_azure_credential_with_only_managed_identity(sdk_env):
    from azure.identity import DefaultAzureCredential

    others = ("environment", "workload_identity", "shared_token_cache", "visual_studio_code", "cli", "powershell",
              "developer_cli", "interactive_browser")
    uami = ids(sdk_env).user[0]
    with DefaultAzureCredential(managed_identity_client_id=uami.client_id,
                                **{f"exclude_{name}_credential": True for name in others}) as credential:
        access = credential.get_token(f"{RESOURCE}/.default")
    assert validate(sdk_env, access.token)["appid"] == uami.client_id


def test_sdk_probe_without_the_header_gets_the_quick_400(sdk_env):
    """azure-identity probes IMDS (no Metadata header, no retries, 1 s timeout) inside a credential chain; with
    AZURE_POD_IDENTITY_AUTHORITY_HOST set it skips the probe, so the test makes it probe the way it would."""
    imds_module = pytest.importorskip("azure.identity._credentials.imds")
    credential = imds_module.ImdsCredential(_enable_imds_probe=True)
    if not hasattr(credential, "_endpoint_available"):
        pytest.skip("this azure-identity version probes differently")
    credential._endpoint_available = None
    before = len(sdk_env.journal)
    with credential:
        access = credential.get_token(f"{RESOURCE}/.default")
    assert validate(sdk_env, access.token)
    probe, real = sdk_env.journal[before:before + 2]
    assert probe.status == 400 and probe.latency < 0.05 and real.status == 200
    assert "/metadata/identity/oauth2/token" in probe.url


# -- the profile's identity section ------------------------------------------------------------------------------------

def test_default_vm_identities_are_stable_and_realistic():
    first, second = profile.load_default(), profile.load_default()
    assert first.identity == second.identity
    ident = first.identity
    assert ident.system is not None and len(ident.user) == 1
    assert ident.user[0].resource_id.endswith(
        "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/web-01-identity")
    guids = [ident.tenant_id, ident.system.client_id, ident.system.object_id, ident.user[0].client_id,
             ident.user[0].object_id]
    assert len(set(guids)) == 5 and all(len(g) == 36 and g == g.lower() and g[14] == "4" for g in guids)


def test_identity_section_values_are_kept():
    tree = {"identity": {"tenantId": "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
                         "systemAssigned": {"clientId": "11111111-1111-4111-8111-111111111111",
                                            "principalId": "22222222-2222-4222-8222-222222222222"},
                         "userAssigned": [{"resourceId": UAMI.format(sub="s", rg="r", name="n1"),
                                           "clientId": "33333333-3333-4333-8333-333333333333"}]}}
    ident = profile.from_tree(tree, "<t>").identity
    assert ident.tenant_id == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert (ident.system.client_id, ident.system.object_id) == ("11111111-1111-4111-8111-111111111111",
                                                                "22222222-2222-4222-8222-222222222222")
    assert ident.user[0].client_id == "33333333-3333-4333-8333-333333333333"
    assert profile.from_tree({"identity": {"systemAssigned": "false"}}, "<t>").identity.system is None


@pytest.mark.parametrize("section, where, problem", [
    ({"systemAssigned": {"clientId": "nope"}}, "identity.systemAssigned.clientId", "not a GUID"),
    ({"systemAssigned": "maybe"}, "identity.systemAssigned", "true, false or a mapping"),
    ({"systemAssigned": {"enabled": "maybe"}}, "identity.systemAssigned.enabled", "must be true or false"),
    ({"tenantId": 7}, "identity.tenantId", "not a GUID"),
    ({"userAssigned": [{"resourceId": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/"
                                      "virtualMachines/z"}]},
     "identity.userAssigned[0].resourceId", "not a user-assigned identity id"),
    ({"userAssigned": [{}]}, "identity.userAssigned[0]", "resourceId or its name"),
    ({"userAssigned": [{"name": "a b"}]}, "identity.userAssigned[0].name", "not an identity name"),
    ({"userAssigned": [{"name": "one", "clientId": "11111111-1111-4111-8111-111111111111"},
                       {"name": "two", "clientId": "11111111-1111-4111-8111-111111111111"}]},
     "identity.userAssigned[1].clientId", "the same clientId as identity.userAssigned[0]"),
    ({"userAssigned": [{"name": "one", "resourceId": UAMI.format(sub="s", rg="r", name="other")}]},
     "identity.userAssigned[0].name", "not the name its resourceId ends with"),
    ({"systemAssigned": {"objectId": "11111111-1111-4111-8111-111111111111",
                         "principalId": "22222222-2222-4222-8222-222222222222"}},
     "identity.systemAssigned.principalId", "they differ"),
    ({"userassigned": []}, "identity.userassigned", "unknown field"),
    ({"userAssigned": {"name": "x"}}, "identity.userAssigned", "valid list"),
])
def test_bad_identity_sections_name_file_path_and_problem(tmp_path: Path, section, where, problem):
    path = tmp_path / "vm.json"
    path.write_text(json.dumps({"identity": section}))
    with pytest.raises(ProfileError) as info:
        profile.load(path)
    assert f"{path}: {where}: " in str(info.value) and problem in str(info.value), str(info.value)


def test_identity_limits_in_the_profile(tmp_path: Path):
    from azimds.emulator.app import configure

    config, _ = configure(defaults={"profile": {"azimds": {"identityRateLimit": 7, "identityConcurrency": 2}}})
    assert (config.identity_rate_limit, config.identity_concurrency) == (7, 2)
    with pytest.raises(ProfileError, match=r"azimds\.identityConcurrency"):
        configure(defaults={"profile": {"azimds": {"identityConcurrency": -1}}})
