"""The conformance probes (``azimds.client._conformance``): the table, what a report keeps of each answer, the
pace, and the comparison of a report with fresh answers, over real sockets against in-process emulators.

The report of the embedded default VM is made once for the module (``run``); the tests that need other
answers (a rate limit, another profile, a scheduled event) start emulators of their own.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator

import pytest

from azimds import Emulator, azure
from azimds.client import Client, ImdsUnavailable
from azimds.client import _conformance as conformance
from azimds.client._conformance import (
    NOT_PROBED,
    PROBES,
    RECORDS,
    TOPICS,
    Probe,
    answer_record,
    compare_report,
    conformance_report,
    load_report,
    report_probes,
    run_probes,
    scrub,
    shape_of,
)
from azimds.client.transport import Endpoint
from azimds.emulator.service.choices import CHOICES
from azimds.errors import UsageError
from tests.support import DATA

WALA = DATA / "WALinuxAgent_tests_data_imds_valid_2018-02-01.json"
SAMPLE_EVENTS = DATA / "Azure-Samples_scheduledevents_SampleScheduledEventsDocument_2018.json"
SAMPLE_NO_EVENTS = DATA / "Azure-Samples_scheduledevents_SampleEmptyEventsDocument_2018.json"
BY_ID = {probe.id: probe for probe in PROBES}


class Run:
    """One run of every probe against the default VM: the report, its text, and the emulator's secrets."""

    def __init__(self, imds: Emulator) -> None:
        self.url = imds.url
        self.records = run_probes(Endpoint(imds.url), interval=0)
        self.report = conformance_report(self.records, imds.url, dt.datetime.now(dt.UTC), "test")
        self.text = json.dumps(self.report, sort_keys=True, ensure_ascii=False)
        self.by_id = {record["id"]: record for record in self.records}
        compute = imds.vm.instance["compute"]
        identities = imds.vm.identities
        self.secrets = {
            "subscriptionId": compute["subscriptionId"], "vmId": compute["vmId"], "name": compute["name"],
            "resourceGroupName": compute["resourceGroupName"], "resourceId": compute["resourceId"],
            "tenantId": identities.tenant_id, "userData": compute["userData"],
            "keyData": compute["publicKeys"][0]["keyData"], "privateIp": "10.0.0.4", "publicIp": "20.115.74.12",
            **{f"tag {name}": value for name, value in azure.parse_tags(compute["tags"]).items()},
            **{f"{identity.kind} clientId": identity.client_id for identity in identities.all},
            **{f"{identity.kind} objectId": identity.object_id for identity in identities.all},
        }
        token = Client(imds.url, limiter=None).token()["access_token"]  # the one the probes got: tokens are cached
        self.secrets.update({f"token part {i}": part for i, part in enumerate(token.split("."))})


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    with Emulator() as imds:
        yield Run(imds)


def strip(record: dict) -> dict:
    """A kept answer without the fields that say what was asked."""
    return {key: value for key, value in record.items() if key not in ("id", "topic", "request")}


# -- the table ---------------------------------------------------------------------------------------------

def test_probe_ids_are_unique_stable_names_and_records_known():
    """Ids are the report's keys: unique, lower-case dotted names; every probe keeps its answer a known way."""
    ids = [probe.id for probe in PROBES]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", probe_id) for probe_id in ids), ids
    assert all(probe.record in RECORDS for probe in PROBES)
    assert all(probe.target.startswith("/metadata") for probe in PROBES)


def test_every_choice_is_probed_or_said_why_not():
    """Each topic of choices.CHOICES has a probe or a NOT_PROBED reason (not both); every probe's topic is a
    choice or one of TOPICS, and every TOPICS entry is used: a new choice fails here until it is placed."""
    choices = {choice.topic for choice in CHOICES}
    probed = {probe.topic for probe in PROBES}
    assert sorted(choices - probed - set(NOT_PROBED)) == [], "give these a probe or a NOT_PROBED reason"
    assert sorted(set(NOT_PROBED) - choices) == [], "NOT_PROBED names topics that are no longer choices"
    assert sorted(set(NOT_PROBED) & probed) == [], "probed and said not to be"
    assert sorted(probed - choices - set(TOPICS)) == [], "a probe's topic is neither a choice nor in TOPICS"
    assert sorted(set(TOPICS) - probed) == [], "TOPICS names topics no probe checks"
    assert all(reason.strip() for reason in NOT_PROBED.values())


