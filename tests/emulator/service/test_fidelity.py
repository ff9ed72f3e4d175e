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


# -- 8. scheduled-events timing ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "started_for"), [("Freeze", 300), ("Reboot", 600), ("Redeploy", 600)])
def test_started_lasts_minutes_whatever_the_duration(emu_ctl, kind, started_for):
    """DOC: "EventStatus:"Started" to Completed (event removed from Events array): 10 minutes"; CODE:
    Azure-Samples/scheduled-events-mock-server, replaying captured flows, keeps a live-migration Freeze (its
    DurationInSeconds 5) Started for 5 minutes, host maintenance and reboots for 10."""
    imds, ctl = emu_ctl
    ctl("POST", "/v1/events", {"type": kind, "durationInSeconds": 5, "started": True})
    ctl("POST", "/v1/clock", {"advance": started_for - 1})
    assert fetch(imds.url, SE).json()["Events"][0]["EventStatus"] == "Started"
    ctl("POST", "/v1/clock", {"advance": 1})
    assert fetch(imds.url, SE).json()["Events"] == []


def test_a_users_reboot_has_no_description(emu_ctl):
    """REAL: a VM's document for a user's reboot (Azure/vm-scheduled-events README, 2021): "Description": ""."""
    imds, ctl = emu_ctl
    ctl("POST", "/v1/events", {"type": "Reboot", "source": "User"})
    [event] = fetch(imds.url, SE).json()["Events"]
    assert (event["EventSource"], event["Description"], event["DurationInSeconds"]) == ("User", "", -1)


def test_the_first_events_request_can_be_made_to_wait(tmp_path):
    """DOC: "You should expect a delayed response in your first call of up to two minutes" and "Scheduled
    Events is disabled for your service if it doesn't make a request to the endpoint for 24 hours". Off by
    default; with eventsFirstCallDelay the first request of a VM, and its first after 24 h, waits."""
    import time

    text = "azimds:\n  eventsFirstCallDelay: 0.4\n"
    with Emulator(profile=write(tmp_path, text), clock="manual") as imds:
        timings = []
        for advance in (0, 0, 86399, 86400):
            control(imds, "POST", "/v1/clock", {"advance": advance})
            began = time.monotonic()
            assert fetch(imds.url, SE).status == 200
            timings.append(time.monotonic() - began)
    first, second, within_a_day, after_a_day = timings
    assert first >= 0.4 and after_a_day >= 0.4
    assert second < 0.4 and within_a_day < 0.4
    with Emulator(clock="manual") as imds:  # the default: no wait
        began = time.monotonic()
        fetch(imds.url, SE)
        assert time.monotonic() - began < 0.4


def test_an_approved_terminate_waits_for_the_other_pending_deletes():
    """DOC (terminate notifications, "Approve all pending deletes"): "If there's a pending delete on VM_1 that
    isn't approved, and you've approved another terminate event on VM_2, then VM_2 isn't deleted until the
    terminate event for VM_1 is approved, or its timeout has elapsed. Once you approve the terminate event for
    VM_1, then both VM_1 and VM_2 are deleted." """
    profile = {"fleet": {"scaleSets": [{"name": "web", "capacity": 3, "addresses": "127.1.0.0"}]}}
    with Emulator(profile, clock="manual") as imds:
        def terminate(vm):
            return control(imds, "POST", f"/v1/events?vm={vm}", {"type": "Terminate", "resources": [vm]}).json()[
                "eventId"]

        def statuses():
            doc = fetch(imds.url, SE, source="127.1.0.0").json()
            return {e["Resources"][0]: e["EventStatus"] for e in doc["Events"]}

        first, second = terminate("web_0"), terminate("web_1")
        approve = json.dumps({"StartRequests": [{"EventId": second}]}).encode()
        assert fetch(imds.url, SE, method="POST", body=approve, source="127.1.0.1").status == 200
        assert statuses() == {"web_0": "Scheduled", "web_1": "Scheduled"}  # waits for web_0's delete
        approve = json.dumps({"StartRequests": [{"EventId": first}]}).encode()
        assert fetch(imds.url, SE, method="POST", body=approve, source="127.1.0.0").status == 200
        assert statuses() == {"web_0": "Started", "web_1": "Started"}  # both go together


