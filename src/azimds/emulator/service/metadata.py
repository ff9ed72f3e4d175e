"""The metadata port as one request handler: the real service's request rules, then the endpoints.

Order of checks (a documented choice): who is asking (in a fleet, by source address), faults, rate limit,
path, method, X-Forwarded-For, Metadata header, duplicate query parameters, api-version, then the endpoint.
Everything decided by the URL alone is computed once and cached on the VM until it changes, so a repeated
request costs a dict lookup. What the URL decided is also kept on its request (``Request.kept``) with the
world's stamp: a poller's repeat, handed the same Request by the HTTP core, is answered (a fixed answer as it is,
a token or an event document made anew) without looking for its VM while the stamp holds and no fault is set
(with a thousand VMs calling, each VM's objects are cold in the CPU's caches). The rate limit and the journal
still count every request.

Limits (spec §7.4): /metadata/identity/* has its own bucket (20 requests a second) and at most 5 requests
in flight; every other /metadata path shares the other bucket (5 a second). Both are per source address
for one VM, and per VM in a fleet. The paths outside /metadata that the emulator publishes (token discovery
and keys, CA certificates) need no Metadata header and are not limited.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus

from ...errors import EngineUnavailable, NoFreeInstance
from ..model.faults import FaultRule
from . import choices, responses
from .endpoints.attested import AttestedEndpoint
from .endpoints.base import Endpoint, Outcome
from .endpoints.events import EventsEndpoint
from .endpoints.identity import IdentityEndpoint
from .endpoints.instance import InstanceEndpoint
from .endpoints.loadbalancer import LoadBalancerEndpoint
from .endpoints.reprovision import ReprovisionEndpoint
from .endpoints.root import RootEndpoint
from .endpoints.versions import VersionsEndpoint
from .http import Request, Response
from .limits import RateLimiter
from .pki import Pki
from .ports import FaultsView, VmView, WorldView

__all__ = ["MetadataService", "ServiceOptions"]

_CACHE_LIMIT = 8192  # URLs remembered per VM; a flood of distinct URLs clears it rather than grow it

Entry = tuple[Endpoint | None, Outcome, RateLimiter | None]


@dataclass(frozen=True)
class ServiceOptions:
    """How the metadata port behaves (from ``config.Config``)."""

    rate_limit: float = 5.0
    newest_version: str | None = None
    server_version: str = "150.870.65.1253"
    identity_rate_limit: float = 20.0  # /metadata/identity/*, requests per second; 0: off
    identity_concurrency: int = 5  # /metadata/identity/*, requests in flight; 0: off
    events_first_call_delay: float = 0.0  # seconds a VM's first scheduled-events request waits; 0: off


#: What the URL decided, kept on its request (``Request.kept``): the world's stamp as it was, the VM's faults, the
#: fixed answer and its status or what makes the answer at each ask, and the rate limit it counts against (with its
#: key).
_Kept = tuple[object, FaultsView, Response | None, Callable[[Request], Any] | None, int, RateLimiter | None, str]


class MetadataService:
    """Answers /metadata/... for the world's VMs. Call it with a Request; it returns a Response (or an
    awaitable of one), and reports it to the world's journal and metrics."""

    def __init__(self, world: WorldView, options: ServiceOptions, pki: Pki):
        self.world = world
        self.options = options
        self.limiter = RateLimiter(options.rate_limit)
        self.identity_limiter = RateLimiter(options.identity_rate_limit)
        self.identity_concurrency = options.identity_concurrency
        self._in_flight: dict[str, int] = {}  # identity requests being answered, per source address
        self.pki = pki
        self.public_url = ""  # base URL clients reach the metadata port at (AIA, jwks_uri): set once listening
        newest = options.newest_version

        def public_url() -> str:  # read at answer time: known once listening
            return self.public_url

        self.identity = IdentityEndpoint(newest, pki=pki, clock=world.now, public_url=public_url)
        self.attested = AttestedEndpoint(newest, pki=pki, clock=world.now, public_url=public_url)
        self.endpoints: dict[str, Endpoint] = {e.name: e for e in (
            RootEndpoint(newest), InstanceEndpoint(newest), VersionsEndpoint(newest), LoadBalancerEndpoint(newest),
            EventsEndpoint(options.events_first_call_delay, world.now), self.identity, self.attested,
            ReprovisionEndpoint(newest),
        )}
        self._too_many: dict[tuple[bool, int], Response] = {}
        self._faults: dict[FaultRule, Response | None] = {}

    @property
    def server_header(self) -> str:
        return f"IMDS/{self.options.server_version}"

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        started = time.perf_counter()
        world = self.world
        kept: _Kept | None = request.kept
        if kept is not None:  # this very request was answered before on its connection (a poller's repeat)
            stamp, faults, fixed, making, status, limiter, key = kept
            if stamp is world.stamp and not faults.active:  # nothing it depends on moved: nothing of the VM touched
                if limiter is not None:
                    wait = limiter.allow(key)
                    if wait:
                        fixed = self._throttled(wait, limiter)
                        status = fixed.status
                if fixed is not None:  # given unread (its status was kept with it): in a fleet each VM's is cold
                    world.record((world.now(), request.peer, request.method, request.url, status,
                                  time.perf_counter() - started))  # ``_record``, inlined: the hottest path
                    return fixed
                assert making is not None
                made = making(request)
                if isinstance(made, Response):
                    self._record(request, made.status, started)
                    return made
                return self._journaled(request, made, started)
        stamp = world.stamp
        try:
            vm = world.vm_for(request.peer)
        except NoFreeInstance:
            vm, refusal = None, responses.NO_FREE_INSTANCE
        except EngineUnavailable:
            vm, refusal = None, responses.CLAIM_UNAVAILABLE
        else:
            refusal = responses.NO_SUCH_VM
        if vm is None:
            self._record(request, refusal.status, started)
            return refusal
        faults = vm.faults
        if faults.active:
            fault = faults.match(request.url.partition(b"?")[0].decode("latin-1"))
            if fault is not None:
                return self._faulty(request, vm, fault, started)
        result = self._answer(request, vm, stamp)
        if result.__class__ is Response:  # the common case; cheaper than isinstance on the hot path
            self._record(request, result.status, started)
            return result
        return self._journaled(request, result, started)  # type: ignore[arg-type]

    def _record(self, request: Request, status: int, started: float) -> None:
        world = self.world
        world.record((world.now(), request.peer, request.method, request.url, status, time.perf_counter() - started))

    async def _journaled(self, request: Request, pending: Awaitable[Response], started: float) -> Response:
        status = 500
        try:
            response = await pending
            status = response.status
            return response
        finally:
            self._record(request, status, started)

    async def _faulty(self, request: Request, vm: VmView, fault: FaultRule, started: float) -> Response:
        held = None
        if fault.latency and self.identity_concurrency and self._entry(vm, request.url)[0] is self.identity:
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
            faulted = self._fault_response(fault)
            if faulted is None:
                result = self._answer(request, vm)
                response = result if isinstance(result, Response) else await result
            else:
                response = faulted
        finally:
            if held is not None:
                left = self._in_flight[held] - 1
                if left:
                    self._in_flight[held] = left
                else:
                    del self._in_flight[held]
        self._record(request, response.status, started)
        return response

    def _fault_response(self, fault: FaultRule) -> Response | None:
        """The answer a fault gives, or None when it only delays the normal answer."""
        if fault not in self._faults:
            if fault.drop:
                self._faults[fault] = Response(0, drop=True)
            elif fault.status is not None:
                self._faults[fault] = responses.fault(fault.status, fault.retry_after)
            else:
                self._faults[fault] = None
        return self._faults[fault]

    def _entry(self, vm: VmView, url: bytes) -> Entry:
        cache = vm.cache
        entry: Entry | None = cache.get(url)
        if entry is None:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            entry = cache[url] = self._resolve(vm, url)
        return entry

    def _answer(self, request: Request, vm: VmView, stamp: object = None) -> Response | Awaitable[Response]:
        """The answer to ``request`` as ``vm``. With the world's ``stamp`` (read before the VM was found), what the
        URL decided is kept on the request with what it depends on, for ``__call__`` to use again while they hold."""
        cache = vm.cache
        entry: Entry | None = cache.get(request.url)
        if entry is None:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            entry = cache[request.url] = self._resolve(vm, request.url)
        endpoint, outcome, limiter = entry
        key = ""
        if limiter is not None:
            # Per source address for one VM; per VM in a fleet, whatever address it calls from.
            key = vm.name if self.world.per_vm_limits else request.peer
            wait = limiter.allow(key)
            if wait:
                return self._throttled(wait, limiter)
        if endpoint is not None:
            if request.method not in endpoint.methods:
                return endpoint.refuse_method(request)
            headers = request.headers
            if b"x-forwarded-for" in headers:
                return responses.FORWARDED
            metadata = headers.get(b"metadata")
            if (metadata is None or metadata.lower() != b"true") and endpoint.needs_header(request):
                return endpoint.missing_header
        if stamp is not None and vm.steady and self.world.fixed_peers:
            # What the URL decided holds for this request while the VM's documents and the VM its address belongs
            # to (the stamp) and the absence of faults hold: a fixed answer, or what makes one (a token, an event
            # document) each time; the rate limit still counts each time.
            if isinstance(outcome, Response):
                request.kept = (stamp, vm.faults, outcome, None, outcome.status, limiter, key)
            else:
                request.kept = (stamp, vm.faults, None, outcome, 0, limiter, key)
        if outcome.__class__ is Response:
            return outcome
        answer: Response | Awaitable[Response] = outcome(request)  # type: ignore[operator]
        return answer

    def _throttled(self, wait: float, limiter: RateLimiter) -> Response:
        seconds = max(1, math.ceil(wait))
        identity = limiter is self.identity_limiter
        response = self._too_many.get((identity, seconds))
        if response is None:
            response = self._too_many[(identity, seconds)] = responses.too_many_requests(seconds, identity)
        return response

    def _resolve(self, vm: VmView, url: bytes) -> Entry:
        """Everything the URL alone decides: which endpoint, its answer (or how to make it), which limit."""
        raw_path, _, raw_query = url.decode("latin-1").partition("?")
        raw_path = raw_path.partition("#")[0]
        path = unquote(raw_path)
        if choices.TRAILING_SLASH_IGNORED and len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        parts = path.split("/")
        if len(parts) == 2:
            parts.append("")  # /metadata itself: the root endpoint
        if len(parts) < 3 or parts[0] != "" or parts[1] != "metadata" or parts[2] not in self.endpoints:
            for publisher in (self.identity, self.attested):
                published = publisher.public(vm, path)
                if published is not None:
                    return None, published, None
            return None, responses.UNKNOWN_PATH, self.limiter
        endpoint = self.endpoints[parts[2]]
        keys = parts[3:]
        if endpoint.paths is not None and tuple(keys) not in endpoint.paths:
            return None, responses.UNKNOWN_PATH, self.limiter  # as bare /metadata/identity: 404 before any check
        limiter = self.identity_limiter if endpoint is self.identity else self.limiter
        query: dict[str, str] = {}
        for pair in raw_query.split("&"):
            if not pair:
                continue
            name, _, value = pair.partition("=")
            name = unquote_plus(name)
            if name in query:
                return endpoint, responses.DUPLICATE_QUERY, limiter
            query[name] = unquote_plus(value)
        version = None
        if endpoint.versions is not None:
            version = query.get("api-version")
            if version not in endpoint.versions:
                return endpoint, endpoint.version_response(version), limiter
        return endpoint, endpoint.resolve(vm, keys, query, version), limiter


_LABELS = ("instance", "attested", "identity", "scheduledevents", "loadbalancer", "versions", "reprovisiondata")


def endpoint_label(url: str) -> str:
    """The metrics label of a request: the endpoint its path names, else "other" (bounded cardinality)."""
    label = _LABEL_CACHE.get(url)
    if label is None:
        label = "other"
        if url.startswith("/metadata/"):
            name = url[10:].partition("/")[0].partition("?")[0]
            if name in _LABELS:
                label = name
        if len(_LABEL_CACHE) >= 4096:  # a flood of distinct URLs clears it rather than grow it
            _LABEL_CACHE.clear()
        _LABEL_CACHE[url] = label
    return label


_LABEL_CACHE: dict[str, str] = {}
