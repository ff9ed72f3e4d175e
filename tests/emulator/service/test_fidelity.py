"""Where azimds answered differently from Azure (issue 12), each test with the public evidence it follows."""

from __future__ import annotations

import json
import re

import pytest

from azimds import Emulator
from tests.support import control, fetch

NEWEST = ["2025-04-07", "2024-07-17", "2024-03-15"]
TOKEN = "/metadata/identity/oauth2/token?api-version=2018-02-01"
SE = "/metadata/scheduledevents?api-version=2020-07-01"


@pytest.fixture
def emu_ctl():
    """A fresh emulator on a manual clock, and its control plane."""
    with Emulator(clock="manual") as imds:
        yield imds, lambda method, path, body=None: control(imds, method, path, body)


def write(tmp_path, text: str):
    path = tmp_path / "vm.yaml"
    path.write_text(text)
    return path


# -- 1. the root ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/metadata", "/metadata/", "/metadata?api-version=1999-01-01"])
def test_the_root_without_a_version_names_the_newest_versions(shared_vm, path):
    """REAL: `curl -s -H Metadata:true http://169.254.169.254/metadata` on a VM in 2025 (MicrosoftDocs/
    azure-compute-docs PR #289) printed the api-version error with "newest-versions"; the docs tie that body to
    400, and Ohai's best_api_version probes a path without a version expecting exactly that 400."""
    reply = fetch(shared_vm.url, path)
    assert reply.status == 400
    assert reply.json() == {"error": "Bad request. api-version is invalid or was not specified in the request. "
                                     "For more information refer to aka.ms/azureimds", "newest-versions": NEWEST}


def test_the_root_with_a_version_and_without_the_header(shared_vm):
    """CHOSEN (no evidence): with a valid version the root names no document (404 as /metadata/identity); the
    Metadata header is checked first, as on every instance-family path."""
    assert (fetch(shared_vm.url, "/metadata?api-version=2021-02-01").status,
            fetch(shared_vm.url, "/metadata?api-version=2021-02-01").body) == (404, b'{"error":"Not Found"}')
    assert fetch(shared_vm.url, "/metadata", metadata=False).body == (
        b'{ "error": "Bad request: . Required metadata header not specified" }')


# -- 2. public IPs behind a Standard load balancer -------------------------------------------------------------

def test_the_default_vm_answers_its_public_ip_only_through_the_load_balancer(shared_vm):
    """REAL: VMs in a Standard load balancer's backend pool answer "" for publicIpAddress (azure-docs #58263,
    microsoft/azureimds #25: `[{"privateIpAddress":"…","publicIpAddress":""}]`); the address is in
    /metadata/loadbalancer (cloud-provider-azure #535/#540)."""
    nic = fetch(shared_vm.url, "/metadata/instance/network/interface/0/ipv4/ipAddress?api-version=2021-12-13")
    assert nic.json() == [{"privateIpAddress": "10.0.0.4", "publicIpAddress": ""}]
    lb = fetch(shared_vm.url, "/metadata/loadbalancer?api-version=2021-12-13").json()["loadbalancer"]
    assert lb["publicIpAddresses"][0] == {"frontendIpAddress": "20.115.74.12", "privateIpAddress": "10.0.0.4"}


def test_a_profile_must_say_which_public_ip_it_means(tmp_path):
    """DOC: "If you're looking to retrieve IMDS information for Standard SKU Public IP address, review Load
    Balancer Metadata API" (IMDS article, Sample 7). A NIC public IP together with a load balancer is a
    contradiction: refused with the fix; either alone is served as written."""
    from azimds.errors import ProfileError

    both = ("network:\n  interface:\n    - ipv4:\n        ipAddress: [{privateIpAddress: 10.0.0.4, "
            "publicIpAddress: 20.1.2.3}]\nloadbalancer:\n  publicIpAddresses: [{frontendIpAddress: 20.1.2.3}]\n")
    with pytest.raises(ProfileError) as caught:
        Emulator(profile=write(tmp_path, both))
    [(where, what)] = caught.value.problems
    assert where == "network.interface[0].ipv4.ipAddress[0].publicIpAddress"
    assert "loadbalancer.publicIpAddresses" in what
    instance_level = both.split("loadbalancer:")[0]
    with Emulator(profile=write(tmp_path, instance_level)) as imds:
        reply = fetch(imds.url, "/metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress"
                                "?api-version=2021-02-01&format=text")
        assert reply.body == b"20.1.2.3"