def test_no_probe_can_change_anything():
    """Only safe methods (GET, HEAD, OPTIONS) and POSTs to /metadata/scheduledevents whose body approves
    nothing: not a StartRequests document at all, or one naming only the nil GUID (Azure's EventIds are random
    version-4 GUIDs: the nil GUID is never one)."""
    assert {probe.method for probe in PROBES} <= {"GET", "HEAD", "OPTIONS", "POST"}
    posts = [probe for probe in PROBES if probe.method == "POST"]
    assert posts and all(probe.body is not None for probe in posts)
    assert all(probe.body is None for probe in PROBES if probe.method != "POST")
    for probe in posts:
        assert probe.target.split("?")[0] == "/metadata/scheduledevents", probe.id
        try:
            doc = json.loads(probe.body)
        except ValueError:
            continue  # malformed: nothing to approve
        ids = [item.get("EventId") for item in doc.get("StartRequests", [])] if isinstance(doc, dict) else []
        assert all(uuid.UUID(event_id).int == 0 for event_id in ids), probe.id
        assert uuid.UUID(conformance.NIL).version is None  # not a version-4 GUID


def test_the_posts_leave_a_scheduled_event_scheduled():
    """Against an emulator with an event waiting, the run's POSTs are refused and the event stays Scheduled."""
    with Emulator() as imds:
        event = imds.control.schedule("Reboot", notice=3600)
        records = run_probes(Endpoint(imds.url), [p for p in PROBES if p.method == "POST"], interval=0)
        doc = Client(imds.url, limiter=None).events()
    assert [record["status"] for record in records] == [400, 400]
    assert [(e["EventId"], e["EventStatus"]) for e in doc["Events"]] == [(event.id, "Scheduled")]


def test_the_table_lists_every_probe_and_every_reason():
    table = conformance.probe_table()
    for probe in PROBES:
        assert re.search(rf"^{re.escape(probe.id)} +{probe.method} {re.escape(probe.target)} ", table, re.M)
    for topic in NOT_PROBED:
        assert f"  {topic}: " in table


# -- a run against the emulator ------------------------------------------------------------------------------

def test_the_report_holds_every_probe_in_order_with_its_request(run):
    """The report's layout: format, version, endpoint, start time, and one entry per probe in table order."""
    report = run.report
    assert set(report) == {"format", "azimds", "endpoint", "started", "probes"}
    assert (report["format"], report["azimds"], report["endpoint"]) == (1, "test", run.url)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["started"])
    assert [record["id"] for record in report["probes"]] == [probe.id for probe in PROBES]
    for record, probe in zip(report["probes"], PROBES, strict=True):
        assert record["topic"] == probe.topic
        assert record["request"] == {"method": probe.method, "target": probe.target,
                                     "headers": dict(probe.headers),
                                     **({"body": probe.body.decode()} if probe.body else {})}
        assert isinstance(record["status"], int) and "failure" not in record, record
        assert set(record["headers"]) <= set(conformance.RECORDED_HEADERS)
        assert record["headers"]["server"] == "IMDS/150.870.65.1253"
    assert load_report(json.dumps(report), "r") == report
    with_password = conformance_report([], "http://user:secret@127.0.0.1:80", dt.datetime.now(dt.UTC), "test")
    assert with_password["endpoint"] == "http://127.0.0.1:80"


def test_error_bodies_are_kept_verbatim(run):
    """A few answers whose kept form would be wrong if the recording were: the exact bodies and headers."""
    newest = list(reversed(azure.INSTANCE_VERSIONS[-3:]))
    no_version = run.by_id["instance.no-api-version"]
    assert no_version["status"] == 400
    assert json.loads(no_version["body"]) == {"error": azure.API_VERSION_ERROR, "newest-versions": newest}
    assert strip(run.by_id["instance.no-metadata-header"]) == {
        "status": 400, "headers": {"content-type": "application/json; charset=utf-8", "server": "IMDS/150.870.65.1253"},
        "body": '{ "error": "Bad request: . Required metadata header not specified" }'}
    assert run.by_id["instance.options"]["headers"]["allow"] == "GET"
    assert run.by_id["scheduledevents.options"]["headers"]["allow"] == "GET, POST"
    assert run.by_id["instance.head"]["body"] == ""
    assert run.by_id["scheduledevents.approve-unknown"]["body"] == (
        '{"error":"Bad request. EventId <guid> is not a current event."}')
    assert json.loads(run.by_id["scheduledevents.no-api-version"]["body"])["newest-versions"] == list(
        reversed(azure.EVENTS_VERSIONS[-3:]))


