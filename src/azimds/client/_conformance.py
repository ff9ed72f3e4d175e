"""``azimds conformance``: read-only probes of what the real IMDS does where its documentation is silent, so that
someone on a real VM can capture the answers in one report and the emulator can be compared against them.

``PROBES`` is the fixed table: one line per probe, each naming the topic it checks (a decision of the emulator's
``choices.CHOICES``, or a fact in ``TOPICS``); ``NOT_PROBED`` says why each other decision has no probe.
``run_probes`` sends them one at a time, paced, and keeps each answer; ``conformance_report`` makes the JSON
document; ``compare_report`` lists every difference between a report and fresh answers.

What is sent. GET, plus HEAD and OPTIONS (safe methods, RFC 9110 §9.2.1: they change nothing by definition) to
see how other methods are refused, plus two POSTs to /metadata/scheduledevents that cannot approve anything: a
body that is not JSON, and the nil GUID as EventId (Azure's EventIds are random, version 4, GUIDs: the nil GUID
is never one). Never more than one request per ``interval`` (0.25 s: 4 a second, under the 5 a second IMDS
allows); a 429 met anyway is waited out (its Retry-After, at most 60 s) and the probe sent once more.

What is kept (the report is meant for a public issue). Status, and the headers Content-Type, Allow,
Retry-After, Server and ETag (its characters masked, its quotes kept). An error body (any non-2xx) verbatim,
with GUIDs, times, IP and e-mail addresses, ``/subscriptions/...`` paths and tenant names replaced by
placeholders, cut at 2,000 characters. A 2xx body never: only its *shape* (the JSON key tree, each leaf's type,
an array as the merged shape of its items), how it is written (compact? keys sorted? non-ASCII raw or
escaped?) and the values at four paths that hold no VM's data: ``$.token_type``, ``$.encoding``,
``$.apiVersions`` and ``$.resource`` (the token's audience, which the probe itself chose). A text answer keeps
the lines of a listing that are names (``compute/``, ``0/``), every other line masked. A token: its key set and
value types, the JWT header's ``alg`` and ``typ`` and the claim names. An attested document: its keys, whether
the signature is base64, and the shape of the signed content when it reads as PKCS#7 (and whether the nonce
came back). A key that is not a name (a GUID, a phrase) is kept as ``<key>``. Nothing of the VM's own: no
token, signature, id, name, key, address or tag.

Standard library only (it runs on VMs); loaded only when ``azimds conformance`` runs.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import time
from typing import Any, NamedTuple

from ..errors import AttestationError, ImdsUnavailable, UsageError
from ._client import (
    ATTESTED_API_VERSION,
    DEFAULT_API_VERSION,
    DEFAULT_TIMEOUT,
    FIRST_EVENTS_TIMEOUT,
    IDENTITY_API_VERSION,
)
from .transport import Endpoint, failure_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "DEFAULT_INTERVAL", "DEFAULT_RUN_DEADLINE", "FORMAT", "NOT_PROBED", "PROBES", "RECORDED_HEADERS", "RECORDS",
    "TOPICS", "Probe", "answer_record", "compare_report", "conformance_report", "load_report", "probe_table",
    "report_probes", "run_probes", "scrub", "shape_of",
]

#: The report format; a reader refuses any other.
FORMAT = 1
#: Seconds between the starts of two requests: 4 a second, under IMDS's 5.
DEFAULT_INTERVAL = 0.25
#: Seconds the whole run may take: about 20 s of paced probes, up to FIRST_EVENTS_TIMEOUT (120 s) for the first
#: scheduled-events request (on a real VM it may switch the service on), and a 429's wait (at most 60 s).
DEFAULT_RUN_DEADLINE = 300.0
#: The longest Retry-After honoured (the client's backoff cap).
MAX_RETRY_AFTER = 60.0
#: The answer headers a report keeps (lower-case, as the transport gives them).
RECORDED_HEADERS = ("allow", "content-type", "etag", "retry-after", "server")
#: The only values of a 2xx JSON answer a report keeps, by path: none of them is the VM's.
VALUE_PATHS = frozenset({"$.apiVersions", "$.encoding", "$.resource", "$.token_type"})
MAX_BODY_KEPT = 2000

# How an answer is kept (besides status and headers): see the module's docstring.
ANSWER = "answer"  # error body verbatim (scrubbed); a 2xx as its shape, values and form
SHAPE = "shape"  # as ANSWER, without the form (a document whose key order depends on what it holds)
LISTING = "listing"  # a format=text listing: lines that are names kept, others masked
LEAF = "leaf"  # a format=text leaf value: every line masked
TOKEN = "token"  # a 2xx also as the JWT header's alg/typ and claim names
ATTESTED = "attested"  # a 2xx also as the signed content's shape
VALUE = "value"  # a format=text leaf that names no VM (priority, a size): kept as it is, at most 64 characters
EMPTY = "empty"  # a format=text leaf kept only as whether it is empty (a NIC's public IP)
RECORDS = (ANSWER, SHAPE, LISTING, LEAF, TOKEN, ATTESTED, VALUE, EMPTY)


class Probe(NamedTuple):
    """One request: ``id`` (stable, the report's key), the ``topic`` it checks, and how to keep its answer."""

    id: str
    topic: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = (("Metadata", "true"),)
    record: str = ANSWER
    body: bytes | None = None

    def request(self) -> dict[str, Any]:
        """The request as a report holds it."""
        out: dict[str, Any] = {"method": self.method, "target": self.target, "headers": dict(self.headers)}
        if self.body is not None:
            out["body"] = self.body.decode("utf-8")
        return out


# -- the probes --------------------------------------------------------------------------------------------

IV = DEFAULT_API_VERSION  # 2021-02-01: every host in every cloud knows it
ID = IDENTITY_API_VERSION  # 2018-02-01
AT = ATTESTED_API_VERSION  # 2020-09-01
LB = "2020-10-01"  # the first load balancer version
SE = "2020-07-01"  # the newest scheduled-events version
NO_VERSION = "2099-01-01"  # no host knows it
NIL = "00000000-0000-0000-0000-000000000000"  # never an EventId, a client_id or an object_id
MANAGEMENT = "https%3A%2F%2Fmanagement.azure.com%2F"
NOSUCH = "https%3A%2F%2Fnosuch.example%2F"
NONE: tuple[tuple[str, str], ...] = ()
JSON_POST = (("Metadata", "true"), ("Content-Type", "application/json"))

#: Topics of probes that are not decisions in ``choices.CHOICES``: what the emulator copies from a capture or
#: the docs (checked again on every VM).
TOPICS: dict[str, str] = {
    "Missing or unknown api-version": "captured: 400 with the three newest versions",
    "Missing Metadata header": "captured: 400, the family's own body",
    "Instance document": "documented: the compute and network tree",
    "Unknown instance key": "captured: 404",
    "Unknown path under /metadata": "captured for /metadata/identity: 404",
    "Leaf without format=text": "captured: 400",
    "Scheduled events document": "documented: DocumentIncarnation and Events",
    "Token answer": "documented: every value a string",
    "Attested document": "documented: encoding and a PKCS#7 signature",
}

VERSION = "Missing or unknown api-version"
HEADER = "Missing Metadata header"
OLDER = "Version older than the endpoint"
METHODS = "Other methods"
ORDER = "Check order"
CASE = "Case"
UNDER = "Other paths under identity and attested"
EVENTS_FAMILY = "Scheduled events version of another family"
EVENTS_HEADER = "Scheduled events Metadata header"
IDENTITY_RULES = "Identity Metadata header, api-version, unknown parameters"
NONCE = "Attested `nonce`"
BAD_VALUE = "Bad `format` or `extended` value"
TEXT = "Text listing of objects and arrays"

#: Every probe, in the order sent. Adding one is one line; an id, once published, keeps its meaning.
PROBES: tuple[Probe, ...] = (
    # /metadata/instance: documents, versions, header, request rules
    Probe("instance.2021-02-01", "Instance document", "GET", f"/metadata/instance?api-version={IV}"),
    Probe("instance.2018-02-01", "Instance document", "GET", "/metadata/instance?api-version=2018-02-01"),
    Probe("instance.2017-04-02", "2017-03-01 on /metadata/instance", "GET",
          "/metadata/instance?api-version=2017-04-02"),
    Probe("instance.2017-03-01", "2017-03-01 on /metadata/instance", "GET",
          "/metadata/instance?api-version=2017-03-01"),
    Probe("instance.no-api-version", VERSION, "GET", "/metadata/instance"),
    Probe("instance.bad-api-version", VERSION, "GET", f"/metadata/instance?api-version={NO_VERSION}"),
    Probe("instance.no-metadata-header", HEADER, "GET", f"/metadata/instance?api-version={IV}", NONE),
    Probe("instance.metadata-header-false", HEADER, "GET", f"/metadata/instance?api-version={IV}",
          (("Metadata", "false"),)),
    Probe("instance.metadata-header-case", CASE, "GET", f"/metadata/instance/compute?api-version={IV}",
          (("Metadata", "True"),)),
    Probe("instance.path-key-case", CASE, "GET", f"/metadata/instance/Compute?api-version={IV}"),
    Probe("instance.parameter-name-case", CASE, "GET", f"/metadata/instance/compute?API-VERSION={IV}"),
    Probe("instance.format-value-case", CASE, "GET", f"/metadata/instance/compute?api-version={IV}&format=JSON"),
    Probe("instance.x-forwarded-for", "X-Forwarded-For", "GET", f"/metadata/instance?api-version={IV}",
          (("Metadata", "true"), ("X-Forwarded-For", "192.0.2.1"))),
    Probe("instance.duplicate-parameter", "Duplicate query parameters", "GET",
          f"/metadata/instance?api-version={IV}&api-version={IV}"),
    Probe("instance.options", METHODS, "OPTIONS", f"/metadata/instance?api-version={IV}"),
    Probe("instance.head", METHODS, "HEAD", f"/metadata/instance?api-version={IV}"),
    Probe("instance.trailing-slash", "Trailing slash", "GET", f"/metadata/instance/?api-version={IV}"),
    Probe("instance.unknown-key", "Unknown instance key", "GET", f"/metadata/instance/compute/nosuch?api-version={IV}"),
    Probe("instance.text-object", TEXT, "GET", f"/metadata/instance/compute?api-version={IV}&format=text",
          record=LISTING),
    Probe("instance.text-array", TEXT, "GET", f"/metadata/instance/network/interface?api-version={IV}&format=text",
          record=LISTING),
    Probe("instance.text-leaf", "Content-Type of text answers", "GET",
          f"/metadata/instance/compute/osType?api-version={IV}&format=text", record=LEAF),
    Probe("instance.leaf-json", "Leaf without format=text", "GET",
          f"/metadata/instance/compute/osType?api-version={IV}"),
    Probe("instance.bad-format", BAD_VALUE, "GET", f"/metadata/instance?api-version={IV}&format=xml"),
    Probe("instance.bad-extended", BAD_VALUE, "GET", f"/metadata/instance?api-version={IV}&extended=maybe"),
    Probe("instance.extended", "extended=true", "GET", f"/metadata/instance?api-version={IV}&extended=true"),
    Probe("instance.priority", "`priority`", "GET", f"/metadata/instance/compute/priority?api-version={IV}&format=text",
          record=VALUE),
    Probe("instance.vm-size", "`resourceDisk.size`", "GET",
          f"/metadata/instance/compute/vmSize?api-version={IV}&format=text", record=VALUE),
    Probe("instance.resource-disk", "`resourceDisk.size`", "GET",
          f"/metadata/instance/compute/storageProfile/resourceDisk/size?api-version={IV}&format=text", record=VALUE),
    Probe("instance.public-ip", "Public IP of a VM behind a Standard load balancer", "GET",
          f"/metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress?api-version={IV}&format=text",
          record=EMPTY),
    # which rule answers first when a request breaks two
    Probe("order.unknown-key-no-header", ORDER, "GET", f"/metadata/instance/compute/nosuch?api-version={IV}", NONE),
    Probe("order.options-no-header", ORDER, "OPTIONS", f"/metadata/instance?api-version={IV}", NONE),
    Probe("order.forwarded-no-header", ORDER, "GET", f"/metadata/instance?api-version={IV}",
          (("X-Forwarded-For", "192.0.2.1"),)),
    Probe("order.no-header-no-version", ORDER, "GET", "/metadata/instance", NONE),
    Probe("order.duplicate-bad-version", ORDER, "GET",
          f"/metadata/instance?api-version={NO_VERSION}&api-version={NO_VERSION}"),
    # /metadata itself, its versions, unknown endpoints
    Probe("metadata.root", "/metadata (the root)", "GET", "/metadata"),
    Probe("metadata.root-slash", "/metadata (the root)", "GET", "/metadata/"),
    Probe("metadata.root-versioned", "/metadata (the root)", "GET", f"/metadata?api-version={IV}"),
    Probe("metadata.unknown-endpoint", "Unknown path under /metadata", "GET", f"/metadata/foo?api-version={IV}"),
    Probe("versions", "Server header", "GET", "/metadata/versions"),
    Probe("versions.no-metadata-header", "/metadata/versions", "GET", "/metadata/versions", NONE),
    Probe("versions.api-version", "/metadata/versions", "GET", f"/metadata/versions?api-version={IV}"),
    Probe("reprovisiondata", "/metadata/reprovisiondata", "GET", "/metadata/reprovisiondata?api-version=2019-06-01"),
    # /metadata/scheduledevents (its first request may switch the service on: see run_probes)
    Probe("scheduledevents", "Scheduled events document", "GET", f"/metadata/scheduledevents?api-version={SE}",
          record=SHAPE),
    Probe("scheduledevents.2017-03-01", "Scheduled events document", "GET",
          "/metadata/scheduledevents?api-version=2017-03-01", record=SHAPE),
    Probe("scheduledevents.2017-03-01-no-metadata-header", EVENTS_HEADER, "GET",
          "/metadata/scheduledevents?api-version=2017-03-01", NONE),
    Probe("scheduledevents.no-metadata-header", EVENTS_HEADER, "GET", f"/metadata/scheduledevents?api-version={SE}",
          NONE),
    Probe("scheduledevents.instance-version", EVENTS_FAMILY, "GET", f"/metadata/scheduledevents?api-version={IV}"),
    Probe("scheduledevents.no-api-version", EVENTS_FAMILY, "GET", "/metadata/scheduledevents"),
    Probe("scheduledevents.bad-api-version", EVENTS_FAMILY, "GET",
          f"/metadata/scheduledevents?api-version={NO_VERSION}"),
    Probe("scheduledevents.text", BAD_VALUE, "GET", f"/metadata/scheduledevents?api-version={SE}&format=text"),
    Probe("scheduledevents.options", METHODS, "OPTIONS", f"/metadata/scheduledevents?api-version={SE}"),
    Probe("scheduledevents.if-none-match", "Scheduled events ETag", "GET",
          f"/metadata/scheduledevents?api-version={SE}", (("Metadata", "true"), ("If-None-Match", '"0"')), SHAPE),
    Probe("scheduledevents.approve-malformed", "Approving an unknown EventId", "POST",
          f"/metadata/scheduledevents?api-version={SE}", JSON_POST, body=b"not json"),
    Probe("scheduledevents.approve-unknown", "Approving an unknown EventId", "POST",
          f"/metadata/scheduledevents?api-version={SE}", JSON_POST,
          body=b'{"StartRequests":[{"EventId":"' + NIL.encode() + b'"}]}'),
    # /metadata/identity
    Probe("identity.token", "Token claims", "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={MANAGEMENT}", record=TOKEN),
    Probe("identity.token.vault", "Token answer", "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource=https%3A%2F%2Fvault.azure.net", record=TOKEN),
    Probe("identity.token.no-trailing-slash", "Token request's `resource`", "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource=https%3A%2F%2Fmanagement.azure.com",
          record=TOKEN),
    Probe("identity.token.no-resource", "Token request without `resource`", "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}"),
    Probe("identity.token.unknown-resource", "Token request's `resource`", "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={NOSUCH}", record=TOKEN),
    Probe("identity.token.two-selectors", "Token request with two identity selectors", "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={MANAGEMENT}&client_id={NIL}&object_id={NIL}"),
    Probe("identity.token.empty-selector", "Token request with two identity selectors", "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={MANAGEMENT}&client_id=", record=TOKEN),
    Probe("identity.token.no-metadata-header", HEADER, "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={MANAGEMENT}", NONE),
    Probe("identity.token.metadata-header-case", IDENTITY_RULES, "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={MANAGEMENT}", (("Metadata", "TRUE"),),
          record=TOKEN),
    Probe("identity.token.no-api-version", IDENTITY_RULES, "GET",
          f"/metadata/identity/oauth2/token?resource={MANAGEMENT}"),
    Probe("identity.token.bad-api-version", IDENTITY_RULES, "GET",
          f"/metadata/identity/oauth2/token?api-version={NO_VERSION}&resource={MANAGEMENT}"),
    Probe("identity.token.unknown-parameter", IDENTITY_RULES, "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={MANAGEMENT}&azimds=1", record=TOKEN),
    Probe("identity.token.old-api-version", OLDER, "GET",
          f"/metadata/identity/oauth2/token?api-version=2017-12-01&resource={MANAGEMENT}"),
    Probe("identity.token.x-forwarded-for", "X-Forwarded-For", "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={MANAGEMENT}",
          (("Metadata", "true"), ("X-Forwarded-For", "192.0.2.1"))),
    Probe("identity.token.duplicate-parameter", "Duplicate query parameters", "GET",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={MANAGEMENT}&resource={MANAGEMENT}"),
    Probe("identity.token.options", METHODS, "OPTIONS",
          f"/metadata/identity/oauth2/token?api-version={ID}&resource={MANAGEMENT}"),
    Probe("identity.info", "`/metadata/identity/info` on a VM without identities", "GET",
          f"/metadata/identity/info?api-version={ID}"),
    Probe("identity.bare", UNDER, "GET", f"/metadata/identity?api-version={ID}"),
    Probe("identity.bare-no-metadata-header", UNDER, "GET", f"/metadata/identity?api-version={ID}", NONE),
    Probe("identity.unknown-path", UNDER, "GET", f"/metadata/identity/nosuch?api-version={ID}"),
    # /metadata/attested
    Probe("attested", "Attested document", "GET", f"/metadata/attested/document?api-version={AT}", record=ATTESTED),
    Probe("attested.nonce", NONCE, "GET", f"/metadata/attested/document?api-version={AT}&nonce=azimds0123456789",
          record=ATTESTED),
    Probe("attested.empty-nonce", NONCE, "GET", f"/metadata/attested/document?api-version={AT}&nonce=",
          record=ATTESTED),
    Probe("attested.bad-nonce", NONCE, "GET", f"/metadata/attested/document?api-version={AT}&nonce=abc-123",
          record=ATTESTED),
    Probe("attested.long-nonce", NONCE, "GET",
          f"/metadata/attested/document?api-version={AT}&nonce=0123456789abcdefghijklmnopqrstuvw", record=ATTESTED),
    Probe("attested.no-api-version", VERSION, "GET", "/metadata/attested/document"),
    Probe("attested.bad-api-version", VERSION, "GET", f"/metadata/attested/document?api-version={NO_VERSION}"),
    Probe("attested.old-api-version", OLDER, "GET", "/metadata/attested/document?api-version=2018-04-02"),
    Probe("attested.no-metadata-header", HEADER, "GET", f"/metadata/attested/document?api-version={AT}", NONE),
    Probe("attested.unknown-path", UNDER, "GET", f"/metadata/attested/nosuch?api-version={AT}"),
    # /metadata/loadbalancer
    Probe("loadbalancer", "Load balancer document", "GET", f"/metadata/loadbalancer?api-version={LB}"),
    Probe("loadbalancer.no-api-version", VERSION, "GET", "/metadata/loadbalancer"),
    Probe("loadbalancer.bad-api-version", VERSION, "GET", f"/metadata/loadbalancer?api-version={NO_VERSION}"),
    Probe("loadbalancer.old-api-version", OLDER, "GET", "/metadata/loadbalancer?api-version=2020-09-01"),
    Probe("loadbalancer.no-metadata-header", HEADER, "GET", f"/metadata/loadbalancer?api-version={LB}", NONE),
    Probe("loadbalancer.text", "Load balancer errors", "GET", f"/metadata/loadbalancer?api-version={LB}&format=text"),
    Probe("loadbalancer.options", "Load balancer errors", "OPTIONS", f"/metadata/loadbalancer?api-version={LB}"),
    Probe("loadbalancer.unknown-path", "Load balancer errors", "GET",
          f"/metadata/loadbalancer/nosuch?api-version={LB}"),
)

#: The emulator's decisions (``choices.CHOICES`` topics) no probe checks, and why.
NOT_PROBED: dict[str, str] = {
    "Rate limit answer": "probing a limit means going past it, and the run stays under it (a 429 met anyway is "
                         "kept, with its Retry-After)",
    "Identity limits": "probing a limit means going past it, and the run stays under it",
    "Non-ASCII values": "only a VM with such a value shows it; the form of every 2xx JSON answer says whether "
                        "non-ASCII characters came raw or escaped",
    "dataDisks diffDiskSettings/encryptionSettings/osType, ipv6 publicIpAddress":
        "the VM's own configuration: the instance probes' shapes show these fields when it has them",
    "Fleet: a source address no VM owns": "emulator-only: many VMs behind one address",
    "Fleet: rate limits": "emulator-only: many VMs behind one address",
    "Fleet: a new source address with `addresses: dynamic`": "emulator-only: pods taking scale-set instances by "
                                                             "address",
    "Fleet: approving a shared event": "emulator-only: many VMs behind one address, and approving changes the "
                                       "VM's maintenance",
    "Scheduled events approval answer": "only the approval of a current event gets it, and that changes the VM's "
                                        "maintenance: never sent",
    "Event types newer than the api-version": "only visible while such an event is scheduled; the scheduled "
                                              "events probes keep the document's shape at two versions",
    "Profile without an `identity` section": "how an emulator profile reads; identity.token keeps what this VM "
                                             "answers, with or without identities",
    "Selecting the system-assigned identity": "the request would have to name the identity's own ids, which the "
                                              "report would then hold",
    "Token times and cache": "times are not kept, and a cache shows only across requests",
    "Token validation": "emulator-only: its own discovery document and keys",
    "Attested caching": "times are not kept, and a cache shows only across requests",
    "Attested signing certificate": "emulator-only: its own CA",
    "Approving while a shared world's engine is unreachable": "emulator-only: its own shared state",
    "First scheduled-events request": "a VM's first request happens once: the scheduledevents probe goes first "
                                      "among the events probes and is given two minutes (its answer's time is not "
                                      "kept)",
}


def probe_table() -> str:
    """The probes (id, request, topic) and the topics without a probe, for ``--list``."""
    width = max(len(p.id) for p in PROBES)
    lines = []
    for probe in PROBES:
        sent = [f"{name}: {value}" for name, value in probe.headers]
        request = f"{probe.method} {probe.target}" + (f" [{'; '.join(sent)}]" if sent else " [no headers]")
        if probe.body is not None:
            request += f" body {probe.body.decode()!r}"
        lines.append(f"{probe.id:<{width}}  {request}  ({probe.topic})")
    lines.append("")
    lines.append("not probed:")
    lines += [f"  {topic}: {reason}" for topic, reason in NOT_PROBED.items()]
    return "\n".join(lines)


# -- running -----------------------------------------------------------------------------------------------

def run_probes(endpoint: Endpoint, probes: Sequence[Probe] = PROBES, *, interval: float = DEFAULT_INTERVAL,
               deadline: float = DEFAULT_RUN_DEADLINE, timeout: float = DEFAULT_TIMEOUT,
               sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
               trace: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Send each probe once, in order, one request per ``interval`` seconds at most, and keep each answer.

    Each request waits at most ``timeout`` seconds, except the first to /metadata/scheduledevents
    (FIRST_EVENTS_TIMEOUT); the run stops sending at ``deadline`` seconds (the probes left are kept as not
    run). A 429 is waited out (Retry-After, at most MAX_RETRY_AFTER, within the deadline) and sent once more.
    Raises ImdsUnavailable when the first probe gets no answer at all: nothing is listening there.
    """
    end = clock() + deadline
    first_events = next((p.id for p in probes if p.target.startswith("/metadata/scheduledevents")), None)
    last_start: float | None = None
    records = []

    def send(probe: Probe, wait: float) -> tuple[dict[str, Any], float]:
        nonlocal last_start
        if last_start is not None:
            pause = last_start + interval - clock()
            if pause > 0:
                sleep(pause)
        left = end - clock()
        if left <= 0:
            return {"failure": "not sent: the run's deadline passed"}, 0.0
        last_start = clock()
        try:
            reply = endpoint.exchange(probe.method, probe.target, headers=dict(probe.headers), body=probe.body,
                                      timeout=min(wait, left))
        except OSError as exc:
            return {"failure": failure_reason(exc)}, 0.0
        return answer_record(probe, reply.status, reply.headers, reply.body), _retry_after(reply.header("retry-after"))

    for index, probe in enumerate(probes):
        wait = FIRST_EVENTS_TIMEOUT if probe.id == first_events else timeout
        answer, after = send(probe, wait)
        if answer.get("status") == 429:
            pause = min(after, MAX_RETRY_AFTER, max(0.0, end - clock()))
            if trace is not None:
                trace(f"{probe.id}: 429, retrying in {pause:.0f} s")
            sleep(pause)
            retried = {"status": 429, "retry-after": answer.get("headers", {}).get("retry-after")}
            answer, _ = send(probe, wait)
            answer["retried"] = retried
        if index == 0 and "failure" in answer:
            raise ImdsUnavailable(f"no answer from {endpoint.url}: {answer['failure']}")
        if trace is not None:
            trace(f"{probe.id}: {answer.get('status') or answer.get('failure')}")
        records.append({"id": probe.id, "topic": probe.topic, "request": probe.request(),
                        "status": answer.pop("status", None), **answer})
    return records


def _retry_after(value: str | None) -> float:
    """Retry-After in seconds (delta-seconds only: IMDS sends whole seconds); 1 when absent or unreadable."""
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


# -- keeping an answer ---------------------------------------------------------------------------------------

def answer_record(probe: Probe, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What a report keeps of one answer (see the module's docstring): never a 2xx body itself."""
    out: dict[str, Any] = {"status": status, "headers": _headers(headers)}
    if probe.record == EMPTY and status == 200 and not body:
        out["empty"] = True
        return out
    if not body or not 200 <= status < 300:
        out["body"] = scrub(body.decode("utf-8", "replace"))
        return out
    if probe.record == VALUE:
        out["text"] = body.decode("utf-8", "replace")[:64]
        return out
    if probe.record == EMPTY:
        out["empty"] = False
        return out
    if probe.record in (LISTING, LEAF):
        out["text"] = _masked(body.decode("utf-8", "replace"), keep_names=probe.record == LISTING)
        return out
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        out["text"] = _masked(body.decode("utf-8", "replace"), keep_names=False)
        return out
    out["shape"] = shape_of(value)
    out["values"] = {path: value[path[2:]] for path in sorted(VALUE_PATHS)
                     if isinstance(value, dict) and path[2:] in value}
    if probe.record != SHAPE:
        out["form"] = _form(body, value)
    if probe.record == TOKEN and isinstance(value, dict):
        out["jwt"] = _jwt(value.get("access_token"))
    if probe.record == ATTESTED and isinstance(value, dict):
        out["signed"] = _signed(value.get("signature"), probe.target)
    return out


def _headers(headers: dict[str, str]) -> dict[str, str]:
    kept = {name: headers[name] for name in RECORDED_HEADERS if name in headers}
    if "etag" in kept:  # its form (weak? quoted?) without its value
        etag = kept["etag"]
        weak = etag.startswith("W/")
        kept["etag"] = ("W/" if weak else "") + re.sub(r'[^"]+', "x", etag[2:] if weak else etag)
    return kept


_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_SCRUBS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_GUID, "<guid>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT"), "<time>"),
    (re.compile(r"\d{2}/\d{2}/\d{2,4} \d{1,2}:\d{2}:\d{2}(?: [AP]M)?(?: [+-]\d{4})?"), "<time>"),
    (re.compile(r"(?i)/subscriptions/[^\s\"'\\]*"), "/subscriptions/<id>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "<ip>"),
    (re.compile(r"(?i)\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b|[0-9a-f:]*[0-9a-f]::[0-9a-f:]*|::[0-9a-f]{1,4}\b"),
     "<ip>"),
    (re.compile(r"(tenant named ).+?(\.(?:\s|\\r|\\n|\"|$))"), r"\1<tenant>\2"),
    (re.compile(r"((?:directory|tenant) ')[^']*(')"), r"\1<tenant>\2"),
)


def scrub(text: str) -> str:
    """An error body as a report keeps it: identifiers, times and addresses replaced, at most 2,000 characters."""
    for pattern, placeholder in _SCRUBS:
        text = pattern.sub(placeholder, text)
    return text if len(text) <= MAX_BODY_KEPT else text[:MAX_BODY_KEPT] + "…"


_NAME = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*|\d+)/?")