def test_a_waiting_terminate_starts_when_the_blocking_one_times_out():
    """The same doc: "… or its timeout has elapsed"."""
    profile = {"fleet": {"scaleSets": [{"name": "web", "capacity": 2, "addresses": "127.1.0.0"}]}}
    with Emulator(profile, clock="manual") as imds:
        ids = [control(imds, "POST", f"/v1/events?vm={vm}", {"type": "Terminate", "resources": [vm],
                                                              "notice": notice}).json()["eventId"]
               for vm, notice in (("web_0", 600), ("web_1", 900))]
        control(imds, "POST", f"/v1/events/{ids[1]}/approve?vm=web_1&by=web_1")
        control(imds, "POST", "/v1/clock", {"advance": 599})
        assert {e["EventStatus"] for e in fetch(imds.url, SE, source="127.1.0.0").json()["Events"]} == {"Scheduled"}
        control(imds, "POST", "/v1/clock", {"advance": 1})  # web_0's NotBefore: it starts, and web_1's with it
        assert {e["EventStatus"] for e in fetch(imds.url, SE, source="127.1.0.0").json()["Events"]} == {"Started"}


def test_the_2017_03_01_preview_needs_no_metadata_header(shared_vm):
    """DOC: the scheduled-events version table lists "Metadata header requirement enforced for all requests"
    under 2017-08-01; 2017-03-01 was the preview before it."""
    preview = fetch(shared_vm.url, "/metadata/scheduledevents?api-version=2017-03-01", metadata=False)
    assert preview.status == 200 and "DocumentIncarnation" in preview.json()
    later = fetch(shared_vm.url, "/metadata/scheduledevents?api-version=2017-08-01", metadata=False)
    assert later.status == 400 and b"Required metadata header" in later.body


def test_approving_for_a_vm_that_does_not_exist_is_an_error(emu_ctl):
    """`azimds ctl events approve ID --by nobody` used to exit 0 and do nothing."""
    imds, ctl = emu_ctl
    event = ctl("POST", "/v1/events", {"type": "Reboot"}).json()["eventId"]
    reply = ctl("POST", f"/v1/events/{event}/approve?by=nobody")
    assert reply.status == 404 and "nobody" in reply.json()["error"]
    assert fetch(imds.url, SE).json()["Events"][0]["EventStatus"] == "Scheduled"


# -- 7. derived fields follow their sources; delete goes back to the profile ------------------------------------

def test_a_new_name_carries_the_fields_derived_from_it(emu_ctl):
    """Azure derives resourceId, the OS disk's name and computerName from the VM's name (the defaults follow
    Azure's naming); a control-plane change of the name moves them with it, unless the profile gave them."""
    imds, ctl = emu_ctl
    before = fetch(imds.url, "/metadata/instance/compute?api-version=2021-02-01").json()
    assert ctl("PUT", "/v1/metadata/compute/name", "web-02").status == 200
    after = fetch(imds.url, "/metadata/instance/compute?api-version=2021-02-01").json()
    assert after["resourceId"] == before["resourceId"].replace("/virtualMachines/web-01", "/virtualMachines/web-02")
    assert after["osProfile"]["computerName"] == "web-02"
    assert after["storageProfile"]["osDisk"]["name"].startswith("web-02_OsDisk_1_")
    assert after["vmId"] != before["vmId"]  # derived from the resource id
    assert after["storageProfile"]["dataDisks"][0]["name"] == "web-01_DataDisk_0"  # the profile names it


def test_a_new_size_carries_its_temporary_disk(emu_ctl):
    """resourceDisk.size derives from vmSize (see item 6): a size change moves it."""
    imds, ctl = emu_ctl
    ctl("PUT", "/v1/metadata/compute/vmSize", "Standard_D2s_v5")
    assert fetch(imds.url, "/metadata/instance/compute/storageProfile/resourceDisk/size"
                           "?api-version=2021-02-01&format=text").body == b"0"