def test_successful_answers_are_kept_as_shapes(run):
    """200s: the shape (types only), the allowed values, the form; listings by name; JWT and PKCS#7 parts."""
    document = run.by_id["instance.2021-02-01"]
    assert "body" not in document
    assert document["shape"]["compute"]["vmId"] == "string"
    assert document["shape"]["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"] == "string"
    assert document["form"] == {"compact": True, "newline_at_end": False, "sorted_keys": True, "non_ascii": "none"}
    assert run.by_id["versions"]["values"] == {"$.apiVersions": list(azure.INSTANCE_VERSIONS[1:])}
    listing = run.by_id["instance.text-object"]["text"].split("\n")
    assert listing == sorted(listing) and "vmId" in listing and "storageProfile/" in listing
    assert run.by_id["instance.text-array"]["text"] == "0/"
    assert run.by_id["instance.text-leaf"]["text"] == "<value>"
    assert run.by_id["instance.text-leaf"]["headers"]["content-type"] == "text/plain; charset=utf-8"
    token = run.by_id["identity.token"]
    assert token["values"] == {"$.resource": "https://management.azure.com/", "$.token_type": "Bearer"}
    assert set(token["shape"].values()) == {"string"}
    assert token["jwt"]["header"] == {"alg": "RS256", "kid": "string", "typ": "JWT", "x5t": "string"}
    assert {"aud", "exp", "iss", "nbf", "oid", "tid"} <= set(token["jwt"]["claims"])
    attested = run.by_id["attested.nonce"]
    assert attested["values"] == {"$.encoding": "pkcs7"}
    assert attested["signed"]["base64"] and attested["signed"]["nonce_echoed"] is True
    assert sorted(attested["signed"]["shape"]) == list(azure.attested_fields(conformance.AT))
    assert "nonce_echoed" not in run.by_id["attested"]["signed"]  # no nonce sent


def test_the_report_holds_nothing_of_the_vm(run):
    """No id, name, key, address, tag, user data, token (nor any part of it) or signature of the VM: each is
    searched for in the report's text (those of 4 characters or more: the tag value "IT" could be anywhere); the
    only GUID in it is the nil GUID the probes themselves send."""
    found = {what: value for what, value in run.secrets.items() if len(value) > 3 and value in run.text}
    assert found == {}
    guids = set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", run.text, re.I))
    assert guids == {conformance.NIL}
    assert not re.search(r"[A-Za-z0-9+/_-]{80,}", run.text)  # no token, signature or certificate


def test_a_second_run_matches_the_first(run):
    """Self-consistency: the same emulator answers the same probes the same way (tokens and attested
    documents, which change, are kept only as shapes)."""
    with Emulator() as imds:
        again = run_probes(Endpoint(imds.url), interval=0)
    assert compare_report(run.report, again) == []


def test_each_doctored_field_is_one_difference(run):
    """A status, a body, a shape key, a header and an allowed value changed in the report: exactly those."""
    doc = json.loads(json.dumps(run.report))
    entries = {entry["id"]: entry for entry in doc["probes"]}
    entries["instance.x-forwarded-for"]["status"] = 403
    entries["instance.duplicate-parameter"]["body"] = '{ "error": "Bad request: . Duplicated query parameter" }'
    del entries["instance.2021-02-01"]["shape"]["compute"]["vmId"]
    entries["instance.options"]["headers"]["allow"] = "GET, HEAD"
    entries["identity.token"]["values"]["$.token_type"] = "bearer"
    assert compare_report(doc, run.records) == [
        "instance.2021-02-01: shape $.compute.vmId: missing in report, \"string\" here",
        "instance.x-forwarded-for: status 403 in report, 400 here",
        "instance.duplicate-parameter: body differs: at character 37: "
        "'…or\": \"Bad request: . Duplicated query parameter\" }' in report, "
        "'…or\": \"Bad request: . Duplicate query parameter\" }' here",
        "instance.options: headers allow: \"GET, HEAD\" in report, \"GET\" here",
        "identity.token: values $.token_type: \"bearer\" in report, \"Bearer\" here",
    ]