def _masked(text: str, *, keep_names: bool) -> str:
    """A text answer with every line that is not a name (of a listing) replaced by ``<value>``."""
    return "\n".join(line if not line or (keep_names and _NAME.fullmatch(line)) else "<value>"
                     for line in text.split("\n"))


def shape_of(value: Any) -> Any:
    """The shape of a JSON value: objects as {key: shape}, arrays as [the merged shape of the items] ([] when
    empty), every other value as its type: "string", "number", "boolean" or "null". A key that is not a name
    (IMDS's are camelCase words; a GUID or a phrase would be data) is kept as ``<key>``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name, shape = _key(key), shape_of(item)
            out[name] = _merge(out[name], shape) if name in out else shape
        return out
    if isinstance(value, list):
        merged: Any = None
        for item in value:
            merged = shape_of(item) if merged is None else _merge(merged, shape_of(item))
        return [] if merged is None else [merged]
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else "string"


_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_.-]{0,63}")


def _key(name: str) -> str:
    return name if _KEY.fullmatch(name) and not _GUID.search(name) else "<key>"


def _merge(one: Any, two: Any) -> Any:
    if isinstance(one, dict) and isinstance(two, dict):
        return {key: _merge(one[key], two[key]) if key in one and key in two else one.get(key, two.get(key))
                for key in {**one, **two}}
    if isinstance(one, list) and isinstance(two, list):
        return [_merge(one[0], two[0])] if one and two else one or two
    if one == two:
        return one
    kinds = {json.dumps(kind, sort_keys=True) if not isinstance(kind, str) else kind for kind in (one, two)}
    return "|".join(sorted(kinds))


def _form(body: bytes, value: Any) -> dict[str, Any]:
    """How a JSON answer is written: whitespace outside strings, key order, non-ASCII characters."""
    text = body.decode("utf-8", "replace")
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    if any(byte >= 0x80 for byte in body):
        non_ascii = "raw"
    elif re.search(r"\\u(?!00[0-7])[0-9A-Fa-f]{4}", text):
        non_ascii = "escaped"
    else:
        non_ascii = "none"
    return {"compact": not re.search(r"\s", outside.rstrip("\n")), "newline_at_end": text.endswith("\n"),
            "sorted_keys": _sorted(value), "non_ascii": non_ascii}


def _sorted(value: Any) -> bool:
    if isinstance(value, dict):
        return list(value) == sorted(value) and all(_sorted(item) for item in value.values())
    if isinstance(value, list):
        return all(_sorted(item) for item in value)
    return True


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _jwt(token: Any) -> dict[str, Any]:
    """A token's JWT header (alg and typ; the other names with their types) and claim names: no values."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        return {"unreadable": "not a JWT (three dot-separated parts)"}
    try:
        header, claims = json.loads(_b64url(parts[0])), json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error):
        return {"unreadable": "a part is not base64url JSON"}
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return {"unreadable": "the header or the claims are not a JSON object"}
    kept = {_key(name): value if name in ("alg", "typ") and isinstance(value, str) else shape_of(value)
            for name, value in header.items()}
    return {"header": kept, "claims": sorted({_key(name) for name in claims})}


