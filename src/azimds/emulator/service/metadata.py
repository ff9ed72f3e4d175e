"""The metadata service as one request handler: the real service's request rules, then the endpoints.

Order of checks (a documented choice): who is asking (in a fleet, by source address), faults, rate limit,
path, method, X-Forwarded-For, Metadata header, duplicate query parameters, api-version, then the endpoint.
Everything decided by the URL alone is computed once and cached on the VM until it changes, so a repeated request
costs a dict lookup.

Limits (spec §7.4): /metadata/identity/* has its own bucket (20 requests a second) and at most 5 requests
in flight; every other /metadata path shares the other bucket (5 a second). Both are per source address
for one VM, and per VM in a fleet.
The paths outside /metadata that the emulator publishes (token discovery and keys, CA certificates) need
no Metadata header and are not limited.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, unquote_plus

from . import choices
from .endpoints import Endpoint, Outcome
from .endpoints.attested import AttestedEndpoint
from .endpoints.events import EventsEndpoint
from .endpoints.identity import IdentityEndpoint
from .endpoints.instance import InstanceEndpoint
from .endpoints.loadbalancer import LoadBalancerEndpoint
from .endpoints.versions import VersionsEndpoint
from .faults import Fault, FaultSet
from .http import Request, Response
from .limits import RateLimiter
from .pki import Pki
from .profile import Vm
from .state import Emulation, JournalEntry

__all__ = ["MetadataService", "ServiceOptions"]

_CACHE_LIMIT = 8192  # URLs remembered per VM; a flood of distinct URLs clears it rather than grow it

UNKNOWN_PATH = Response(404, choices.UNKNOWN_PATH_BODY)
NO_SUCH_VM = Response(403, choices.NO_SUCH_VM_BODY)
FORWARDED = Response(choices.FORWARDED_STATUS, choices.FORWARDED_BODY)
DUPLICATE_QUERY = Response(400, choices.DUPLICATE_QUERY_BODY)


@dataclass(frozen=True)
class ServiceOptions:
    """How the service behaves, as opposed to what the VM is."""

    rate_limit: float = 5.0
    newest_version: str | None = None
    server_version: str = choices.SERVER_VERSION
    identity_rate_limit: float = 20.0  # /metadata/identity/*, requests per second per source address; 0: off
    identity_concurrency: int = 5  # /metadata/identity/*, requests in flight per source address; 0: off
    state_dir: str | Path | None = None  # where the CA and token keys live; None: in memory (pki.Pki)
    public_url: str | None = None  # base URL clients reach the emulator at (AIA, jwks_uri); None: set later


class MetadataService:
    """Answers /metadata/... for the emulated VM. Call it with a Request; it returns a Response (or an
    awaitable of one), and records it in the emulation's journal and metrics."""

    def __init__(self, emulation: Emulation, options: ServiceOptions | None = None, fleet: Any = None):
        self.emulation = emulation
        self.fleet = fleet  # fleet.Fleet: answer each caller as the VM its address belongs to
        self.vm: Vm = emulation.vm  # the profile's own VM (a fleet's first)
        self.options = options = options or ServiceOptions()
        self.limiter = RateLimiter(options.rate_limit)
        self.identity_limiter = RateLimiter(options.identity_rate_limit)
        self.identity_concurrency = options.identity_concurrency
        self._in_flight: dict[str, int] = {}  # identity requests being answered, per source address
        self.pki = Pki.for_state_dir(options.state_dir)
        self.public_url = (options.public_url or "").rstrip("/")
        newest = options.newest_version
        clock = emulation.clock.now
        public_url = lambda: self.public_url  # noqa: E731 - read at answer time: known once listening
        self.identity = IdentityEndpoint(newest, identities=lambda vm: vm.owner.profile.identity, pki=self.pki,
                                         clock=clock, public_url=public_url)
        self.attested = AttestedEndpoint(newest, pki=self.pki, clock=clock, public_url=public_url)
        self.endpoints: dict[str, Endpoint] = {e.name: e for e in (
            InstanceEndpoint(newest), VersionsEndpoint(newest), LoadBalancerEndpoint(newest),
            EventsEndpoint(lambda vm: vm.owner.events), self.identity, self.attested,
        )}
        self._too_many: dict[tuple[bytes, int], Response] = {}
        self.log: Callable[[JournalEntry], None] | None = None  # a structured log line per request

    @property
    def server_header(self) -> str:
        return f"IMDS/{self.options.server_version}"

    def __call__(self, request: Request) -> Any:
        started = time.perf_counter()
        emulation = self.emulation if self.fleet is None else self._member(request.peer)
        if emulation is None:
            self._record(request, NO_SUCH_VM.status, started)
            return NO_SUCH_VM
        if emulation.faults:
            fault = emulation.faults.match(request.url.partition(b"?")[0].decode("latin-1"))
            if fault is not None:
                return self._faulty(request, emulation, fault, started)
        result = self._answer(request, emulation)
        if result.__class__ is Response:
            self._record(request, result.status, started)
            return result
        return self._journaled(request, result, started)

    def _member(self, peer: str) -> Emulation | None:
        """The fleet VM a source address belongs to; the first VM for strangers, unless strict."""
        member = self.fleet.for_peer(peer)
        if member is None and not self.fleet.strict:
            return self.emulation
        return member

    def _record(self, request: Request, status: int, started: float) -> None:
        latency = time.perf_counter() - started
        url = request.url.decode("latin-1")
        emulation = self.emulation
        entry = JournalEntry(emulation.clock.now(), request.peer, request.method, url, status, latency)
        emulation.journal.append(entry)
        emulation.metrics.observe(_endpoint_label(url), status, latency)
        if self.log is not None:
            self.log(entry)

    async def _journaled(self, request: Request, pending: Any, started: float) -> Response:
        status = 500
        try:
            response = await pending
            status = response.status
            return response
        finally:
            self._record(request, status, started)

    async def _faulty(self, request: Request, emulation: Emulation, fault: Fault, started: float) -> Response:
        held = None
        if fault.latency and self.identity_concurrency and self._entry(emulation.vm, request.url)[0] is self.identity:
            # The only identity answers that take time are delayed ones: they count as in flight.
            held = request.peer
            count = self._in_flight.get(held, 0)
            if count >= self.identity_concurrency:
                response = self._throttled(1.0, self.identity_limiter)
                self._record(request, response.status, started)
                return response
            self._in_flight[held] = count + 1
        try:
            if fault.latency:
                await asyncio.sleep(fault.latency)
            response = FaultSet.response(fault)
            if response is None:
                result = self._answer(request, emulation)
                response = result if result.__class__ is Response else await result
        finally:
            if held is not None:
                left = self._in_flight[held] - 1
                if left:
                    self._in_flight[held] = left
                else:
                    del self._in_flight[held]
        self._record(request, response.status, started)
        return response

    def _entry(self, vm: Vm, url: bytes) -> tuple[Endpoint | None, Outcome, RateLimiter | None]:
        cache = vm.cache
        entry = cache.get(url)
        if entry is None:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            entry = cache[url] = self._resolve(vm, url)
        return entry

    def _answer(self, request: Request, emulation: Emulation) -> Any:
        vm = emulation.vm
        cache = vm.cache
        entry = cache.get(request.url)
        if entry is None:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            entry = cache[request.url] = self._resolve(vm, request.url)
        endpoint, outcome, limiter = entry
        if limiter is not None:
            # Per source address for one VM; per VM in a fleet, whatever address it calls from.
            wait = limiter.allow(request.peer if self.fleet is None else vm.instance["compute"]["name"])
            if wait:
                return self._throttled(wait, limiter)
        if endpoint is not None:
            if request.method not in endpoint.methods:
                return endpoint.not_allowed
            headers = request.headers
            if b"x-forwarded-for" in headers:
                return FORWARDED
            metadata = headers.get(b"metadata")
            if metadata is None or metadata.lower() != b"true":
                return endpoint.missing_header
        if outcome.__class__ is Response:
            return outcome
        return outcome(request)

    def _throttled(self, wait: float, limiter: RateLimiter) -> Response:
        seconds = max(1, math.ceil(wait))
        body = choices.IDENTITY_TOO_MANY_REQUESTS_BODY if limiter is self.identity_limiter \
            else choices.TOO_MANY_REQUESTS_BODY
        response = self._too_many.get((body, seconds))
        if response is None:
            response = self._too_many[(body, seconds)] = Response(
                429, body, headers=(("Retry-After", str(seconds)),))
        return response

    def _resolve(self, vm: Vm, url: bytes) -> tuple[Endpoint | None, Outcome, RateLimiter | None]:
        """Everything the URL alone decides: which endpoint, its answer (or how to make it), which limit."""
        raw_path, _, raw_query = url.decode("latin-1").partition("?")
        raw_path = raw_path.partition("#")[0]
        path = unquote(raw_path)
        if choices.TRAILING_SLASH_IGNORED and len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        parts = path.split("/")
        if len(parts) < 3 or parts[0] != "" or parts[1] != "metadata" or parts[2] not in self.endpoints:
            for publisher in (self.identity, self.attested):
                published = publisher.public(vm, path)
                if published is not None:
                    return None, published, None
            return None, UNKNOWN_PATH, self.limiter
        endpoint = self.endpoints[parts[2]]
        keys = parts[3:]
        known = getattr(endpoint, "paths", None)
        if known is not None and tuple(keys) not in known:
            return None, UNKNOWN_PATH, self.limiter  # as bare /metadata/identity: 404 before any other check
        limiter = self.identity_limiter if endpoint is self.identity else self.limiter
        query: dict[str, str] = {}
        for pair in raw_query.split("&"):
            if not pair:
                continue
            name, _, value = pair.partition("=")
            name = unquote_plus(name)
            if name in query:
                return endpoint, DUPLICATE_QUERY, limiter
            query[name] = unquote_plus(value)
        version = None
        if endpoint.versions is not None:
            version = query.get("api-version")
            if version not in endpoint.versions:
                return endpoint, endpoint.version_response(version), limiter
        return endpoint, endpoint.resolve(vm, keys, query, version), limiter


_LABELS = ("instance", "attested", "identity", "scheduledevents", "loadbalancer", "versions")


def _endpoint_label(url: str) -> str:
    """The metrics label of a request: the endpoint its path names, else "other" (bounded cardinality)."""
    if url.startswith("/metadata/"):
        name = url[10:].partition("/")[0].partition("?")[0]
        if name in _LABELS:
            return name
    return "other"
