"""``Client``: reads IMDS the way Microsoft asks clients to, so reading a tag is one call.

Reading IMDS looks like one curl line, but a script that must work on every fresh VM has to do more: go
around any proxy, pin an api-version and fall back when the host is older, retry 404, 410, 429 and 5xx with
exponential backoff (410 for up to 70 s), honour Retry-After, stay under the 5 requests/second limit and
still give up at a deadline. ``events``, ``watch_events``, ``approve`` and ``touches`` are what a
maintenance handler needs.
"""

from __future__ import annotations

import _thread
import json
import os
import re
import time

from ..azure import ENDPOINT_INTRODUCED, NO_LOADBALANCER, parse_tags
from ..errors import ImdsError, ImdsUnavailable, NotFound, UsageError
from ._retry import PROCESS_LIMITER, Backoff, TokenBucket
from .transport import Endpoint, Reply, failure_reason, quote

TYPE_CHECKING = False  # typing costs 5 ms at import; the CLI imports this module on every call
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

__all__ = [
    "ATTESTED_API_VERSION", "DEFAULT_API_VERSION", "DEFAULT_DEADLINE", "DEFAULT_ENDPOINT", "DEFAULT_TIMEOUT",
    "ENDPOINT_ENV", "FIRST_EVENTS_TIMEOUT", "IDENTITY_API_VERSION", "Client", "addresses", "resolve_endpoint",
    "tags_of", "touches",
]

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_ENV = "AZIMDS_ENDPOINT"

#: The api-version sent unless the caller names one. The oldest version that serves every field the typed
#: accessors read (userData 2021-01-01, tagsList 2019-06-04, resourceId 2019-03-11), and the one Microsoft's
#: own examples used for years, so every host in every cloud knows it. Pinned rather than "newest" so that
#: what a caller gets never changes shape under it; ``get(..., api_version=...)`` reaches newer fields.
DEFAULT_API_VERSION = "2021-02-01"
DEFAULT_DEADLINE = 90.0  # seconds per call, retries included: room for the 70 s that a 410 may last
DEFAULT_TIMEOUT = 5.0  # seconds per attempt (each socket operation), never beyond the deadline
PROBE_TIMEOUT = 1.0  # is_azure()
#: Per-attempt timeout of a Client's first scheduled-events request: on a real VM the first request after a
#: day without one switches the service on, and Microsoft warns that its answer may take up to two minutes.
FIRST_EVENTS_TIMEOUT = 120.0
WATCH_INTERVAL = 1.0  # seconds between scheduled-events polls: Microsoft recommends once a second
IDENTITY_API_VERSION = "2018-02-01"  # what Microsoft's SDKs send for tokens
ATTESTED_API_VERSION = "2020-09-01"  # the newest attested shape (licenseType)
TOKEN_EARLY = 300.0  # seconds before expiry a kept token is replaced

_FALLBACK_FAMILY = frozenset({"instance", "attested", "identity", "loadbalancer"})  # share one version list
_FAMILY_VERSIONS = {"scheduledevents": "2020-07-01"}  # a version list of its own; this is its newest
_FACTS = ("vmId", "name", "location", "subscriptionId", "resourceId")  # never change for a VM: cached
_NO_LOAD_BALANCER = NO_LOADBALANCER.encode()[:25]  # how the real 404 of a VM without a Standard LB begins
_HEADERS = {"Metadata": "true", "User-Agent": "azimds-client"}
_POST_HEADERS = {**_HEADERS, "Content-Type": "application/json"}
_EVENTS = "scheduledevents"
_TOKEN = "identity/oauth2/token"
_ATTESTED = "attested/document"
#: The resource ID of a uniform scale set instance, whose events name it ``{scaleSet}_{instanceId}``.
_SCALE_SET_INSTANCE = re.compile(r"/virtualMachineScaleSets/([^/]+)/virtualMachines/([^/]+)/?$", re.IGNORECASE)