def test_the_control_plane_cannot_put_a_public_ip_on_a_balanced_nic(emu_ctl):
    """The same rule holds for a change: refused whole, nothing changed."""
    imds, ctl = emu_ctl
    reply = ctl("PUT", "/v1/metadata/network/interface/0/ipv4/ipAddress/0/publicIpAddress", "1.2.3.4")
    assert reply.status == 400 and "publicIpAddress" in reply.json()["problems"][0]
    assert fetch(imds.url, "/metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress"
                           "?api-version=2021-02-01&format=text").body == b""


def test_the_client_finds_the_public_ip_behind_a_load_balancer(shared_vm):
    """CODE: cloud-provider-azure PR #540 reads the public IP from /metadata/loadbalancer when the NIC has ""."""
    from azimds.client import Client

    assert Client(shared_vm.url, limiter=None).public_ips() == ["20.115.74.12"]


# -- 3. tokens for unknown resources -------------------------------------------------------------------------

@pytest.mark.parametrize("resource", [
    "https://management.azure.com/", "https://management.azure.com", "https://vault.azure.net",
    "https://vault.azure.net/", "https://storage.azure.com/", "https://graph.microsoft.com",
    "https://database.windows.net/", "https://servicebus.azure.net", "https://eventhubs.azure.net",
    "https://managedhsm.azure.net", "https://cosmos.azure.com", "https://api.loganalytics.io",
    "https://monitor.azure.com/", "https://cognitiveservices.azure.com", "6dae42f8-4368-4678-94ff-3960e28e3630",
    "https://myaccount.documents.azure.com", "https://corp-vault.vault.azure.net", "https://acct.blob.core.windows.net",
    "HTTPS://MANAGEMENT.AZURE.COM/", "urn:ms-drs:enterpriseregistration.windows.net",
])
def test_well_known_resources_get_tokens(shared_vm, resource):
    """DOC: the managed-identity services table (management, vault, storage, database, Service Bus, Event Hubs…);
    CODE: the SDKs' default scopes (Managed HSM, Cosmos DB, Azure Monitor, Cognitive Services) and per-account
    scopes; the AKS server application id. STS accepts a resource with or without its trailing slash (azure-sdk-
    for-net #29891); the answer echoes the resource as asked (HHC 2023 capture)."""
    from urllib.parse import quote

    reply = fetch(shared_vm.url, f"{TOKEN}&resource={quote(resource, safe='')}")
    assert reply.status == 200, reply.body
    assert reply.json()["resource"] == resource


@pytest.mark.parametrize("resource", ["https://managements.azure.com", "https://example.org/",
                                      "https://vault.usgovcloudapi.net", "https://x.documents.azure.com/path"])
def test_an_unknown_resource_is_aadsts500011(shared_vm, resource):
    """REAL: MSAL.NET #3979 (2023, a VM's managed identity asked for https://managements.azure.com): 400
    `{"error":"invalid_resource","error_description":"AADSTS500011: The resource principal named
    https://managements.azure.com was not found in the tenant named Microsoft. This can happen …`, the
    description ending in Trace ID / Correlation ID / Timestamp lines (\\r\\n-separated in Entra's bodies,
    terraform-provider-azurerm #16291). A public-cloud VM has no Government resource principals."""
    reply = fetch(shared_vm.url, f"{TOKEN}&resource={resource}")
    assert reply.status == 400
    body = reply.json()
    assert list(body) == ["error", "error_description"] and body["error"] == "invalid_resource"
    assert re.fullmatch(
        rf"AADSTS500011: The resource principal named {re.escape(resource)} was not found in the tenant named "
        r"Default Directory\. This can happen if the application has not been installed by the administrator of the "
        r"tenant or consented to by any user in the tenant\. You might have sent your authentication request to the "
        r"wrong tenant\.\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\n"
        r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["error_description"])
    assert reply.body.startswith(b'{"error":"invalid_resource","error_description":"AADSTS500011: ')


