"""Profiles: captured documents load as they are, defaults are realistic and consistent, bad files stop."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from azimds.emulator.model import profile
from azimds.errors import ProfileError
from tests.support import AZIMDS, DATA

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def all_leaves(value, path=""):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from all_leaves(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from all_leaves(child, f"{path}[{index}]")
    else:
        yield path, value


def test_embedded_default_is_realistic_and_consistent():
    doc = profile.load_default().instance
    c = doc["compute"]
    assert GUID.match(c["vmId"])
    assert c["resourceId"] == (f"/subscriptions/{c['subscriptionId']}/resourceGroups/{c['resourceGroupName']}"
                               f"/providers/Microsoft.Compute/virtualMachines/{c['name']}")
    assert c["tags"] and c["userData"] and c["storageProfile"]["dataDisks"]
    assert c["tags"] == ";".join(f"{t['name']}:{t['value']}" for t in c["tagsList"])
    nic = doc["network"]["interface"][0]
    assert re.fullmatch(r"000D3A[0-9A-F]{6}", nic["macAddress"])
    # behind a Standard load balancer: the NIC answers "" and the public IP is the load balancer's
    assert nic["ipv4"]["ipAddress"][0]["publicIpAddress"] == ""
    assert profile.load_default().loadbalancer["publicIpAddresses"][0]["frontendIpAddress"]
    assert c["offer"] == c["storageProfile"]["imageReference"]["offer"]
    assert c["osProfile"]["computerName"] == c["name"]
    for path, value in all_leaves(doc):
        assert isinstance(value, str), f"{path} is {type(value).__name__}, IMDS primitives are strings"


def test_minimal_profile_gets_defaults_derived_from_what_it_says():
    doc = profile.from_tree({"compute": {"name": "db1", "subscriptionId": "11111111-2222-4333-8444-555555555555",
                                         "resourceGroupName": "data"}}, "<t>").instance
    c = doc["compute"]
    assert c["resourceId"].endswith("/resourceGroups/data/providers/Microsoft.Compute/virtualMachines/db1")
    assert c["storageProfile"]["osDisk"]["managedDisk"]["id"].startswith(
        "/subscriptions/11111111-2222-4333-8444-555555555555/resourceGroups/data/providers/Microsoft.Compute/disks/db1_OsDisk_1_")
    assert c["tags"] == "" and c["tagsList"] == [] and c["userData"] == "" and c["publicKeys"] == []
    assert c["storageProfile"]["dataDisks"] == []
    assert doc["network"]["interface"][0]["ipv6"] == {"ipAddress": []}
    # Deterministic: the same profile gives the same identifiers.
    again = profile.from_tree({"compute": {"name": "db1", "subscriptionId": "11111111-2222-4333-8444-555555555555",
                                           "resourceGroupName": "data"}}, "<t>").instance
    assert again == doc
    other = profile.from_tree({"compute": {"name": "db2"}}, "<t>").instance
    assert other["compute"]["vmId"] != c["vmId"]
    assert other["network"]["interface"][0]["macAddress"] != doc["network"]["interface"][0]["macAddress"]


def test_yaml_keeps_scalars_as_written(tmp_path):
    path = tmp_path / "vm.yaml"
    path.write_text("compute:\n  sku: 7.10\n  platformFaultDomain: 0\n  zone: 01\n  offer: no\n")
    c = profile.load(path).instance["compute"]
    assert (c["sku"], c["platformFaultDomain"], c["zone"], c["offer"]) == ("7.10", "0", "01", "no")


def test_json_numbers_and_booleans_become_strings():
    c = profile.from_tree({"compute": {"platformFaultDomain": 2, "securityProfile": {"secureBootEnabled": True}}},
                          "<t>").instance["compute"]
    assert c["platformFaultDomain"] == "2" and c["securityProfile"]["secureBootEnabled"] == "true"


def test_tags_mapping_keeps_colons_and_fills_both_forms():
    c = profile.from_tree({"compute": {"tags": {"url": "http://x:8080", "empty": ""}}}, "<t>").instance["compute"]
    assert c["tags"] == "url:http://x:8080;empty:"
    assert c["tagsList"] == [{"name": "url", "value": "http://x:8080"}, {"name": "empty", "value": ""}]


def test_mac_addresses_are_normalised():
    doc = profile.from_tree({"network": {"interface": [{"macAddress": "00:0d:3a:12:34:ab"}]}}, "<t>").instance
    assert doc["network"]["interface"][0]["macAddress"] == "000D3A1234AB"


@pytest.mark.parametrize("content, where, problem", [
    ('{"compute": {"vmSize": ["a"]}}', "compute.vmSize", "valid string"),
    ('{"compute": {"nmae": "x"}}', "compute.nmae", "unknown field"),
    ('{"network": {"interface": {"macAddress": "x"}}}', "network.interface", "valid list"),
    ('{"network": {"interface": [{"macAddress": "zz"}]}}', "network.interface[0].macAddress", "not a MAC"),
    ('{"compute": {"storageProfile": {"dataDisks": [{"lun": "0", "size": "1"}]}}}',
     "compute.storageProfile.dataDisks[0].size", "unknown field"),
    ('{"loadbalancer": {"inboundRules": [{"frontendPort": 70000}]}}', "loadbalancer.inboundRules[0].frontendPort",
     "less than or equal to 65535"),
    ('{"compute": {"name": "x",}}', "line 1 column", "malformed JSON"),
    ("compute:\n  name: [x\n", "line", "malformed YAML"),
    ("[1, 2]", "", "not a list"),
    ('"just a string"', "", "not a string"),
])
def test_bad_profiles_name_file_path_and_problem(tmp_path, content, where, problem):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ProfileError) as info:
        profile.load(path)
    message = str(info.value)
    assert str(path) in message and where in message and problem in message, message


@pytest.mark.parametrize("content, where, problem", [
    ('{"azimds": {"rateLimit": -1}}', "azimds.rateLimit", "must be 0 (off) or more"),
    ('{"azimds": {"newestVersion": "2030-01-01"}}', "azimds.newestVersion", "2025-04-07"),
    ('{"azimds": {"faults": [{"path": "/x", "status": 200}]}}', "azimds.faults[0].status",
     "greater than or equal to 400"),
    ('{"azimds": {"rateLimt": 3}}', "azimds.rateLimt", "unknown field"),
])
def test_bad_emulator_settings_name_file_path_and_problem(tmp_path, content, where, problem):
    from azimds.emulator.app import configure

    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ProfileError) as info:
        configure(flags={"profile": str(path)})
    message = str(info.value)
    assert f"{path}: {where}: " in message and problem in message, message


def test_missing_file_is_a_profile_error(tmp_path):
    with pytest.raises(ProfileError, match="cannot read"):
        profile.load(tmp_path / "nope.yaml")


def test_serve_refuses_a_bad_profile_with_exit_2_and_starts_nothing(tmp_path):
    path = tmp_path / "vm.json"
    path.write_text('{"compute": {"vmId": {"nested": "no"}}}')
    run = subprocess.run([*AZIMDS, "serve", "--port", "0", "--profile", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 2
    assert run.stdout == ""  # never printed the ready line
    assert f"{path}: compute.vmId:" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("args, message", [
    (["--newest-version", "2099-01-01"], "not an instance api-version"),
    (["--rate-limit", "-3"], "must be 0 (off) or more"),
    (["--port", "70000"], "port must be 0-65535"),
    (["--fault", "/x=status:abc"], "--fault: status: must be a number, not 'abc'"),
])
def test_serve_rejects_bad_flags(args, message):
    run = subprocess.run([*AZIMDS, "serve", "--port", "0", *args], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and message in run.stderr and run.stdout == ""


def test_pretty_capture_loads(tmp_path):
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(json.loads((DATA / "WALinuxAgent_tests_data_imds_valid_2018-02-01.json").read_text()),
                               indent=4))
    assert profile.load(path).instance["compute"]["vmId"] == "e7fdbfc4-2deb-4a4e-8615-ea6aaf50162e"
