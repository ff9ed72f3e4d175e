"""The control plane: auth, metadata nodes, tags, events over HTTP, clock, faults, journal, metrics."""

from __future__ import annotations

import json

import pytest

from azimds import Emulator
from tests.support import control as ctl
from tests.support import fetch

SE = "/metadata/scheduledevents?api-version=2020-07-01"


@pytest.fixture
def emu():
    with Emulator(clock="manual") as imds:
        yield imds


@pytest.mark.parametrize("token", ["", "wrong"])
def test_no_or_wrong_token_is_401_and_changes_nothing(emu, token):
    before = fetch(emu.url, "/metadata/instance?api-version=2021-02-01").body
    for method, path, body in [("PUT", "/v1/metadata/compute/name", "x"), ("POST", "/v1/events", {"type": "Reboot"}),
                               ("POST", "/v1/clock", {"advance": 10}), ("POST", "/v1/reset", None)]:
        reply = ctl(emu, method, path, body, token=token)
        assert reply.status == 401 and reply.headers["www-authenticate"].startswith("Bearer")
    assert fetch(emu.url, "/metadata/instance?api-version=2021-02-01").body == before
    assert fetch(emu.url, SE).json() == {"DocumentIncarnation": 1, "Events": []}


def test_read_and_replace_nodes(emu):
    assert ctl(emu, "GET", "/v1/metadata/compute/name").json() == "web-01"
    assert ctl(emu, "PUT", "/v1/metadata/compute/name", "renamed").json() == "renamed"
    assert fetch(emu.url, "/metadata/instance/compute/name?api-version=2021-02-01&format=text").body == b"renamed"
    reply = ctl(emu, "PUT", "/v1/metadata/network/interface/0/ipv4/ipAddress/0/privateIpAddress", "10.0.0.9")
    assert reply.status == 200
    assert fetch(emu.url, "/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress"
                          "?api-version=2021-02-01&format=text").body == b"10.0.0.9"


def test_a_bad_change_is_refused_whole(emu):
    before = ctl(emu, "GET", "/v1/metadata").json()
    reply = ctl(emu, "PUT", "/v1/metadata/compute/vmSize", {"not": "a string"})
    assert reply.status == 400 and "compute.vmSize" in reply.json()["problems"][0]
    reply = ctl(emu, "PATCH", "/v1/metadata", {"compute": {"name": "ok", "bogus": "x"}})
    assert reply.status == 400 and "unknown field" in reply.json()["problems"][0]
    assert ctl(emu, "GET", "/v1/metadata").json() == before


def test_patch_and_delete(emu):
    ctl(emu, "PATCH", "/v1/metadata/compute", {"zone": "3", "userData": ""})
    c = fetch(emu.url, "/metadata/instance/compute?api-version=2021-02-01").json()
    assert c["zone"] == "3" and c["userData"] == ""
    ctl(emu, "PATCH", "/v1/metadata/compute", {"userData": None})  # null undoes the change: the profile's again
    c = fetch(emu.url, "/metadata/instance/compute?api-version=2021-02-01").json()
    assert c["zone"] == "3" and c["userData"].startswith("IyEv")
    assert ctl(emu, "DELETE", "/v1/metadata/compute/storageProfile/dataDisks/0").status == 204
    assert fetch(emu.url, "/metadata/instance/compute/storageProfile/dataDisks?api-version=2021-02-01").json() == []
    assert ctl(emu, "GET", "/v1/metadata/compute/nothing").status == 404


def test_set_tags_updates_both_forms(emu):
    reply = ctl(emu, "PUT", "/v1/tags", {"env": "test", "url": "http://a:1"})
    assert reply.json() == {"tags": "env:test;url:http://a:1"}
    c = fetch(emu.url, "/metadata/instance/compute?api-version=2021-02-01").json()
    assert c["tagsList"] == [{"name": "env", "value": "test"}, {"name": "url", "value": "http://a:1"}]
    ctl(emu, "PUT", "/v1/metadata/compute/tags", "a:1")
    c = fetch(emu.url, "/metadata/instance/compute?api-version=2021-02-01").json()
    assert c["tagsList"] == [{"name": "a", "value": "1"}]