def _signed(signature: Any, target: str) -> dict[str, Any]:
    """Whether an attested signature is base64, the shape of its signed content, whether the nonce came back."""
    try:
        der = base64.b64decode(signature, validate=True) if isinstance(signature, str) else None
    except (ValueError, binascii.Error):
        der = None
    if der is None:
        return {"base64": False}
    from ._pkcs7 import signed_content  # the verifier's parser: loaded only for an attested answer

    try:
        content = json.loads(signed_content(der)[0])
    except AttestationError as exc:
        return {"base64": True, "unreadable": type(exc).__name__}
    except ValueError:
        return {"base64": True, "unreadable": "the signed content is not JSON"}
    out: dict[str, Any] = {"base64": True, "shape": shape_of(content)}
    sent = re.search(r"[?&]nonce=([^&]*)", target)
    if sent and sent.group(1) and isinstance(content, dict):
        out["nonce_echoed"] = content.get("nonce") == sent.group(1)
    return out


# -- the report ----------------------------------------------------------------------------------------------

def conformance_report(records: list[dict[str, Any]], endpoint: str, started: dt.datetime,
                       version: str) -> dict[str, Any]:
    """The report: one JSON document (write it with sorted keys)."""
    return {"format": FORMAT, "azimds": version, "endpoint": re.sub(r"//[^/@]*@", "//", endpoint),
            "started": started.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "probes": records}