@pytest.mark.parametrize("how", ["delete", "patch-null"])
def test_removing_a_change_returns_to_the_profile(emu_ctl, how):
    """Deleting compute/zone answered "" where the profile says "1": a removed member goes back to the profile's
    value (or the generated default), whether by DELETE or by a merge patch's null."""
    imds, ctl = emu_ctl
    zone = "/metadata/instance/compute/zone?api-version=2021-02-01&format=text"
    ctl("PUT", "/v1/metadata/compute/zone", "3")
    assert fetch(imds.url, zone).body == b"3"
    if how == "delete":
        assert ctl("DELETE", "/v1/metadata/compute/zone").status == 204
    else:
        ctl("PATCH", "/v1/metadata/compute", {"zone": None})
    assert fetch(imds.url, zone).body == b"1"
    ctl("PUT", "/v1/metadata/compute/resourceId", "/subscriptions/x/resourceGroups/y/providers/p/t/z")
    ctl("DELETE", "/v1/metadata/compute/resourceId")  # the profile does not give it: derived again
    assert fetch(imds.url, "/metadata/instance/compute/resourceId?api-version=2021-02-01&format=text").body.endswith(
        b"/virtualMachines/web-01")
    assert not imds.vm.changed  # every change undone: the VM is the profile's again


# -- 9. scale-set instances see changed tags at their next reboot -----------------------------------------------

FLEET = {"fleet": {"scaleSets": [{"name": "web", "capacity": 2, "addresses": "127.1.0.0", "tags": {"tier": "web"}}]}}
TAGS = "/metadata/instance/compute/tags?api-version=2021-02-01&format=text"


def test_a_scale_set_instance_sees_changed_tags_after_a_reboot():
    """DOC (IMDS FAQ): "Currently tags for scale sets only show to the VM on a reboot, reimage, or disk change to
    the instance." A standalone VM sees them at once."""
    with Emulator(FLEET, clock="manual") as imds:
        assert control(imds, "PUT", "/v1/tags?vm=web_0", {"tier": "api"}).json() == {"tags": "tier:api"}
        assert fetch(imds.url, TAGS, source="127.1.0.0").body == b"tier:web"  # not yet
        control(imds, "PUT", "/v1/tags", {"role": "jump"})  # the profile's own VM is no scale-set instance
        assert fetch(imds.url, TAGS).body == b"role:jump"
        assert control(imds, "POST", "/v1/reboot?vm=web_0").status == 204
        assert fetch(imds.url, TAGS, source="127.1.0.0").body == b"tier:api"
        assert fetch(imds.url, TAGS, source="127.1.0.1").body == b"tier:web"  # the other instance: unchanged


def test_a_reboot_event_shows_the_tags_when_it_starts():
    """A platform or user Reboot (or Redeploy) restarts the VM: the tags changed before it show once it has
    Started, whether by approval or at its NotBefore."""
    with Emulator(FLEET, clock="manual") as imds:
        control(imds, "PUT", "/v1/tags?vm=web_1", {"tier": "batch"})
        control(imds, "POST", "/v1/events?vm=web_1", {"type": "Reboot", "resources": ["web_1"]})
        assert fetch(imds.url, TAGS, source="127.1.0.1").body == b"tier:web"
        control(imds, "POST", "/v1/clock", {"advance": 15 * 60})  # NotBefore: Started
        assert fetch(imds.url, TAGS, source="127.1.0.1").body == b"tier:batch"


def test_tags_changed_after_the_reboot_wait_for_the_next(tmp_path):
    """Changes kept for a reboot survive a restart of the emulator, and only a reboot after them shows them."""
    state = tmp_path / "state"
    with Emulator(FLEET, clock="manual", state_dir=state) as imds:
        control(imds, "POST", "/v1/reboot?vm=web_0")
        control(imds, "POST", "/v1/clock", {"advance": 60})
        control(imds, "PUT", "/v1/tags?vm=web_0", {"tier": "later"})
    with Emulator(FLEET, clock="manual", state_dir=state) as imds:
        assert fetch(imds.url, TAGS, source="127.1.0.0").body == b"tier:web"
        assert control(imds, "GET", "/v1/metadata/compute/tags?vm=web_0").json() == "tier:web"
        control(imds, "POST", "/v1/reboot?vm=web_0")
        assert fetch(imds.url, TAGS, source="127.1.0.0").body == b"tier:later"