# -- the real captures ---------------------------------------------------------------------------------------

def capture_entry() -> dict:
    """The report entry a real VM gave for instance.2018-02-01, made from the WALinuxAgent capture: a shape."""
    probe = BY_ID["instance.2018-02-01"]
    return {"id": probe.id, "topic": probe.topic, "request": probe.request(), "status": 200,
            "shape": shape_of(json.loads(WALA.read_text()))}


def test_the_real_2018_document_matches_an_emulator_serving_it():
    """The shape of the captured 2018-02-01 document against an emulator whose profile is that capture: the
    same. The default VM at 2018-02-01 has that shape too; a capture whose leaf had another type would not."""
    doc = {"format": 1, "probes": [capture_entry()]}
    probes, unknown = report_probes(doc)
    assert ([p.id for p in probes], unknown) == (["instance.2018-02-01"], [])
    with Emulator(profile=WALA) as imds:
        assert compare_report(doc, run_probes(Endpoint(imds.url), probes, interval=0)) == []
    with Emulator() as imds:
        here = run_probes(Endpoint(imds.url), probes, interval=0)
    assert compare_report(doc, here) == []
    doc["probes"][0]["shape"]["compute"]["platformFaultDomain"] = "number"
    doc["probes"][0]["shape"]["network"]["interface"][0]["ipv6"]["ipAddress"] = [{"privateIpAddress": "string"}]
    assert compare_report(doc, here) == [
        'instance.2018-02-01: shape $.compute.platformFaultDomain: "number" in report, "string" here']


def test_microsoft_s_sample_events_documents_match_the_emulator_at_2017_03_01():
    """The 2018-schema sample documents (with events, and without) as report entries of the 2017-03-01 probe:
    the emulator's document has their shape, with an event scheduled and with none. Against the 2020-07-01 probe
    the differences are exactly the three fields added since 2018 (Description, EventSource, DurationInSeconds)."""
    probe = BY_ID["scheduledevents.2017-03-01"]

    def doc(sample):
        return {"format": 1, "probes": [{"id": probe.id, "request": probe.request(), "status": 200,
                                         "shape": shape_of(json.loads(sample.read_text()))}]}

    with Emulator() as imds:
        assert compare_report(doc(SAMPLE_NO_EVENTS), run_probes(Endpoint(imds.url), [probe], interval=0)) == []
        imds.control.schedule("Reboot", notice=3600)
        here = run_probes(Endpoint(imds.url), [probe], interval=0)
        assert here[0]["shape"]["Events"] != []
        assert compare_report(doc(SAMPLE_EVENTS), here) == []
        newest = BY_ID["scheduledevents"]
        later = run_probes(Endpoint(imds.url), [newest], interval=0)
    report = doc(SAMPLE_EVENTS)
    report["probes"][0].update(id=newest.id, request=newest.request())
    assert compare_report(report, later) == [
        f'scheduledevents: shape $.Events[].{name}: missing in report, "{kind}" here'
        for name, kind in (("Description", "string"), ("DurationInSeconds", "number"), ("EventSource", "string"))]


# -- keeping an answer ---------------------------------------------------------------------------------------

SECRET = "5ecre7"


@pytest.mark.parametrize("record", [r for r in RECORDS if r != "value"])
@pytest.mark.parametrize("body", [
    json.dumps({"access_token": f"{SECRET}.{SECRET}.{SECRET}", "signature": SECRET, "vmId": SECRET,
                "nested": [{"name": SECRET}], "tags": SECRET, f"{SECRET} key": 1}).encode(),
    f"vmId\n{SECRET}\n{SECRET}/x".encode(),
    f'"{SECRET}"'.encode(),
])
def test_a_2xx_body_is_never_kept(record, body):
    """Whatever the probe and whatever the answer, a 2xx keeps no value of the VM."""
    probe = Probe("x", "t", "GET", "/metadata/x?nonce=abc", record=record)
    for status in (200, 201, 204):
        kept = answer_record(probe, status, {"content-type": "application/json", "x-ms-request-id": SECRET}, body)
        assert SECRET not in json.dumps(kept)
    jwt = ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
                   for part in ({"alg": "RS256", "kid": SECRET}, {"aud": SECRET, f"{SECRET} claim": 1}, "sig"))
    kept = answer_record(probe, 200, {}, json.dumps({"access_token": jwt}).encode())
    assert SECRET not in json.dumps(kept)