def load_report(text: str, name: str) -> dict[str, Any]:
    """A report read back, or UsageError saying in one line why ``text`` (from ``name``) is not one."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{name}: not a conformance report: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("probes"), list):
        raise UsageError(f"{name}: not a conformance report (format {FORMAT}: an object with \"format\": {FORMAT} "
                         f"and a \"probes\" list)")
    seen = set()
    for index, entry in enumerate(doc["probes"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise UsageError(f"{name}: not a conformance report: probe {index + 1} has no \"id\"")
        if entry["id"] in seen:
            raise UsageError(f"{name}: not a conformance report: probe {entry['id']!r} is there twice")
        seen.add(entry["id"])
    return doc


#: Fields of a kept probe that are not the answer, or that say how it was obtained: never compared.
_NOT_COMPARED = frozenset({"id", "topic", "request", "retried"})


def report_probes(doc: dict[str, Any]) -> tuple[list[Probe], list[str]]:
    """The probes a report names, in its order, and a line for each of its ids this azimds has no probe for."""
    known = {probe.id: probe for probe in PROBES}
    probes, unknown = [], []
    for entry in doc["probes"]:
        probe = known.get(entry["id"])
        if probe is None:
            unknown.append(f"{entry['id']}: in the report, not a probe of this azimds")
        else:
            probes.append(probe)
    return probes, unknown


def compare_report(doc: dict[str, Any], records: Iterable[dict[str, Any]]) -> list[str]:
    """Every difference between a report's probes and ``records`` (the same probes answered here), one line
    each, ``<id>: …``. Only what the report holds is compared (a hand-made entry may hold a shape alone); a
    field it holds that this answer lacks is a difference, unless the statuses already differ."""
    here = {record["id"]: record for record in records}
    lines = []
    for entry in doc["probes"]:
        mine = here.get(entry["id"])
        if mine is None:
            continue
        probe_id = entry["id"]
        if "request" in entry and entry["request"] != mine["request"]:
            lines.append(f"{probe_id}: the report's request was {_request_text(entry['request'])}, this azimds "
                         f"sends {_request_text(mine['request'])}: not compared")
            continue
        same_status = entry.get("status") == mine.get("status")
        if not same_status and "status" in entry:
            lines.append(f"{probe_id}: status {_status(entry)} in report, {_status(mine)} here")
        for field in sorted(set(entry) - _NOT_COMPARED - {"status", "failure"}):
            if field not in mine:
                if same_status:
                    lines.append(f"{probe_id}: {field} in report, none here")
                continue
            if field == "body":
                if entry["body"] != mine["body"]:
                    lines.append(f"{probe_id}: body differs: {_short_diff(entry['body'], mine['body'])}")
                continue
            if field == "text":
                if entry["text"] != mine["text"]:
                    lines.append(f"{probe_id}: text differs: {_short_diff(entry['text'], mine['text'])}")
                continue
            found: list[tuple[str, str]] = []
            _differences("$" if field in ("shape", "signed") else "", entry[field], mine[field], found,
                         shapes=field in ("shape", "signed"))
            lines += [f"{probe_id}: {field}{' ' + path if path else ''}: {what}" for path, what in found]
    return lines


def _status(record: dict[str, Any]) -> str:
    status = record.get("status")
    return str(status) if status is not None else f"none ({record.get('failure', 'no answer')})"


def _request_text(request: Any) -> str:
    if not isinstance(request, dict):
        return repr(request)
    return f"{request.get('method')} {request.get('target')} {json.dumps(request.get('headers'), sort_keys=True)}"


def _differences(path: str, ours: Any, theirs: Any, out: list[tuple[str, str]], *, shapes: bool) -> None:
    """(path, what differs) between two kept values; in a shape, an empty array matches any array."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(ours.keys() | theirs.keys()):
            sub = f"{path}.{key}" if path else key
            if key not in theirs:
                out.append((sub, f"{_brief(ours[key])} in report, missing here"))
            elif key not in ours:
                out.append((sub, f"missing in report, {_brief(theirs[key])} here"))
            else:
                _differences(sub, ours[key], theirs[key], out, shapes=shapes)
        return
    if shapes and isinstance(ours, list) and isinstance(theirs, list):
        if ours and theirs:
            _differences(f"{path}[]", ours[0], theirs[0], out, shapes=shapes)
        return
    if isinstance(ours, list) and isinstance(theirs, list) and all(isinstance(x, str) for x in ours + theirs):
        gone, new = [x for x in ours if x not in theirs], [x for x in theirs if x not in ours]
        if gone or new:
            parts = ([f"only in report: {', '.join(gone)}"] if gone else []) + (
                [f"only here: {', '.join(new)}"] if new else [])
            out.append((path, "; ".join(parts)))
        elif ours != theirs:
            out.append((path, "the same items in another order"))
        return
    if ours != theirs:
        out.append((path, f"{_brief(ours)} in report, {_brief(theirs)} here"))


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        return "an array"
    return json.dumps(value, ensure_ascii=False)


def _short_diff(ours: str, theirs: str, context: int = 30) -> str:
    """The two texts around their first difference."""
    at = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs)))
    start = max(0, at - context)

    def clip(text: str) -> str:
        part = text[start:at + context]
        return ("…" if start else "") + part + ("…" if at + context < len(text) else "")

    return f"at character {at + 1}: {clip(ours)!r} in report, {clip(theirs)!r} here"
