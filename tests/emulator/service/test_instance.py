"""The request rules and responses of /metadata/instance, loadbalancer and versions, over a real socket."""

from __future__ import annotations

import base64
import email.utils
import json

import pytest

from azimds import Emulator, azure
from azimds.emulator.model import catalog
from tests.support import fetch

NEWEST = "2025-04-07"
VERSION_ERROR = ('{"error":"Bad request. api-version is invalid or was not specified in the request. For more '
                 'information refer to aka.ms/azureimds","newest-versions":["2025-04-07","2024-07-17","2024-03-15"]}')


def assert_compact_sorted(body: bytes):
    value = json.loads(body)
    assert body == json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    assert not body.endswith(b"\n")


def test_full_document_headers_and_form(shared_vm):
    reply = fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    assert reply.headers["server"] == "IMDS/150.870.65.1253"
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert email.utils.parsedate_to_datetime(reply.headers["date"]).tzinfo is not None
    assert_compact_sorted(reply.body)
    doc = reply.json()
    assert set(doc) == {"compute", "network"}
    assert doc["compute"]["physicalZone"] == "" and "extended" not in doc


@pytest.mark.parametrize("version", ["2017-04-02", "2017-08-01", "2018-02-01", "2019-03-11", "2021-02-01",
                                     "2021-12-13", NEWEST])
def test_fields_appear_only_from_their_version(shared_vm, version):
    compute = fetch(shared_vm.url, f"/metadata/instance/compute?api-version={version}").json()
    expected = {k for k, n in catalog.instance_schema().children["compute"].children.items() if n.since <= version}
    assert set(compute) == expected


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "tRuE"])
def test_metadata_header_value_is_case_insensitive(shared_vm, value):
    assert fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}", metadata=False,
                 headers={"Metadata": value}).status == 200


@pytest.mark.parametrize("headers", [{}, {"Metadata": "false"}, {"Metadata": "yes"}, {"Metadata": ""}])
def test_metadata_header_required(shared_vm, headers):
    reply = fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}", metadata=False, headers=headers)
    assert reply.status == 400
    assert reply.body == b'{ "error": "Bad request: . Required metadata header not specified" }'


def test_header_is_checked_before_api_version(shared_vm):
    assert b"metadata header" in fetch(shared_vm.url, "/metadata/instance", metadata=False).body


def test_x_forwarded_for_rejected(shared_vm):
    reply = fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}", headers={"X-Forwarded-For": "10.0.0.1"})
    assert reply.status == 400 and b"X-Forwarded-For" in reply.body


@pytest.mark.parametrize("query", ["", "?api-version=", "?api-version=2017-07-01", "?api-version=latest",
                                   "?format=json", "?API-VERSION=2021-02-01"])
def test_missing_or_unknown_version_gets_the_real_400(shared_vm, query):
    reply = fetch(shared_vm.url, f"/metadata/instance{query}")
    assert (reply.status, reply.body.decode()) == (400, VERSION_ERROR)


def test_duplicate_query_parameters_rejected(shared_vm):
    reply = fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}&api-version={NEWEST}")
    assert reply.status == 400 and b"Duplicate" in reply.body
    assert fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}&format=json&format=text").status == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_only_get(shared_vm, method):
    reply = fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}", method=method)
    assert reply.status == 405
    assert reply.headers["allow"] == "GET"


@pytest.mark.parametrize("path", ["/", "/metadata?api-version=2021-02-01", "/metadata/identity", "/metadata/nothing",
                                  "/Metadata/instance", "/metadata/Instance?api-version=2021-02-01"])
def test_unknown_paths_404(shared_vm, path):
    reply = fetch(shared_vm.url, path)
    assert (reply.status, reply.body) == (404, b'{"error":"Not Found"}')


@pytest.mark.parametrize("path", ["compute/vmid", "compute/vmId/x", "network/interface/1",
                                  "network/interface/00", "compute//vmId"])
def test_unknown_keys_404(shared_vm, path):
    reply = fetch(shared_vm.url, f"/metadata/instance/{path}?api-version={NEWEST}&format=text")
    assert (reply.status, reply.body) == (404, b'{ "error": "Not found" }')


def test_field_newer_than_version_is_not_found(shared_vm):
    assert fetch(shared_vm.url, "/metadata/instance/compute/userData?api-version=2020-12-01&format=text").status == 404
    assert fetch(shared_vm.url, "/metadata/instance/compute/userData?api-version=2021-01-01&format=text").status == 200


def test_leaves_need_format_text(shared_vm):
    for query in ("", "&format=json"):
        reply = fetch(shared_vm.url, f"/metadata/instance/compute/vmId?api-version={NEWEST}{query}")
        assert (reply.status, reply.body) == (400, b'{ "error": "Bad request" }')
    reply = fetch(shared_vm.url, f"/metadata/instance/compute/vmId?api-version={NEWEST}&format=text")
    assert reply.status == 200 and reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.body == shared_vm.vm.instance["compute"]["vmId"].encode()


def test_text_listings(shared_vm):
    root = fetch(shared_vm.url, "/metadata/instance?api-version=2017-04-02&format=text")
    assert root.body == b"compute/\nnetwork/"
    net = fetch(shared_vm.url, f"/metadata/instance/network/interface?api-version={NEWEST}&format=text")
    assert net.body == b"0/"
    ip = fetch(shared_vm.url,
               f"/metadata/instance/network/interface/0/ipv4/ipAddress/0?api-version={NEWEST}&format=text")
    assert ip.body == b"privateIpAddress\npublicIpAddress"
    compute = fetch(shared_vm.url, "/metadata/instance/compute?api-version=2017-08-01&format=text").body.decode()
    assert compute.split("\n") == sorted(compute.split("\n")) and "tags" in compute.split("\n")