def resolve_endpoint(endpoint: str | None) -> Endpoint:
    """The IMDS a caller means: ``endpoint`` (``http[s]://HOST[:PORT]``, a trailing ``/metadata`` accepted),
    else ``$AZIMDS_ENDPOINT``, else ``http://169.254.169.254``; an empty one is a UsageError."""
    if endpoint is None:
        endpoint = os.environ.get(ENDPOINT_ENV)
        if endpoint is not None and not endpoint.strip():
            raise UsageError(f"${ENDPOINT_ENV} is set but empty; unset it to reach {DEFAULT_ENDPOINT}")
    elif not endpoint.strip():
        raise UsageError(f"the endpoint is empty; leave it out to reach {DEFAULT_ENDPOINT}")
    return Endpoint(endpoint or DEFAULT_ENDPOINT, paths=("", "/metadata"))


# -- the client --------------------------------------------------------------------------------------------

class _Call:
    """One call's clock: its deadline and how many attempts it made."""

    __slots__ = ("attempts", "clock", "end", "last_try", "start")

    def __init__(self, clock: Callable[[], float], seconds: float) -> None:
        if not seconds > 0:
            raise UsageError(f"a deadline must be more than 0 seconds, not {seconds}")
        self.clock = clock
        self.start = clock()
        self.end = self.start + seconds
        self.attempts = 0
        self.last_try = False  # the next attempt was squeezed in before the deadline: no retry after it

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float:
        return self.end - self.clock()

    def summary(self) -> str:
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"{tries} in {self.elapsed():.1f} s"