def test_freeze_lifecycle_over_http(emu):
    assert fetch(emu.url, SE).json() == {"DocumentIncarnation": 1, "Events": []}
    event = ctl(emu, "POST", "/v1/events", {"type": "Freeze"}).json()
    doc = fetch(emu.url, SE).json()
    assert doc["DocumentIncarnation"] == 2 and doc["Events"][0]["EventId"] == event["eventId"]
    assert doc["Events"][0]["Resources"] == ["web-01"]
    ctl(emu, "POST", "/v1/clock", {"advance": 900})
    doc = fetch(emu.url, SE).json()
    event = doc["Events"][0]
    assert (doc["DocumentIncarnation"], event["EventStatus"], event["NotBefore"]) == (3, "Started", "")
    ctl(emu, "POST", "/v1/clock", {"advance": 300})  # a Freeze stays Started 5 minutes
    assert fetch(emu.url, SE).json() == {"DocumentIncarnation": 4, "Events": []}


def test_approval_by_post_starts_the_event(emu):
    event = ctl(emu, "POST", "/v1/events", {"type": "Reboot", "source": "User"}).json()
    body = json.dumps({"StartRequests": [{"EventId": event["eventId"]}]}).encode()
    reply = fetch(emu.url, SE, method="POST", body=body)
    assert (reply.status, reply.body) == (200, b"")
    assert fetch(emu.url, SE).json()["Events"][0]["EventStatus"] == "Started"
    assert fetch(emu.url, SE, method="POST", body=body).status == 200  # approved before: still 200


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"StartRequests":[]}', b'{"StartRequests":[{"Id":"x"}]}',
                                  b'{"StartRequests":"x"}'])
def test_malformed_approvals_are_400(emu, body):
    reply = fetch(emu.url, SE, method="POST", body=body)
    assert reply.status == 400 and b"malformed" in reply.body


def test_unknown_event_id_is_400(emu):
    body = json.dumps({"StartRequests": [{"EventId": "00000000-0000-0000-0000-000000000000"}]}).encode()
    reply = fetch(emu.url, SE, method="POST", body=body)
    assert reply.status == 400 and b"not a current event" in reply.body


def test_events_versions(emu):
    assert fetch(emu.url, "/metadata/scheduledevents?api-version=2021-12-13").body == b'{"error": "Not found"}'
    reply = fetch(emu.url, "/metadata/scheduledevents")
    assert reply.status == 400 and reply.json()["newest-versions"] == ["2020-07-01", "2019-08-01", "2019-04-01"]
    assert fetch(emu.url, "/metadata/scheduledevents?api-version=2017-08-01").status == 200
    assert fetch(emu.url, SE, method="PUT").headers["allow"] == "GET, POST"
    assert fetch(emu.url, SE, metadata=False).status == 400


def test_event_actions_and_errors(emu):
    event = ctl(emu, "POST", "/v1/events", {"type": "Redeploy", "notice": 60}).json()
    assert ctl(emu, "POST", f"/v1/events/{event['eventId']}/start").json()["events"][0]["status"] == "Started"
    assert ctl(emu, "POST", f"/v1/events/{event['eventId']}/cancel").status == 409
    assert ctl(emu, "POST", f"/v1/events/{event['eventId']}/complete").json()["events"] == []
    assert ctl(emu, "POST", "/v1/events/nope/start").status == 404
    assert ctl(emu, "POST", "/v1/events", {"type": "Nap"}).status == 400
    assert ctl(emu, "POST", "/v1/events", {"type": "Reboot", "notice": "soon"}).status == 400
    assert ctl(emu, "POST", "/v1/events", {"type": "Reboot", "extra": 1}).status == 400


def test_clock_control(emu):
    now = ctl(emu, "GET", "/v1/clock").json()
    assert now["mode"] == "manual"
    later = ctl(emu, "POST", "/v1/clock", {"advance": 3600}).json()
    assert later["now"] == pytest.approx(now["now"] + 3600)
    assert ctl(emu, "POST", "/v1/clock", {"advance": -1}).status == 400
    assert ctl(emu, "POST", "/v1/clock", {"speed": -2}).status == 400
    assert ctl(emu, "POST", "/v1/clock", {"speed": 60}).json()["mode"] == "scaled"


def test_faults_and_journal(emu):
    url = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
    assert ctl(emu, "POST", "/v1/faults", {"spec": "/metadata/instance/*=status:503,first:1"}).status == 201
    assert fetch(emu.url, url).status == 503
    assert fetch(emu.url, url).status == 200
    assert ctl(emu, "POST", "/v1/faults", {"path": "/x", "status": "nope"}).status == 400
    entries = ctl(emu, "GET", "/v1/journal?path=/metadata/instance/*").json()["entries"]
    assert [e["status"] for e in entries][-2:] == [503, 200]
    assert ctl(emu, "GET", "/v1/journal?status=503").json()["entries"][0]["url"] == url
    assert ctl(emu, "DELETE", "/v1/faults").status == 204
    assert ctl(emu, "GET", "/v1/faults").json() == {"faults": []}


