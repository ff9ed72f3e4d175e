"""/metadata/identity: managed-identity tokens and the tenant, plus the discovery document and key set that
validate the tokens (served outside /metadata, without the Metadata header).

``GET /metadata/identity/oauth2/token?api-version=V&resource=R[&client_id=|object_id=|msi_res_id=|mi_res_id=]
[&bypass_cache=true]`` answers the real 200 (every value a string, keys sorted) or the real 400s; tokens are
cached per identity and resource, as the real service does, so ``expires_in`` falls from one call to the next.
``GET /metadata/identity/info?api-version=V`` answers ``{"tenantId":"…"}``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Callable

from .. import catalog, choices, render
from .. import profile as profiles
from ..http import Request, Response
from ..pki import Pki
from ..profile import Identities, Identity, Vm
from ..tokens import EXT_EXPIRES_IN, Token, TokenIssuer, discovery
from . import Endpoint, Outcome

__all__ = ["IdentityEndpoint"]

#: The identity family's own error bodies (real, Content-Length-verified; spec §7.3).
MISSING_HEADER = Response(400, b'{"error":"invalid_request","error_description":"Required metadata header not specified"}')
NOT_FOUND = Response(400, b'{"error":"invalid_request","error_description":"Identity not found"}')
MULTIPLE = Response(400, b'{"error":"invalid_request","error_description":"Multiple user assigned identities exist, '
                         b'please specify the clientId / resourceId of the identity in the token request"}')
NO_RESOURCE = Response(400, choices.IDENTITY_NO_RESOURCE_BODY)
SELECTOR_CONFLICT = Response(400, choices.IDENTITY_SELECTOR_CONFLICT_BODY)
UNKNOWN_PATH = Response(404, choices.UNKNOWN_PATH_BODY)
GET_ONLY = Response(405, choices.METHOD_NOT_ALLOWED_BODY, headers=(("Allow", "GET"),))

_TOKEN_CACHE_LIMIT = 10_000  # (identity, resource) pairs; a flood of distinct resources clears it


class IdentityEndpoint(Endpoint):
    name = "identity"
    introduced = catalog.ENDPOINT_INTRODUCED["identity"]
    missing_header = MISSING_HEADER
    paths = frozenset({("oauth2", "token"), ("info",)})  # anything else under /metadata/identity is a 404

    def __init__(self, newest: str | None, *, identities: Callable[[Vm], Identities | None], pki: Pki,
                 clock: Callable[[], float], public_url: Callable[[], str]):
        super().__init__(newest)
        self.identities_for = identities
        self.issuer = TokenIssuer(pki)
        self.clock = clock
        self.public_url = public_url
        self.tokens: dict[tuple[str, str], Token] = {}

    def identities(self, vm: Vm) -> Identities:
        found = self.identities_for(vm)
        return found if found is not None else profiles.no_identities(vm.instance["compute"])

    # -- /metadata/identity/... ------------------------------------------------------------------------------
    def resolve(self, vm: Vm, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        identities = self.identities(vm)
        if keys == ["info"]:
            return Response(200, render.to_json({"tenantId": identities.tenant_id}))
        resource = query.get("resource")
        if not resource:
            return NO_RESOURCE
        selectors = [(name, query[name]) for name in catalog.IDENTITY_SELECTORS if query.get(name)]
        if len(selectors) > 1:
            return SELECTOR_CONFLICT
        chosen = select(identities, selectors[0] if selectors else None)
        if chosen.__class__ is Response:
            return chosen  # type: ignore[return-value]
        bypass = query.get("bypass_cache", "").lower() == choices.BYPASS_CACHE_VALUE
        tenant = identities.tenant_id

        def answer(request: Request) -> Any:
            if self.issuer.ready:
                return self.token(chosen, tenant, resource, bypass)  # type: ignore[arg-type]
            return _off_loop(self.token, chosen, tenant, resource, bypass)  # the first token reads or makes the key

        return answer

    def token(self, identity: Identity, tenant: str, resource: str, bypass: bool) -> Response:
        """The token answer: the cached token for (identity, resource) while it has time left, else a new one."""
        now = self.clock()
        key = (identity.object_id, resource)
        token = self.tokens.get(key)
        if bypass or token is None or token.expires_on - now < choices.TOKEN_REFRESH_MARGIN:
            if len(self.tokens) >= _TOKEN_CACHE_LIMIT:
                self.tokens.clear()
            token = self.tokens[key] = self.issuer.issue(identity, tenant, resource, now)
        body = render.to_json({
            "access_token": token.access_token, "client_id": token.client_id,
            "expires_in": str(max(0, token.expires_on - int(now))), "expires_on": str(token.expires_on),
            "ext_expires_in": str(EXT_EXPIRES_IN), "not_before": str(token.not_before),
            "resource": token.resource, "token_type": "Bearer",
        })
        return Response(200, body, headers=(("x-ms-request-id", str(uuid.uuid4())),))

    # -- outside /metadata: what validates the tokens --------------------------------------------------------
    def public(self, vm: Vm, path: str) -> Outcome | None:
        """The discovery document or the key set, if ``path`` names one (None otherwise)."""
        tenant = self.identities(vm).tenant_id
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
        return MULTIPLE if identities.user else NOT_FOUND
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
    return NOT_FOUND


def _get_only(body: Callable[[], bytes]) -> Callable[[Request], Response]:
    def answer(request: Request) -> Response:
        return Response(200, body()) if request.method == "GET" else GET_ONLY

    return answer


async def _off_loop(function: Callable[..., Response], *args: Any) -> Response:
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)
