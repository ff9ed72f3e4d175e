"""A fleet in one process: each caller answered as the VM its source address belongs to."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from azimds import Emulator
from azimds.emulator.model import profile
from tests.support import fetch

TOKEN = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/"
SE = "/metadata/scheduledevents?api-version=2020-07-01"


def fleet_profile(capacity: int = 50, subnet: str = "10.1.0.0/16", **extra) -> dict:
    return {
        "compute": {"name": "jump-1", "resourceGroupName": "ops-rg", "tags": {"role": "jump"}},
        "identity": {"systemAssigned": True},
        "fleet": {
            "tags": {"costCenter": "42", "owner": "platform"},
            "resourceGroups": {"app-rg": {"tags": {"env": "prod", "owner": "app-team"}}},
            "vms": [{"addresses": ["127.0.0.2"], "availabilitySet": "db",
                     "compute": {"name": "db-1", "resourceGroupName": "app-rg", "tags": {"role": "db"}}},
                    {"addresses": ["127.0.0.3"], "availabilitySet": "db",
                     "compute": {"name": "db-2", "resourceGroupName": "app-rg"}}],
            "scaleSets": [{"name": "web", "capacity": capacity, "addresses": "127.1.0.0", "subnet": subnet,
                           "resourceGroupName": "app-rg", "tags": {"tier": "web"}}],
            **extra,
        },
    }


def compute_of(imds: Emulator, source: str) -> dict:
    return fetch(imds.url, "/metadata/instance/compute?api-version=2021-12-13", source=source).json()


def test_fifty_vms_each_read_their_own_metadata_and_token():
    with Emulator(fleet_profile(), rate_limit=5) as imds:
        seen_ids, seen_oids = set(), set()
        for i in range(50):
            source = f"127.1.0.{i}"
            c = compute_of(imds, source)
            assert c["name"] == f"web_{i}" and c["vmScaleSetName"] == "web"
            assert c["platformFaultDomain"] == str(i % 5) and c["platformUpdateDomain"] == str(i % 5)
            assert c["resourceId"].endswith(f"/virtualMachineScaleSets/web/virtualMachines/{i}")
            nic = fetch(imds.url, "/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress"
                                  "?api-version=2021-02-01&format=text", source=source).body
            assert nic == f"10.1.0.{4 + i}".encode()
            token = fetch(imds.url, TOKEN, source=source).json()
            claims = jwt.decode(token["access_token"], options={"verify_signature": False})
            # the token is this VM's, and no other's
            assert claims["xms_mirid"] == c["resourceId"].replace("/resourceGroups/", "/resourcegroups/")
            seen_ids.add(c["vmId"])
            seen_oids.add(claims["oid"])
        assert len(seen_ids) == 50 and len(seen_oids) == 50
        macs = {fetch(imds.url, "/metadata/instance/network/interface/0/macAddress?api-version=2021-02-01&format=text",
                      source=f"127.1.0.{i}").body for i in range(50)}
        assert len(macs) == 50


def test_tags_are_inherited_and_overridable():
    with Emulator(fleet_profile()) as imds:
        web = {t["name"]: t["value"] for t in compute_of(imds, "127.1.0.7")["tagsList"]}
        assert web == {"costCenter": "42", "owner": "app-team", "env": "prod", "tier": "web"}
        db = {t["name"]: t["value"] for t in compute_of(imds, "127.0.0.2")["tagsList"]}
        assert db == {"costCenter": "42", "owner": "app-team", "env": "prod", "role": "db"}
        jump = {t["name"]: t["value"] for t in compute_of(imds, "127.0.0.1")["tagsList"]}
        assert jump["role"] == "jump" and jump["costCenter"] == "42" and "env" not in jump


def test_unknown_addresses_get_the_first_vm_or_a_refusal_when_strict():
    with Emulator(fleet_profile()) as imds:
        assert compute_of(imds, "127.9.9.9")["name"] == "jump-1"
    with Emulator(fleet_profile(strict=True)) as imds:
        reply = fetch(imds.url, "/metadata/instance/compute?api-version=2021-02-01", source="127.9.9.9")
        assert reply.status == 403
        assert compute_of(imds, "127.1.0.1")["name"] == "web_1"


def test_scale_set_event_reaches_every_member_approved_by_one_started_for_all():
    with Emulator(fleet_profile(capacity=10), clock="manual") as imds:
        members = [f"web_{i}" for i in range(10)]
        reply = fetch(imds.control_url, "/v1/events?vm=web_0", method="POST", metadata=False,
                      headers={"Authorization": f"Bearer {imds.token}"},
                      body=json.dumps({"type": "Reboot", "resources": members}).encode())
        assert reply.status == 201
        event_id = reply.json()["eventId"]
        for i in range(10):
            [event] = fetch(imds.url, SE, source=f"127.1.0.{i}").json()["Events"]
            assert event["EventId"] == event_id and event["Resources"] == members
        assert fetch(imds.url, SE, source="127.0.0.2").json()["Events"] == []  # another set sees nothing
        body = json.dumps({"StartRequests": [{"EventId": event_id}]}).encode()
        assert fetch(imds.url, SE, method="POST", body=body, source="127.1.0.3").status == 200
        statuses = {fetch(imds.url, SE, source=f"127.1.0.{i}").json()["Events"][0]["EventStatus"] for i in range(10)}
        assert statuses == {"Started"}


def test_availability_set_members_share_events():
    with Emulator(fleet_profile(), clock="manual") as imds:
        fetch(imds.control_url, "/v1/events?vm=db-1", method="POST", metadata=False,
              headers={"Authorization": f"Bearer {imds.token}"},
              body=json.dumps({"type": "Freeze", "resources": ["db-1", "db-2"]}).encode())
        assert len(fetch(imds.url, SE, source="127.0.0.3").json()["Events"]) == 1


def test_update_domain_walk():
    with Emulator(fleet_profile(capacity=10), clock="manual") as imds:
        auth = {"Authorization": f"Bearer {imds.token}"}
        reply = fetch(imds.control_url, "/v1/fleet/walk", method="POST", metadata=False, headers=auth,
                      body=json.dumps({"set": "web", "type": "Reboot", "gap": 3600}).encode())
        [first] = reply.json()["events"]
        assert first["resources"] == ["web_0", "web_5"]
        fetch(imds.control_url, "/v1/clock", method="POST", metadata=False, headers=auth,
              body=json.dumps({"advance": 3600}).encode())
        doc = fetch(imds.url, SE, source="127.1.0.1").json()
        assert [e["Resources"] for e in doc["Events"]][-1] == ["web_1", "web_6"]


def tag_web_4_alone(imds: Emulator) -> None:
    """Change web_4's tags through the control plane; once it reboots (a scale-set instance shows changed tags
    then), its address is answered with them and its neighbour's is not."""
    auth = {"Authorization": f"Bearer {imds.token}"}
    reply = fetch(imds.control_url, "/v1/tags?vm=web_4", method="PUT", metadata=False, headers=auth,
                  body=json.dumps({"only": "me"}).encode())
    assert reply.json() == {"tags": "only:me"}
    imds.control.reboot("web_4")
    assert compute_of(imds, "127.1.0.4")["tags"] == "only:me"
    assert compute_of(imds, "127.1.0.5")["tags"] != "only:me"