def test_a_profile_adds_resources_and_names_its_tenant(tmp_path):
    """The profile's identity.resources are accepted too ("*" accepts all); identity.tenantName is the name the
    AADSTS500011 text gives (the real one said "tenant named Microsoft")."""
    text = ("identity:\n  systemAssigned: true\n  tenantName: Contoso\n  resources: [api://my-app, "
            "https://internal.example/]\n")
    with Emulator(profile=write(tmp_path, text)) as imds:
        assert fetch(imds.url, f"{TOKEN}&resource=api://my-app").status == 200
        assert fetch(imds.url, f"{TOKEN}&resource=https://internal.example").status == 200
        refused = fetch(imds.url, f"{TOKEN}&resource=https://other.example")
        assert "in the tenant named Contoso." in refused.json()["error_description"]
    anything = "identity:\n  systemAssigned: true\n  resources: ['*']\n"
    with Emulator(profile=write(tmp_path, anything)) as imds:
        assert fetch(imds.url, f"{TOKEN}&resource=https://anything.example").status == 200


def test_a_government_vm_knows_its_own_cloud(tmp_path):
    """DOC: the services table gives each cloud its own audiences (management.usgovcloudapi.net …)."""
    text = "compute:\n  azEnvironment: AzureUSGovernmentCloud\nidentity:\n  systemAssigned: true\n"
    with Emulator(profile=write(tmp_path, text)) as imds:
        assert fetch(imds.url, f"{TOKEN}&resource=https://management.usgovcloudapi.net/").status == 200
        assert fetch(imds.url, f"{TOKEN}&resource=https://management.azure.com/").status == 400


def test_a_missing_resource_names_the_query_variable(shared_vm):
    """REAL (via CODE): aad-pod-identity PR #450 copies IMDS's answer: 400 `{"error":"invalid_request",
    "error_description":"Required query variable 'resource' is missing"}`."""
    reply = fetch(shared_vm.url, TOKEN)
    assert (reply.status, reply.body) == (400, b'{"error":"invalid_request","error_description":'
                                               b'"Required query variable \'resource\' is missing"}')


# -- 4. the load balancer document and its errors --------------------------------------------------------------

def test_load_balancer_keys_in_the_service_order_and_protocol_spelled_tcp(tmp_path):
    """REAL: cloud-provider-azure #535 (jq keeps the wire order): publicIpAddresses, inboundRules, outboundRules;
    a rule's frontendIpAddress, protocol, frontendPort, backendPort, privateIpAddress; `"protocol": "Tcp"`;
    ports as numbers; an empty list as []. A profile may write `udp`; a rule without protocol is Tcp."""
    text = ("loadbalancer:\n  outboundRules: []\n  inboundRules:\n    - {backendPort: 99, privateIpAddress: 10.0.0.4,"
            " frontendPort: 99, frontendIpAddress: 20.20.20.20}\n    - {protocol: udp, frontendIpAddress: 1.1.1.1,"
            " frontendPort: 53, backendPort: 53, privateIpAddress: 10.0.0.4}\n"
            "  publicIpAddresses: [{privateIpAddress: 10.0.0.4, frontendIpAddress: 20.20.20.20}]\n")
    with Emulator(profile=write(tmp_path, text)) as imds:
        body = fetch(imds.url, "/metadata/loadbalancer?api-version=2020-10-01").body
    assert body == (b'{"loadbalancer":{"publicIpAddresses":[{"frontendIpAddress":"20.20.20.20","privateIpAddress":'
                    b'"10.0.0.4"}],"inboundRules":[{"frontendIpAddress":"20.20.20.20","protocol":"Tcp",'
                    b'"frontendPort":99,"backendPort":99,"privateIpAddress":"10.0.0.4"},{"frontendIpAddress":'
                    b'"1.1.1.1","protocol":"Udp","frontendPort":53,"backendPort":53,"privateIpAddress":"10.0.0.4"}],'
                    b'"outboundRules":[]}}')


def test_a_protocol_the_load_balancer_has_not_is_a_profile_error(tmp_path):
    from azimds.errors import ProfileError

    with pytest.raises(ProfileError) as caught:
        Emulator(profile=write(tmp_path, "loadbalancer:\n  inboundRules: [{protocol: icmp}]\n"))
    assert "Tcp, Udp, All" in str(caught.value)


