"""/metadata/identity: managed-identity tokens and the tenant, plus the discovery document and key set that
validate the tokens (served outside /metadata, without the Metadata header).

``GET /metadata/identity/oauth2/token?api-version=V&resource=R[&client_id=|object_id=|msi_res_id=|mi_res_id=]
[&bypass_cache=true]`` answers the real 200 (every value a string, keys sorted) or the real 400s; tokens are
cached per identity and resource, as the real service does, so ``expires_in`` falls from one call to the next.
``GET /metadata/identity/info?api-version=V`` answers ``{"tenantId":"…"}``.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from typing import Any

from ....azure import ENDPOINT_INTRODUCED, IDENTITY_SELECTORS
from ...model.identities import Identities, Identity
from .. import choices, render, responses
from ..http import Request, Response
from ..pki import Pki
from ..ports import VmView
from ..tokens import EXT_EXPIRES_IN, Token, TokenIssuer, discovery
from .base import Endpoint, Outcome

__all__ = ["IdentityEndpoint", "select"]

_TOKEN_CACHE_LIMIT = 10_000  # (identity, resource) pairs; a flood of distinct resources clears it
GET_ONLY = responses.method_not_allowed("GET")


class IdentityEndpoint(Endpoint):
    name = "identity"
    introduced = ENDPOINT_INTRODUCED["identity"]
    missing_header = responses.IDENTITY_MISSING_HEADER
    paths = frozenset({("oauth2", "token"), ("info",)})  # anything else under /metadata/identity is a 404

    def __init__(self, newest: str | None, *, pki: Pki, clock: Callable[[], float], public_url: Callable[[], str]):
        super().__init__(newest)
        self.issuer = TokenIssuer(pki)
        self.clock = clock
        self.public_url = public_url
        self.tokens: dict[tuple[str, str, str], Token] = {}
        # The answer for a cached token changes once a second (expires_in): made once per token and second.
        self._answers: dict[tuple[str, str, str], tuple[Token, int, Response]] = {}

    # -- /metadata/identity/... ------------------------------------------------------------------------------
    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        identities = vm.identities
        if keys == ["info"]:
            return Response(200, render.to_json({"tenantId": identities.tenant_id}))
        resource = query.get("resource")
        if not resource:
            return responses.IDENTITY_NO_RESOURCE
        selectors = [(name, query[name]) for name in IDENTITY_SELECTORS if query.get(name)]
        if len(selectors) > 1:
            return responses.IDENTITY_SELECTOR_CONFLICT
        chosen = select(identities, selectors[0] if selectors else None)
        if isinstance(chosen, Response):
            return chosen
        if not identities.audiences.known(resource):
            tenant_name = identities.tenant_name
            return lambda request: responses.invalid_resource(resource, tenant_name, self.clock())
        bypass = query.get("bypass_cache", "").lower() == choices.BYPASS_CACHE_VALUE
        tenant = identities.tenant_id
        vm_id = str(vm.instance["compute"]["resourceId"])

        key = (vm_id, chosen.object_id, resource)

        def answer(request: Request) -> Any:
            made = self._answers.get(key)
            if made is not None and not bypass and made[1] == int(self.clock()):  # kept with its token: one key
                return made[2]  # this second's answer, made already (its request id is made as it is sent)
            if self.issuer.ready:
                return self.token(chosen, tenant, resource, bypass, vm_id)
            # the first token reads or makes the key
            return _off_loop(self.token, chosen, tenant, resource, bypass, vm_id)

        return answer

    def token(self, identity: Identity, tenant: str, resource: str, bypass: bool, vm_id: str) -> Response:
        """The token answer: the cached token for (VM, identity, resource) while it has time left, else a new one;
        made and kept for this second (``answer`` hands out the kept one until the second or the token changes)."""
        now = self.clock()
        key = (vm_id, identity.object_id, resource)
        token = self.tokens.get(key)
        if bypass or token is None or token.expires_on - now < choices.TOKEN_REFRESH_MARGIN:
            if len(self.tokens) >= _TOKEN_CACHE_LIMIT:
                self.tokens.clear()
                self._answers.clear()
            token = self.tokens[key] = self.issuer.issue(identity, tenant, resource, now, vm_id)
        second = int(now)
        body = render.to_json({
            "access_token": token.access_token, "client_id": token.client_id,
            "expires_in": str(max(0, token.expires_on - second)), "expires_on": str(token.expires_on),
            "ext_expires_in": str(EXT_EXPIRES_IN), "not_before": str(token.not_before),
            "resource": token.resource, "token_type": "Bearer",
        })
        made = self._answers[key] = (token, second, Response(200, body, each=_request_id_line))
        return made[2]

    # -- outside /metadata: what validates the tokens --------------------------------------------------------
    def public(self, vm: VmView, path: str) -> Outcome | None:
        """The discovery document or the key set, if ``path`` names one (None otherwise)."""
        tenant = vm.identities.tenant_id
        lowered = path.lower()
        if lowered in {p.format(tenant=tenant) for p in choices.DISCOVERY_PATHS}:
            return _get_only(lambda: render.to_json(discovery(tenant, self.public_url(), choices.JWKS_PATHS[0])))
        if lowered in {p.format(tenant=tenant) for p in choices.JWKS_PATHS}:
            return _get_only(lambda: render.to_json(self.issuer.jwks()))
        return None


def select(identities: Identities, selector: tuple[str, str] | None) -> Identity | Response:
    """The identity a token request means, or the real 400 saying why there is none."""
    if selector is None:
        if identities.system is not None:
            return identities.system
        if len(identities.user) == 1:
            return identities.user[0]
        return responses.IDENTITY_MULTIPLE if identities.user else responses.IDENTITY_NOT_FOUND
    name, value = selector
    value = value.lower()
    candidates = identities.all if choices.IDENTITY_SYSTEM_SELECTABLE else identities.user
    for identity in candidates:
        if name == "client_id" and identity.client_id == value:
            return identity
        if name == "object_id" and identity.object_id == value:
            return identity
        if name in ("msi_res_id", "mi_res_id") and identity.kind == "user" and identity.resource_id.lower() == value:
            return identity
    return responses.IDENTITY_NOT_FOUND


_ID_TAILS = tuple(b"%03x\r\n" % n for n in range(4096))  # the last three hex digits of 4,096 request ids in a row
_ID_COUNT = itertools.count()  # next() of it is atomic: answers sent from two loops' threads never share a number
#: The current line up to the tail: the header's name and a random head of 33 characters (one from the start, so
#: that a thread never sees none while another renews it).
_ID_HEAD = [b"x-ms-request-id: " + str(uuid.uuid4())[:33].encode()]


def _request_id_line() -> bytes:
    """The ``x-ms-request-id`` line, a version-4 GUID as the real service sends one: a random head of 33
    characters (a fresh GUID's), renewed every 4,096 answers, and the next of 4,096 tails, so that every answer has
    its own (a correlation id, not a secret; ``str(uuid.uuid4())`` per request costs as much as the rest of the
    answer). Made as each answer is sent (``Response.each``)."""
    index = next(_ID_COUNT) & 4095
    if not index:
        _ID_HEAD[0] = b"x-ms-request-id: " + str(uuid.uuid4())[:33].encode()
    return _ID_HEAD[0] + _ID_TAILS[index]


def _get_only(body: Callable[[], bytes]) -> Callable[[Request], Response]:
    def answer(request: Request) -> Response:
        return Response(200, body()) if request.method == "GET" else GET_ONLY

    return answer


async def _off_loop(function: Callable[..., Response], *args: Any) -> Response:
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)