def test_per_vm_control_and_rate_limits():
    with Emulator(fleet_profile(), rate_limit=5) as imds:
        tag_web_4_alone(imds)
        url = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
        statuses = [fetch(imds.url, url, source="127.1.0.9").status for _ in range(7)]
        assert 429 in statuses and fetch(imds.url, url, source="127.1.0.8").status == 200


def test_a_member_let_go_and_changed_is_answered_as_changed_to_the_address_that_called_before(monkeypatch):
    """Past MAX_LIVE unchanged members the oldest is let go and made anew when next used: an address that was
    answered as the old one is answered as the new one, with its change."""
    from azimds.emulator.world import fleet

    monkeypatch.setattr(fleet, "MAX_LIVE", 2)
    with Emulator(fleet_profile(), rate_limit=0) as imds:
        assert compute_of(imds, "127.1.0.4")["tags"] != "only:me"
        for index in (5, 6, 7):  # web_4 is let go
            compute_of(imds, f"127.1.0.{index}")
        tag_web_4_alone(imds)


def test_a_hundred_thousand_vms_start_at_once():
    started = time.monotonic()
    with Emulator(fleet_profile(capacity=100_000, subnet="10.0.0.0/14"), rate_limit=0) as imds:
        assert time.monotonic() - started < 15
        c = fetch(imds.url, "/metadata/instance/compute?api-version=2021-02-01", source="127.2.134.159").json()
        index = 65536 + 134 * 256 + 159  # 127.2.134.159 is that far past 127.1.0.0
        assert c["name"] == f"web_{index}" and c["platformFaultDomain"] == str(index % 5)


@pytest.mark.parametrize("fleet, where, problem", [
    ({"scaleSets": [{"name": "web", "capacity": 10, "addresses": "nope"}]}, "fleet.scaleSets[0].addresses",
     "not an IPv4"),
    ({"scaleSets": [{"name": "web", "capacity": 300, "addresses": "127.1.0.0", "subnet": "10.0.0.0/24"}]},
     "fleet.scaleSets[0].subnet", "room for 251"),
    ({"vms": [{"addresses": ["127.1.0.5"], "compute": {"name": "x"}}],
      "scaleSets": [{"name": "web", "capacity": 10, "addresses": "127.1.0.0"}]}, "fleet.scaleSets[0]", "overlap"),
    ({"vms": [{"addresses": ["127.0.0.2"], "compute": {"name": "x", "vmSize": ["big"]}}]},
     "fleet.vms[0].compute.vmSize", "valid string"),
    ({"vms": [{"addresses": ["127.0.0.2"]}]}, "fleet.vms[0].compute.name", "own name"),
    ({"colour": "red"}, "fleet.colour", "unknown field"),
])
def test_bad_fleets_are_named(fleet, where, problem):
    with pytest.raises(profile.ProfileError) as info:
        profile.from_tree({"compute": {"name": "a"}, "fleet": fleet}, "fleet.yaml")
    assert where in str(info.value) and problem in str(info.value), str(info.value)