class Client:
    """Reads the metadata of the VM it runs on (or of an emulator), retrying as Microsoft advises.

    ``endpoint``: base URL, else ``$AZIMDS_ENDPOINT``, else ``http://169.254.169.254`` (a trailing
    ``/metadata`` is accepted). ``deadline``: default seconds per call, retries included. ``timeout``: per
    attempt. ``limiter``: the process-wide 5 requests/second bucket unless given one (None: no limit).
    ``sleep``, ``clock`` and ``rng`` are injectable for tests. Safe to share between threads.
    """

    def __init__(self, endpoint: str | None = None, *, api_version: str = DEFAULT_API_VERSION,
                 deadline: float = DEFAULT_DEADLINE, timeout: float = DEFAULT_TIMEOUT,
                 backoff: Backoff | None = None, limiter: TokenBucket | None = PROCESS_LIMITER,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] | None = None, trace: Callable[[str], None] | None = None) -> None:
        if not deadline > 0 or not timeout > 0:
            raise UsageError("deadline and timeout must be more than 0 seconds")
        self._endpoint = resolve_endpoint(endpoint)
        self.endpoint = self._endpoint.url
        self.deadline = deadline
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self.limiter = limiter
        self._sleep, self._clock, self._rng = sleep, clock, rng
        self._api_version = api_version
        self._fell_back = False
        self._facts: dict[str, str] = {}
        self._tokens: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, str]] = {}  # by resource, selector
        self._lock = _thread.allocate_lock()  # threading's own; importing threading costs the CLI milliseconds
        self._events_on = False  # a scheduled-events request has been answered: the service is switched on
        self._trace = trace  # told of every attempt and wait, one line each (azimds -v)

    def __repr__(self) -> str:
        return f"Client({self.endpoint!r}, api_version={self._api_version!r})"

    @property
    def api_version(self) -> str:
        """The api-version sent by default: the pinned one, or the host's newest after a fallback."""
        return self._api_version

    # -- raw access ----------------------------------------------------------------------------------------
    def get(self, path: str, *, text: bool = False, api_version: str | None = None,
            deadline: float | None = None) -> Any:
        """GET ``/metadata/<path>`` (e.g. ``instance/compute/vmId``): parsed JSON, or a str with ``text``.

        Without ``api_version`` the client's own is sent (none to ``versions``, 2020-07-01 to
        ``scheduledevents``, whose versions are a family of their own) and, for the instance family, a 400
        naming ``newest-versions`` makes the client fall back to the newest, once, for good.
        """
        path = _clean(path)
        return self._parse(path, self._fetch(path, text=text, api_version=api_version, deadline=deadline), text)

    def instance(self, *, deadline: float | None = None) -> dict[str, Any]:
        """The whole instance document (``compute`` and ``network``) at the client's api-version."""
        doc: dict[str, Any] = self.get("instance", deadline=deadline)
        return doc

    def versions(self, *, deadline: float | None = None) -> list[str]:
        """The api-versions the host accepts (``/metadata/versions``), as it lists them."""
        return list(self.get("versions", deadline=deadline)["apiVersions"])

    def newest_version(self, *, deadline: float | None = None) -> str:
        """The newest instance api-version the host accepts, from the 400 it gives a request without one."""
        reply = self._fetch("instance", versioned=False, deadline=deadline, expect=400)
        newest = _newest_versions(reply.body)
        if not newest:
            raise ImdsError(f"{self.endpoint} names no newest-versions when asked without an api-version",
                            status=reply.status, body=_text(reply.body))
        return max(newest)

    # -- typed accessors -------------------------------------------------------------------------------------
    def compute(self, *, deadline: float | None = None) -> dict[str, Any]:
        """The ``compute`` document, read fresh (and the never-changing facts in it remembered)."""
        doc: dict[str, Any] = self.get("instance/compute", deadline=deadline)
        self._facts.update((key, doc[key]) for key in _FACTS if key in doc)
        return doc

    def network(self, *, deadline: float | None = None) -> dict[str, Any]:
        """The ``network`` document, read fresh."""
        doc: dict[str, Any] = self.get("instance/network", deadline=deadline)
        return doc

    def vm_id(self, *, deadline: float | None = None) -> str:
        return self._fact("vmId", deadline)

    def name(self, *, deadline: float | None = None) -> str:
        return self._fact("name", deadline)

    def location(self, *, deadline: float | None = None) -> str:
        return self._fact("location", deadline)

    def subscription_id(self, *, deadline: float | None = None) -> str:
        return self._fact("subscriptionId", deadline)

    def resource_id(self, *, deadline: float | None = None) -> str:
        return self._fact("resourceId", deadline)

    def tags(self, *, deadline: float | None = None) -> dict[str, str]:
        """The VM's tags, read fresh: from ``tagsList`` where served, else parsed from ``tags`` (see tags_of)."""
        return tags_of(self.compute(deadline=deadline))

    def user_data(self, *, deadline: float | None = None) -> bytes:
        """userData, base64-decoded (b"" when none), read fresh."""
        import base64

        return base64.b64decode(self._field(self.compute(deadline=deadline), "userData"))

    def private_ips(self, *, deadline: float | None = None) -> list[str]:
        """Private addresses of every NIC, IPv4 then IPv6 per NIC (IMDS does not promise NIC order)."""
        return addresses(self.network(deadline=deadline), "privateIpAddress")

    def public_ips(self, *, deadline: float | None = None) -> list[str]:
        """The VM's public addresses: its NICs' (instance-level public IPs); for a VM behind a Standard load
        balancer, whose NICs answer "", the load balancer's public frontends for it (as Kubernetes' Azure cloud
        provider reads them)."""
        found = addresses(self.network(deadline=deadline), "publicIpAddress")
        if found or self.api_version < ENDPOINT_INTRODUCED["loadbalancer"]:
            return found
        balancer = self.load_balancer(deadline=deadline)
        return [ip["frontendIpAddress"] for ip in (balancer or {}).get("publicIpAddresses", [])
                if ip.get("frontendIpAddress")]

    def mac_addresses(self, *, deadline: float | None = None) -> list[str]:
        """Every NIC's MAC address as IMDS writes it (12 upper-case hex digits)."""
        return [nic["macAddress"] for nic in self.network(deadline=deadline).get("interface", [])]

    def load_balancer(self, *, api_version: str | None = None, deadline: float | None = None) -> dict[str, Any] | None:
        """The Standard load balancer's view of this VM, or None when the VM is behind none."""
        try:
            balancer: dict[str, Any] = self.get("loadbalancer", api_version=api_version,
                                                deadline=deadline)["loadbalancer"]
            return balancer
        except NotFound as exc:
            if _NO_LOAD_BALANCER in exc.body.encode():
                return None
            raise

    # -- managed identity and attested documents -----------------------------------------------------------
    def token(self, resource: str = "https://management.azure.com/", *, client_id: str | None = None,
              object_id: str | None = None, resource_id: str | None = None, bypass_cache: bool = False,
              deadline: float | None = None) -> dict[str, str]:
        """A managed-identity token: the token endpoint's answer (``access_token``, ``expires_on``, …).

        At most one of ``client_id``, ``object_id`` and ``resource_id`` picks a user-assigned identity.
        Tokens are kept by the client until five minutes before they expire; ``bypass_cache`` asks for a new
        one (and asks IMDS not to answer from its own cache either).
        """
        selectors = {name: value for name, value in (("client_id", client_id), ("object_id", object_id),
                                                     ("msi_res_id", resource_id)) if value}
        if len(selectors) > 1:
            raise UsageError("give at most one of client_id, object_id and resource_id")
        if not resource:
            raise UsageError("a token needs a resource (the audience), e.g. https://management.azure.com/")
        key = (resource, tuple(selectors.items()))
        cached = self._tokens.get(key)
        if cached is not None and not bypass_cache and float(cached.get("expires_on", 0)) - TOKEN_EARLY > time.time():
            return dict(cached)
        params = {"resource": resource, **selectors, **({"bypass_cache": "true"} if bypass_cache else {})}
        reply = self._fetch(_TOKEN, api_version=IDENTITY_API_VERSION, params=params, deadline=deadline)
        answer = self._parse(_TOKEN, reply, text=False)
        if not isinstance(answer, dict) or "access_token" not in answer:
            raise ImdsError(f"/metadata/{_TOKEN}: the answer is not a token", status=reply.status,
                            body=_text(reply.body))
        self._tokens[key] = answer
        return dict(answer)

    def attested(self, nonce: str | None = None, *, api_version: str = ATTESTED_API_VERSION,
                 deadline: float | None = None) -> dict[str, str]:
        """The attested document (``encoding``, ``signature``): verify it with ``azimds.attested``."""
        params = {"nonce": nonce} if nonce else None
        reply = self._fetch(_ATTESTED, api_version=api_version, params=params, deadline=deadline)
        document: dict[str, str] = self._parse(_ATTESTED, reply, text=False)
        return document

    # -- scheduled events ----------------------------------------------------------------------------------
    def events(self, *, deadline: float | None = None) -> dict[str, Any]:
        """The scheduled events document (``DocumentIncarnation``, ``Events``), read fresh at 2020-07-01.

        Retried like every read. The first request of a Client waits up to ``FIRST_EVENTS_TIMEOUT`` (two
        minutes) for each attempt instead of ``timeout``, still within the deadline: on a real VM that
        request may switch the service on, which Microsoft says can take that long.
        """
        reply = self._fetch(_EVENTS, deadline=deadline, timeout=None if self._events_on else FIRST_EVENTS_TIMEOUT)
        doc = self._parse(_EVENTS, reply, text=False)
        if not (isinstance(doc, dict) and isinstance(doc.get("DocumentIncarnation"), int)
                and isinstance(doc.get("Events"), list)):
            raise ImdsError(f"/metadata/{_EVENTS}: the answer is not a scheduled events document; is "
                            f"{self.endpoint} an IMDS?", status=reply.status, body=_text(reply.body))
        self._events_on = True
        return doc

    def watch_events(self, interval: float = WATCH_INTERVAL, *, stop: threading.Event | None = None,
                     duration: float | None = None, sleep: Callable[[float], None] | None = None,
                     deadline: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the scheduled events document now, then each time its DocumentIncarnation changes.

        Polls every ``interval`` seconds (Microsoft asks for once a second; a poll that took longer is
        followed at once, never by a burst) until ``stop`` is set, ``duration`` seconds have passed or the
        caller stops iterating. Between polls it waits with ``sleep`` if given, else ``stop.wait`` (so that
        setting ``stop`` ends the wait at once), else the client's sleep. ``deadline`` bounds each poll; a
        poll that fails after its retries raises, ending the watch: the caller decides whether to start
        another. Raises ValueError at once for an ``interval`` or ``duration`` that is not a positive number.
        """
        if not 0 < interval < float("inf") or (duration is not None and not duration > 0):
            raise UsageError(f"a watch needs an interval and a duration of more than 0 seconds, not "
                             f"{interval} and {duration}")
        wait = sleep or (stop.wait if stop is not None else self._sleep)
        end = None if duration is None else self._clock() + duration
        return self._watch(interval, stop, end, wait, deadline)

    def approve(self, event_ids: str | Iterable[str], *, deadline: float | None = None) -> list[str]:
        """Approve events so that they start now rather than at their NotBefore; returns the ids sent.

        One POST of ``{"StartRequests":[{"EventId":...}, ...]}`` (ids in order, each once). The service
        answers 200 even when another VM approved an event already, so the POST is retried like a read.
        A 400 (an id that is not a current event, or a body the service finds malformed) raises ImdsError
        with the service's reason. An approval lets the event proceed for every VM it lists, and it may
        start a little later rather than at once: read the events to see it Started.
        """
        ids = list(dict.fromkeys([event_ids] if isinstance(event_ids, str) else event_ids))
        if not ids or not all(isinstance(i, str) and i for i in ids):
            raise UsageError(f"approve needs one or more event ids (non-empty strings), not {event_ids!r}")
        body = json.dumps({"StartRequests": [{"EventId": i} for i in ids]}).encode()
        try:
            self._fetch(_EVENTS, method="POST", body=body, deadline=deadline)
        except ImdsError as exc:
            if exc.status != 400:
                raise
            raise ImdsError(f"approval of {', '.join(ids)} refused: {_describe(exc.body.encode())}",
                            status=400, body=exc.body) from None
        return ids

    def touches(self, event: dict[str, Any], *, deadline: float | None = None) -> bool:
        """Whether ``event`` concerns this VM (the module's ``touches``); reads the VM once per client."""
        name = self.name(deadline=deadline)  # remembers resourceId too, where the api-version serves it
        return touches(event, {"name": name, "resourceId": self._facts.get("resourceId", "")})

    def is_azure(self, timeout: float = PROBE_TIMEOUT) -> bool:
        """Whether an IMDS answers at the endpoint: one GET of /metadata/versions, no retries, ``timeout`` s.

        Yes when the answer carries ``Server: IMDS/...`` (even a 429 or 410) or is a 200 listing apiVersions.
        """
        call = _Call(self._clock, timeout)
        try:
            reply = self._attempt("/metadata/versions", call)
        except (ImdsUnavailable, OSError):
            return False
        if (reply.header("server") or "").startswith("IMDS/"):
            return True
        try:
            return reply.status == 200 and isinstance(json.loads(reply.body)["apiVersions"], list)
        except (ValueError, KeyError, TypeError):
            return False

    # -- machinery -------------------------------------------------------------------------------------------
    def _watch(self, interval: float, stop: threading.Event | None, end: float | None,
               wait: Callable[[float], Any], deadline: float | None) -> Iterator[dict[str, Any]]:
        last = None
        due = self._clock()
        while stop is None or not stop.is_set():
            doc = self.events(deadline=deadline)
            if doc["DocumentIncarnation"] != last:
                last = doc["DocumentIncarnation"]
                yield doc
            due = max(due + interval, self._clock())
            if end is not None and due >= end:
                return
            wait(max(0.0, due - self._clock()))

    def _parse(self, path: str, reply: Reply, text: bool) -> Any:
        try:
            body = reply.body.decode("utf-8")
            return body if text else json.loads(body)
        except ValueError:
            raise ImdsError(f"/metadata/{path}: the answer is not {'UTF-8' if text else 'JSON'}; is "
                            f"{self.endpoint} an IMDS?", status=reply.status, body=_text(reply.body)) from None

    def _fact(self, key: str, deadline: float | None) -> str:
        value = self._facts.get(key)
        if value is None:
            value = self._field(self.compute(deadline=deadline), key)
        return value

    def _field(self, compute: dict[str, Any], key: str) -> Any:
        if key not in compute:
            raise NotFound(f"compute.{key} is not served at api-version {self._api_version}")
        return compute[key]

    def _fetch(self, path: str, *, text: bool = False, api_version: str | None = None, versioned: bool = True,
               deadline: float | None = None, expect: int = 200, method: str = "GET", body: bytes | None = None,
               timeout: float | None = None, params: dict[str, str] | None = None) -> Reply:
        """One logical request: attempts, version fallback, retries and waits until ``expect`` or a failure.

        ``timeout`` replaces the client's per-attempt timeout for this call.
        """
        call = _Call(self._clock, self.deadline if deadline is None else deadline)
        family = path.partition("/")[0]
        version = None
        if versioned and family != "versions":
            version = api_version or _FAMILY_VERSIONS.get(family, self._api_version)
        may_fall_back = version is not None and api_version is None and family in _FALLBACK_FAMILY
        retry = 0
        while True:
            reply = None
            try:
                reply = self._attempt(_target(path, version, text, params), call, method, body, timeout)
            except OSError as exc:
                failure: ImdsError = ImdsUnavailable(f"no answer from {self.endpoint}: {failure_reason(exc)}")
            else:
                if reply.status == expect:
                    return reply
                if may_fall_back and reply.status == 400:
                    newer = self._fall_back(version, reply.body)  # type: ignore[arg-type]
                    if newer is not None:
                        version, may_fall_back = newer, False
                        continue
                failure = _failure(path, reply)
            wait = self._wait(retry, reply, call)
            if self._trace is not None:
                self._trace(f"{failure}; " + ("giving up" if wait is None else f"retrying in {wait:.1f} s"))
            if wait is None:
                raise _final(failure, reply, call)
            self._sleep(wait)
            retry += 1

    def _attempt(self, target: str, call: _Call, method: str = "GET", body: bytes | None = None,
                 timeout: float | None = None) -> Reply:
        """Send one request on a fresh connection (never stale, nothing shared between threads)."""
        remaining = call.remaining()
        if remaining <= 0 or (self.limiter is not None and not self.limiter.acquire(remaining)):
            raise ImdsUnavailable(f"deadline reached before a request to {self.endpoint} could be sent"
                                  f" ({call.summary()})")
        call.attempts += 1
        if self._trace is not None:
            self._trace(f"attempt {call.attempts}: {method} {self.endpoint}{target}")
        return self._endpoint.exchange(method, target, headers=_HEADERS if body is None else _POST_HEADERS, body=body,
                                       timeout=min(timeout or self.timeout, max(call.remaining(), 0.001)))

    def _fall_back(self, sent: str, body: bytes) -> str | None:
        """The version to use after a 400 naming newest-versions, or None if falling back is not allowed."""
        with self._lock:
            if self._api_version != sent:  # another call fell back meanwhile
                return self._api_version
            newest = _newest_versions(body)
            if self._fell_back or not newest or max(newest) == sent:
                return None
            self._api_version, self._fell_back = max(newest), True
            return self._api_version

    def _wait(self, retry: int, reply: Reply | None, call: _Call) -> float | None:
        """Seconds to sleep before the next attempt, or None to give up."""
        status = None if reply is None else reply.status
        if call.last_try or not self.backoff.allows(retry, status, call.elapsed()):
            return None
        if status == 404 and _NO_LOAD_BALANCER in reply.body:  # type: ignore[union-attr]
            return None  # not "IMDS is updating": the VM is behind no Standard load balancer
        if self._rng is None:  # random loads when a retry needs its jitter, not on every CLI call
            import random

            self._rng = random.random
        wait = self.backoff.delay(retry, status, self._rng())
        room = call.remaining() - self.backoff.min_attempt
        after = _retry_after(reply.header("retry-after")) if reply is not None else None
        if after is not None:
            if after > room:
                return None  # the server asks us to wait past the deadline
            wait = max(wait, after)
        if wait > room:
            wait, call.last_try = room, True
        return wait if wait >= 0 else None



def _clean(path: str) -> str:
    path = path.strip("/")
    if path == "metadata" or path.startswith("metadata/"):
        path = path[len("metadata"):].lstrip("/")
    return path


def _target(path: str, version: str | None, text: bool, params: dict[str, str] | None = None) -> str:
    query = []
    if version is not None:
        query.append("api-version=" + quote(version, safe=""))
    if text:
        query.append("format=text")
    query += [f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in (params or {}).items()]
    target = "/metadata/" + quote(path, safe="/")
    return target + "?" + "&".join(query) if query else target


def _newest_versions(body: bytes) -> list[str]:
    try:
        newest = json.loads(body).get("newest-versions")
    except (ValueError, AttributeError):
        return []
    return [v for v in newest if isinstance(v, str)] if isinstance(newest, list) else []


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


def _describe(body: bytes) -> str:
    """The error an IMDS body states, on one line."""
    try:
        data = json.loads(body)
        message = str(data["error"]) + (f" (newest versions: {', '.join(data['newest-versions'])})"
                                         if "newest-versions" in data else "")
        if data.get("error_description"):  # the identity endpoint's bodies say what is wrong there
            message += f": {data['error_description']}"
    except (ValueError, KeyError, TypeError):
        message = _text(body)
    message = " ".join(message.split())
    return message if len(message) <= 300 else message[:297] + "..."


def _failure(path: str, reply: Reply) -> ImdsError:
    where = f"/metadata/{path}"
    body = _text(reply.body)
    if reply.status == 404:
        return NotFound(f"not found: {where}", status=404, body=body)
    error = f"{where}: {reply.status} {_describe(reply.body)}"
    if reply.status in (410, 429) or reply.status >= 500:
        return ImdsUnavailable(error, status=reply.status, body=body)
    return ImdsError(error, status=reply.status, body=body)


def _final(failure: ImdsError, reply: Reply | None, call: _Call) -> ImdsError:
    """The failure to raise once retrying stops; retryable ones say how long we tried."""
    if call.attempts > 1 or isinstance(failure, ImdsUnavailable):
        return type(failure)(f"{failure} ({call.summary()})", status=failure.status, body=failure.body)
    return failure


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime  # rare: only for an HTTP-date Retry-After

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def addresses(network: dict[str, Any], key: str) -> list[str]:
    found = []
    for nic in network.get("interface", []):
        for family in ("ipv4", "ipv6"):
            for entry in nic.get(family, {}).get("ipAddress", []):
                if entry.get(key):
                    found.append(entry[key])
    return found


# -- tags --------------------------------------------------------------------------------------------------

def tags_of(compute: dict[str, Any]) -> dict[str, str]:
    """The tags of a compute document: from ``tagsList`` (exact) when present, else from ``tags``."""
    if "tagsList" in compute:
        return {item["name"]: item["value"] for item in compute["tagsList"]}
    return parse_tags(compute.get("tags", ""))


# -- scheduled events --------------------------------------------------------------------------------------

def touches(event: dict[str, Any], compute: dict[str, Any]) -> bool:
    """Whether a scheduled event concerns the VM a compute document describes.

    Events for every VM of an availability set or scale set reach all of them, so a handler must check
    ``Resources``. It names VMs as the service does: a VM by its name (``compute.name``), a scale set
    instance as ``{vmScaleSetName}_{instanceId}`` (a uniform instance's ``compute.name``; the pair is also
    read from its resourceId, ``.../virtualMachineScaleSets/SS/virtualMachines/ID``, in case the name is
    written otherwise). Azure resource names ignore case, and so does the comparison.
    """
    names = {str(compute.get("name", "")).casefold()}
    instance = _SCALE_SET_INSTANCE.search(str(compute.get("resourceId", "")))
    if instance is not None:
        names.add(f"{instance.group(1)}_{instance.group(2)}".casefold())
    names.discard("")
    return any(isinstance(r, str) and r.casefold() in names for r in event.get("Resources", []))