def test_only_leaves_that_name_no_vm_are_kept_as_values():
    """The "value" record keeps a text leaf as it is: only for the priority, the size and its temporary disk."""
    kept = {p.target.split("?")[0].rsplit("/instance/", 1)[1] for p in PROBES if p.record == "value"}
    assert kept == {"compute/priority", "compute/vmSize", "compute/storageProfile/resourceDisk/size"}
    probe = next(p for p in PROBES if p.id == "instance.public-ip")
    assert answer_record(probe, 200, {}, b"20.1.2.3") == {"status": 200, "headers": {}, "empty": False}
    assert answer_record(probe, 200, {}, b"") == {"status": 200, "headers": {}, "empty": True}


def test_error_bodies_lose_identifiers_times_and_addresses():
    """An AADSTS-like answer keeps its wording; ids, times, tenant names, addresses and resource ids go."""
    body = json.dumps({
        "error": "invalid_resource",
        "error_description": "AADSTS500011: The resource principal named https://nosuch.example/ was not found in "
                             "the tenant named Contoso Ltd. This can happen if the application has not been "
                             "installed.\r\nTrace ID: 1b2c3d4e-0000-4000-8000-0123456789ab\r\nCorrelation ID: "
                             "9f8e7d6c-1111-4111-8111-ba9876543210\r\nTimestamp: 2024-05-01 10:20:30Z",
        "error_codes": [500011], "timestamp": "2024-05-01 10:20:30Z",
        "trace_id": "1b2c3d4e-0000-4000-8000-0123456789ab",
        "where": "/subscriptions/6f1c2a8e-4b7d-4c39-9e21-3d5a0b8f7c64/resourceGroups/rg/x from 10.0.0.4 "
                 "or fe80::1 by ops@contoso.com in directory 'Contoso'",
    })
    kept = scrub(body)
    for gone in ("1b2c3d4e", "9f8e7d6c", "2024-05-01", "Contoso", "6f1c2a8e", "resourceGroups/rg", "10.0.0.4",
                 "fe80::1", "ops@"):
        assert gone not in kept, gone
    assert "tenant named <tenant>. This can happen" in kept
    assert "Trace ID: <guid>" in kept and "Timestamp: <time>" in kept and "AADSTS500011" in kept
    assert "https://nosuch.example/" in kept
    assert len(scrub("x" * 5000)) == conformance.MAX_BODY_KEPT + 1


def test_text_listings_keep_names_only_and_etags_their_form():
    listing = Probe("x", "t", "GET", "/", record=conformance.LISTING)
    leaf = Probe("x", "t", "GET", "/", record=conformance.LEAF)
    assert answer_record(listing, 200, {}, b"compute/\nname\n0/\n10.0.0.4\nmy vm")["text"] == (
        "compute/\nname\n0/\n<value>\n<value>")
    assert answer_record(leaf, 200, {}, b"Linux\n")["text"] == "<value>\n"
    assert answer_record(leaf, 200, {"etag": 'W/"abc123"'}, b"x")["headers"] == {"etag": 'W/"x"'}
    assert answer_record(leaf, 200, {"etag": '"0xA1"', "date": "now"}, b"x")["headers"] == {"etag": '"x"'}


def test_shapes_merge_array_items_and_an_empty_array_matches_any():
    """Array items merge into one shape; keys that are data (a GUID, a phrase) are masked; in a comparison, an
    empty array (no items, so no item shape) matches any array."""
    assert shape_of([{"a": 1}, {"b": "x"}, {"a": "y"}]) == [{"a": "number|string", "b": "string"}]
    assert shape_of({conformance.NIL: 1, "my secret key": "x", "vmId": "y"}) == {"<key>": "number|string",
                                                                                 "vmId": "string"}
    assert shape_of({"e": [], "n": None, "t": True, "f": 1.5}) == {"e": [], "n": "null", "t": "boolean", "f": "number"}
    probe = BY_ID["scheduledevents"]
    report = {"format": 1, "probes": [{"id": probe.id, "status": 200,
                                       "shape": {"DocumentIncarnation": "number", "Events": []}}]}
    here = [{"id": probe.id, "request": probe.request(), "status": 200,
             "shape": {"DocumentIncarnation": "number", "Events": [{"EventId": "string"}]}}]
    assert compare_report(report, here) == []
    here[0]["shape"]["DocumentIncarnation"] = "string"
    assert compare_report(report, here) == [
        'scheduledevents: shape $.DocumentIncarnation: "number" in report, "string" here']