def test_a_profile_can_show_scale_set_tags_at_once():
    """The switch for tests that want the standalone behaviour everywhere: azimds.scaleSetTags: immediate."""
    with Emulator({**FLEET, "azimds": {"scaleSetTags": "immediate"}}, clock="manual") as imds:
        control(imds, "PUT", "/v1/tags?vm=web_0", {"tier": "api"})
        assert fetch(imds.url, TAGS, source="127.1.0.0").body == b"tier:api"


# -- 10. a pre-provisioned VM's reprovision data ----------------------------------------------------------------

REPROVISION = "/metadata/reprovisiondata?api-version=2019-06-01"
POOLED = {"compute": {"name": "pool-7", "customData": "I2Nsb3VkLWNvbmZpZwo="},
          "extended": {"compute": {"ppsType": "Running"}}}


def test_a_pooled_vm_waits_then_gets_its_ovf_environment():
    """CODE (canonical/cloud-init, sources/azure/imds.py and DataSourceAzure.py): a VM whose
    extended.compute.ppsType is Running/Savable/PreprovisionedOSDisk polls /metadata/reprovisiondata at
    api-version 2019-06-01, retrying 404 and 410 as "not yet", then reads the body as its ovf-env.xml, and
    checks that ppsType reads None afterwards."""
    import xml.etree.ElementTree as ElementTree

    with Emulator(POOLED, clock="manual") as imds:
        waiting = fetch(imds.url, REPROVISION, headers={"x-ms-client-request-id": "1"})
        assert (waiting.status, waiting.body) == (404, b'{"error":"Not Found"}')
        extended = "/metadata/instance?api-version=2021-08-01&extended=true"
        assert fetch(imds.url, extended).json()["extended"]["compute"]["ppsType"] == "Running"
        reply = control(imds, "POST", "/v1/reprovision", {"compute": {"osProfile": {"computerName": "customer-1"}}})
        assert reply.status == 200
        given = fetch(imds.url, REPROVISION)
        assert given.status == 200 and given.headers["content-type"] == "text/xml; charset=utf-8"
        root = ElementTree.fromstring(given.body)
        wa = "{http://schemas.microsoft.com/windowsazure}"
        config = root.find(f"{wa}ProvisioningSection/{wa}LinuxProvisioningConfigurationSet")
        assert config.find(f"{wa}HostName").text == "customer-1"
        assert config.find(f"{wa}UserName").text == "azureuser"
        assert config.find(f"{wa}CustomData").text == "I2Nsb3VkLWNvbmZpZwo="
        assert fetch(imds.url, extended).json()["extended"]["compute"]["ppsType"] == "None"
        assert fetch(imds.url, "/metadata/reprovisiondata?api-version=2017-04-02").status == 200  # the first version
        again = control(imds, "POST", "/v1/reprovision")
        assert again.status == 409 and "handed over already" in again.json()["error"]


def test_a_vm_that_was_never_pooled_has_no_reprovision_data(shared_vm, emu_ctl):
    """A VM not pre-provisioned answers 404 (cloud-init issue #5323: a Standard_B2s not pre-provisioned could not
    read it) and cannot be handed over."""
    assert fetch(shared_vm.url, REPROVISION).status == 404
    _, ctl = emu_ctl
    reply = ctl("POST", "/v1/reprovision")
    assert reply.status == 400 and "not pre-provisioned" in reply.json()["error"]


def test_a_pps_type_azure_does_not_have_is_a_profile_error(tmp_path):
    from azimds.errors import ProfileError

    with pytest.raises(ProfileError, match="ppsType is one of None, Running, Savable, PreprovisionedOSDisk"):
        Emulator(profile=write(tmp_path, "extended:\n  compute: {ppsType: Sleeping}\n"))