def test_metrics(emu):
    fetch(emu.url, "/metadata/instance?api-version=2021-02-01")
    fetch(emu.url, "/metadata/instance")
    text = ctl(emu, "GET", "/metrics").body.decode()
    assert 'azimds_requests_total{endpoint="instance",status="200"}' in text
    assert 'azimds_requests_total{endpoint="instance",status="400"}' in text
    assert "azimds_request_seconds_bucket" in text and 'azimds_events{state="Scheduled"} 0' in text


def test_reset_restores_the_profile(emu):
    ctl(emu, "PUT", "/v1/metadata/compute/name", "changed")
    ctl(emu, "POST", "/v1/events", {"type": "Reboot"})
    assert ctl(emu, "POST", "/v1/reset").status == 200
    assert ctl(emu, "GET", "/v1/metadata/compute/name").json() == "web-01"
    doc = fetch(emu.url, SE).json()
    assert doc["Events"] == [] and doc["DocumentIncarnation"] == 3  # never falls


def test_unknown_routes_and_methods(emu):
    assert ctl(emu, "GET", "/v1/nothing").status == 404
    reply = ctl(emu, "DELETE", "/v1/clock")
    assert reply.status == 405 and "GET" in reply.headers["allow"]
    assert ctl(emu, "GET", "/openapi.json").json()["openapi"].startswith("3.")


def _non_loopback_address() -> str | None:
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_control_plane_stays_on_loopback_when_the_metadata_port_is_public(serve):
    import re
    import socket

    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try the control port from")
    proc = serve("--host", "0.0.0.0", "--control-port", "0", "--control-token", "t")
    control = re.search(r"control plane http://([\d.]+):(\d+)", proc.proc.stderr.readline())
    host, port = control.group(1), int(control.group(2))
    assert host == "127.0.0.1"
    port_metadata = int(proc.url.rsplit(":", 1)[1])
    assert fetch(f"http://{address}:{port_metadata}", "/metadata/instance?api-version=2021-02-01").status == 200
    with pytest.raises(OSError):  # nothing listens there for the control plane
        socket.create_connection((address, port), timeout=2).close()
    before = fetch(proc.url, "/metadata/instance/compute/name?api-version=2021-02-01&format=text").body
    assert before == b"web-01"


def test_control_as_python_calls():
    from azimds.errors import Conflict

    with Emulator(clock="manual") as imds:
        control = imds.control
        assert control.get("compute/name") == "web-01"
        control.set_tags({"env": "test"})
        assert fetch(imds.url, "/metadata/instance/compute/tags?api-version=2021-02-01&format=text").body == b"env:test"
        event = control.schedule("Reboot", notice=60)
        control.advance(60)
        assert fetch(imds.url, SE).json()["Events"][0]["EventStatus"] == "Started"
        with pytest.raises(Conflict):
            control.cancel(event.id)
        control.add_fault("/metadata/instance*=status:500,first:1")
        assert fetch(imds.url, "/metadata/instance?api-version=2021-02-01").status == 500
        control.reset()
        assert control.get("compute/tags") != "env:test"


def test_structured_log_line_per_request(serve):
    proc = serve("--log-format", "json")
    assert "control plane" in proc.proc.stderr.readline()
    assert "dashboard" in proc.proc.stderr.readline()
    fetch(proc.url, "/metadata/instance?api-version=2021-02-01")
    fetch(proc.url, "/metadata/nothing")
    first, second = (json.loads(proc.proc.stderr.readline()) for _ in range(2))
    assert (first["method"], first["url"], first["status"]) == ("GET", "/metadata/instance?api-version=2021-02-01", 200)
    assert second["status"] == 404 and first["peer"] == "127.0.0.1" and first["latency_ms"] >= 0


def test_fleet_lists_a_page_without_making_the_rest():
    profile = {"fleet": {"scaleSets": [{"name": "web", "capacity": 100_000, "addresses": "127.1.0.0"}]}}
    with Emulator(profile) as imds:
        page = ctl(imds, "GET", "/v1/fleet?offset=99999&limit=5").json()
        assert (page["total"], page["offset"]) == (100_001, 99_999)
        assert [(vm["name"], vm["addresses"], vm["faultDomain"]) for vm in page["vms"]] == [
            ("web_99998", ["127.2.134.158"], "3"), ("web_99999", ["127.2.134.159"], "4")]
        assert len(imds.world.vms()) < 10  # only the page's instances were made
        for query in ("limit=0", "limit=1001", "offset=-1", "offset=x", "limit=1e3", "offset=" + "9" * 5000):
            reply = ctl(imds, "GET", "/v1/fleet?" + query)
            assert reply.status == 400 and "whole number" in reply.json()["error"], query