# -- pace, retries, failures ---------------------------------------------------------------------------------

class Clock:
    """A clock that only sleeping moves, and the start time of each request sent."""

    def __init__(self) -> None:
        self.now = 0.0
        self.starts: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class TimedEndpoint(Endpoint):
    __slots__ = ("clock",)

    def exchange(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.clock.starts.append(self.clock.now)
        return super().exchange(*args, **kwargs)


def test_requests_are_paced_at_the_interval(shared_vm):
    """One request per interval at most, the first at once: 10 probes at 0.25 s take 2.25 s of sleeping."""
    clock = Clock()
    endpoint = TimedEndpoint(shared_vm.url)
    endpoint.clock = clock
    run_probes(endpoint, PROBES[:10], sleep=clock.sleep, clock=clock)
    assert clock.starts == pytest.approx([0.25 * i for i in range(10)])


def test_the_default_pace_stays_under_the_real_limit():
    """At the default interval (0.25 s), against the real limit (5 requests a second per VM, bursts of 5), no
    probe meets a 429; real time, a dozen probes (3 s)."""
    with Emulator(rate_limit=5) as imds:
        records = run_probes(Endpoint(imds.url), PROBES[:12])
    assert [record["status"] for record in records].count(429) == 0
    assert not any("retried" in record for record in records)


def test_a_429_is_waited_out_and_sent_once_more():
    """With the emulator's limit at 1 request a second, the second probe gets 429 Retry-After: 1, waits it
    (really) and is sent again; the report keeps that it was retried."""
    probes = [BY_ID["versions"], BY_ID["instance.no-api-version"]]
    with Emulator(rate_limit=1) as imds:
        records = run_probes(Endpoint(imds.url), probes, interval=0)
    assert [record["status"] for record in records] == [200, 400]
    assert "retried" not in records[0]
    assert records[1]["retried"] == {"status": 429, "retry-after": "1"}
    assert compare_report({"format": 1, "probes": records}, records) == []  # how it was obtained: not compared


def test_probes_past_the_deadline_are_kept_as_not_sent(shared_vm):
    clock = Clock()
    records = run_probes(Endpoint(shared_vm.url), PROBES[:6], interval=1, deadline=2.5, sleep=clock.sleep,
                         clock=clock)
    assert [record.get("failure") for record in records] == [None] * 3 + ["not sent: the run's deadline passed"] * 3
    assert all(record["status"] is None for record in records[3:])
    lines = compare_report({"format": 1, "probes": [dict(records[0], status=None, failure="timed out")]}, records)
    assert lines == ["instance.2021-02-01: status none (timed out) in report, 200 here"]


def test_nothing_listening_fails_at_the_first_probe():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ImdsUnavailable, match=rf"no answer from http://127.0.0.1:{port}: "):
        run_probes(Endpoint(f"http://127.0.0.1:{port}"), PROBES, interval=0)


# -- reading a report ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "", "not json", "[]", '{"format": 2, "probes": []}', '{"format": 1}', '{"format": 1, "probes": [{}]}',
    '{"format": 1, "probes": [{"id": "a"}, {"id": "a"}]}',
])
def test_a_file_that_is_not_a_report_is_refused_in_one_line(text):
    with pytest.raises(UsageError) as caught:
        load_report(text, "r.json")
    assert str(caught.value).startswith("r.json: not a conformance report") and "\n" not in str(caught.value)


def test_ids_a_report_has_and_this_azimds_lacks_are_named():
    doc = load_report(json.dumps({"format": 1, "probes": [{"id": "versions"}, {"id": "gone.probe"}]}), "r")
    probes, unknown = report_probes(doc)
    assert [probe.id for probe in probes] == ["versions"]
    assert unknown == ["gone.probe: in the report, not a probe of this azimds"]


def test_a_probe_whose_request_changed_is_not_compared():
    probe = BY_ID["versions"]
    entry = {"id": probe.id, "request": dict(probe.request(), target="/metadata/versions?x=1"), "status": 500}
    lines = compare_report({"format": 1, "probes": [entry]}, [{"id": probe.id, "request": probe.request(),
                                                             "status": 200}])
    assert len(lines) == 1 and lines[0].startswith("versions: the report's request was GET /metadata/versions?x=1")