def test_route_filtering_json_subtrees_and_arrays(shared_vm):
    doc = fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}").json()
    interface = fetch(shared_vm.url, f"/metadata/instance/network/interface?api-version={NEWEST}")
    assert interface.json() == doc["network"]["interface"]
    assert_compact_sorted(interface.body)
    disk = fetch(shared_vm.url, f"/metadata/instance/compute/storageProfile/dataDisks/0?api-version={NEWEST}").json()
    assert disk == doc["compute"]["storageProfile"]["dataDisks"][0]


def test_trailing_slash_is_ignored(shared_vm):
    a = fetch(shared_vm.url, f"/metadata/instance/?api-version={NEWEST}")
    b = fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}")
    assert a.status == 200 and a.body == b.body


def test_percent_encoded_query(shared_vm):
    reply = fetch(shared_vm.url, "/metadata/instance/compute/name?api%2Dversion=2021%2D02%2D01&format=%74ext")
    assert reply.body == b"web-01"


def test_extended_adds_pps_type(shared_vm):
    doc = fetch(shared_vm.url, "/metadata/instance?api-version=2021-08-01&extended=true").json()
    assert doc["extended"] == {"compute": {"ppsType": "None"}}
    leaf = fetch(shared_vm.url,
                 "/metadata/instance/extended/compute/ppsType?api-version=2021-08-01&extended=true&format=text")
    assert leaf.body == b"None"
    assert fetch(shared_vm.url, "/metadata/instance/extended?api-version=2021-08-01").status == 404
    assert fetch(shared_vm.url, "/metadata/instance?api-version=2021-08-01&extended=maybe").status == 400


def test_user_data_is_base64(shared_vm):
    reply = fetch(shared_vm.url, "/metadata/instance/compute/userData?api-version=2021-01-01&format=text")
    assert base64.b64decode(reply.body).startswith(b"#!/bin/sh")


def test_bad_format_value(shared_vm):
    assert fetch(shared_vm.url, f"/metadata/instance?api-version={NEWEST}&format=xml").status == 400


def test_loadbalancer(shared_vm):
    reply = fetch(shared_vm.url, "/metadata/loadbalancer?api-version=2020-10-01")
    assert reply.status == 200
    lb = reply.json()["loadbalancer"]
    # compact, in the service's own order (not sorted): cloud-provider-azure #535
    assert reply.body == json.dumps({"loadbalancer": lb}, separators=(",", ":")).encode()
    assert list(lb) == ["publicIpAddresses", "inboundRules", "outboundRules"]
    assert list(lb["inboundRules"][0]) == ["frontendIpAddress", "protocol", "frontendPort", "backendPort",
                                           "privateIpAddress"]
    assert lb["inboundRules"][0]["frontendPort"] == 80 and lb["inboundRules"][0]["backendPort"] == 8080
    assert set(lb) == {"inboundRules", "outboundRules", "publicIpAddresses"}
    old = fetch(shared_vm.url, "/metadata/loadbalancer?api-version=2020-09-01")
    assert old.status == 400 and b'"newest-versions"' in old.body


def test_loadbalancer_absent_gets_the_real_404():
    with Emulator(profile={"compute": {"name": "solo"}}) as imds:
        reply = fetch(imds.url, "/metadata/loadbalancer?api-version=2021-12-13")
    assert reply.status == 404 and b"No load balancer metadata is found" in reply.body


def test_versions_endpoint(shared_vm):
    reply = fetch(shared_vm.url, "/metadata/versions")
    assert reply.json() == {"apiVersions": list(azure.INSTANCE_VERSIONS[1:])}
    for version in reply.json()["apiVersions"]:  # what is listed is what instance answers, and nothing else
        assert fetch(shared_vm.url, f"/metadata/instance?api-version={version}").status == 200
    assert fetch(shared_vm.url, "/metadata/instance?api-version=2017-03-01").status == 400
    assert fetch(shared_vm.url, "/metadata/versions", metadata=False).status == 400


def test_newest_version_cuts_the_service():
    with Emulator(newest_version="2019-06-01") as imds:
        reply = fetch(imds.url, "/metadata/instance?api-version=2021-02-01")
        assert reply.status == 400
        assert reply.json()["newest-versions"] == ["2019-06-01", "2019-04-30", "2019-03-11"]
        assert fetch(imds.url, "/metadata/instance?api-version=2019-06-01").status == 200
        assert fetch(imds.url, "/metadata/versions").json()["apiVersions"][-1] == "2019-06-01"


def test_rate_limit_per_source_address():
    with Emulator(rate_limit=5) as imds:
        url = f"/metadata/instance/compute/name?api-version={NEWEST}&format=text"
        statuses = [fetch(imds.url, url, source="127.0.0.2").status for _ in range(8)]
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        throttled = fetch(imds.url, url, source="127.0.0.2")
        assert throttled.status == 429 and throttled.body == b'{ "error": "Too many requests" }'
        assert int(throttled.headers["retry-after"]) >= 1
        assert fetch(imds.url, url, source="127.0.0.3").status == 200  # another caller is not limited
        assert [e.status for e in imds.journal].count(429) >= 2


def test_rate_limit_zero_turns_it_off():
    with Emulator(rate_limit=0) as imds:
        url = f"/metadata/instance/compute/name?api-version={NEWEST}&format=text"
        assert {fetch(imds.url, url).status for _ in range(30)} == {200}


def test_cache_dropped_when_the_vm_changes():
    from azimds.emulator.model import profile

    with Emulator(rate_limit=0) as imds:
        url = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
        assert fetch(imds.url, url).body == b"web-01"
        imds.vm.replace(profile.from_tree({"compute": {"name": "renamed"}}, "<t>").instance, None)
        assert fetch(imds.url, url).body == b"renamed"