@pytest.mark.parametrize(("method", "path", "status", "message"), [
    ("GET", "/metadata/loadbalancer/rules?api-version=2020-10-01", 404,
     'API is not found: Path = "/metadata/loadbalancer/rules", Method = "GET"'),
    ("POST", "/metadata/loadbalancer?api-version=2020-10-01", 405,
     'Http method is not allowed: Path = "/metadata/loadbalancer", Method = "POST"'),
    ("GET", "/metadata/loadbalancer?api-version=2020-10-01&format=text", 400,
     'Parameter value is not allowed, or parameter value "text" is not allowed for parameter "format". '
     'Please fix the request and retry.'),
])
def test_load_balancer_errors_use_its_own_words(shared_vm, method, path, status, message):
    """DOC: troubleshoot-load-balancer-imds.md, the 2023 revision ("Please", "is not"), whose style the one real
    load-balancer body shares (redhat-sap 2023: "Please check if your VM is using any non-basic SKU…"); wrapped
    as `{"error":"…"}` like that real body."""
    reply = fetch(shared_vm.url, path, method=method)
    assert (reply.status, reply.json()) == (status, {"error": message})
    assert reply.body == json.dumps({"error": message}, separators=(",", ":")).encode()


# -- 5, 6. priority and the resource disk ------------------------------------------------------------------------

def test_priority_of_a_regular_vm_is_empty(shared_vm):
    """REAL: every capture since 2022 (B1s 2022, DS2_v2 2023, D8s_v3 2023, B4ms 2023) answers "priority": ""."""
    reply = fetch(shared_vm.url, "/metadata/instance/compute/priority?api-version=2021-02-01&format=text")
    assert (reply.status, reply.body) == (200, b"")


@pytest.mark.parametrize(("size", "expected"), [
    ("Standard_D2s_v3", "16384"), ("Standard_DS2_v2", "14336"), ("Standard_D8s_v3", "65536"),
    ("Standard_D16ds_v5", "614400"), ("Standard_D2s_v5", "0"), ("Standard_D4as_v5", "0"), ("Standard_NC6", ""),
])
def test_resource_disk_follows_the_vm_size(tmp_path, size, expected):
    """REAL: resourceDisk.size is the temporary disk in MiB (DS2_v2 "14336", D8s_v3 "65536"; the docs' "kB" is
    wrong); DOC: sizes with "No local storage present in this series" (Dsv5, Dasv5) have 0, served "0"."""
    with Emulator(profile=write(tmp_path, f"compute:\n  vmSize: {size}\n")) as imds:
        reply = fetch(imds.url, "/metadata/instance/compute/storageProfile/resourceDisk/size"
                                "?api-version=2021-02-01&format=text")
    assert reply.body == expected.encode()


def test_a_profile_says_its_own_resource_disk(tmp_path):
    """REAL: B-series VMs answered 30 GiB more than their size page (B1s "34816"): a profile can say so."""
    text = "compute:\n  vmSize: Standard_B1s\n  storageProfile:\n    resourceDisk: {size: '34816'}\n"
    with Emulator(profile=write(tmp_path, text)) as imds:
        assert fetch(imds.url, "/metadata/instance/compute/storageProfile/resourceDisk/size"
                               "?api-version=2021-02-01&format=text").body == b"34816"


# -- 11. scheduled events and If-None-Match --------------------------------------------------------------------

def test_scheduled_events_send_an_etag_and_honour_if_none_match(emu_ctl):
    """CODE: Microsoft's sample (Azure/vm-scheduled-events node/src/index.ts) sends If-None-Match with the last
    ETag and treats 304 as "not modified"; its log against a real VM shows no new document between changes.
    The tag's form is CHOSEN (the incarnation, quoted); the sample's first, bare `0`, matches nothing."""
    imds, ctl = emu_ctl
    first = fetch(imds.url, SE)
    tag = first.headers["etag"]
    assert tag == f'"{first.json()["DocumentIncarnation"]}"'
    for sent in (tag, tag.strip('"'), f"W/{tag}", f'"x", {tag}', "*"):
        same = fetch(imds.url, SE, headers={"If-None-Match": sent})
        assert (same.status, same.body, same.headers["etag"]) == (304, b"", tag), sent
        assert "content-length" not in same.headers
    assert fetch(imds.url, SE, headers={"If-None-Match": "0"}).status == 200
    ctl("POST", "/v1/events", {"type": "Reboot"})
    changed = fetch(imds.url, SE, headers={"If-None-Match": tag})
    assert changed.status == 200 and changed.headers["etag"] != tag and changed.json()["Events"]
