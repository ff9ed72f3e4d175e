"""Managed-identity access tokens: RS256 JWTs shaped like the v1.0 tokens Entra ID issues to managed
identities, signed with the emulator's token key, and the JWKS and OpenID discovery document that let a
service under test validate them.

Claims (spec §7.1): ``aud`` (the resource as requested), ``iss`` and ``idp``
(``https://sts.windows.net/<tenant>/``), ``iat``/``nbf``/``exp``, ``aio``, ``appid`` (the identity's client
id), ``appidacr`` "2", ``idtyp`` "app", ``oid`` and ``sub`` (its object id), ``rh``, ``tid``, ``uti``,
``ver`` "1.0", ``xms_az_rid`` (the VM's resource id), ``xms_cae`` "1", ``xms_mirid`` (the identity's resource
id; the VM's for the system-assigned identity) and ``xms_tcdt``; both resource ids spell ``resourcegroups`` in
lower case, as real tokens do (2023 capture). The header carries ``kid`` and ``x5t``, both the signing
certificate's SHA-1 thumbprint, as Entra ID's do. PyJWT is imported when the first token is made.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from typing import Any

from ..model.identities import Identity
from .choices import TOKEN_LIFETIME, TOKEN_NOT_BEFORE_SKEW
from .pki import Pki, thumbprint

__all__ = ["EXT_EXPIRES_IN", "Token", "TokenIssuer", "issuer_url"]

#: ``ext_expires_in`` of every real answer: a constant, not a countdown (azure-sdk-for-python recordings).
EXT_EXPIRES_IN = 86399


@dataclass(frozen=True)
class Token:
    access_token: str
    client_id: str
    resource: str
    not_before: int  # epoch seconds
    expires_on: int  # epoch seconds; expires_on - not_before = 86700, as real tokens


def issuer_url(tenant: str) -> str:
    """``iss`` of a v1.0 token, and the ``issuer`` of its discovery document."""
    return f"https://sts.windows.net/{tenant}/"


class TokenIssuer:
    """Signs tokens with the token key of a Pki (made on first use)."""

    def __init__(self, pki: Pki):
        self.pki = pki
        self._signing: tuple[Any, dict[str, str]] | None = None

    @property
    def ready(self) -> bool:
        """Whether the key is loaded (else the first token also makes or reads it: slow, do it off-loop)."""
        return self._signing is not None

    def _key(self) -> tuple[Any, dict[str, str]]:
        if self._signing is None:
            cert, key = self.pki.token_signer()
            x5t = thumbprint(cert)
            self._signing = (key, {"typ": "JWT", "alg": "RS256", "x5t": x5t, "kid": x5t})
        return self._signing

    def issue(self, identity: Identity, tenant: str, resource: str, now: float, vm_id: str) -> Token:
        import jwt

        key, header = self._key()
        issued = int(now)
        not_before = issued - TOKEN_NOT_BEFORE_SKEW
        expires = issued + TOKEN_LIFETIME
        iss = issuer_url(tenant)
        claims = {
            "aud": resource, "iss": iss, "iat": not_before, "nbf": not_before, "exp": expires,
            "aio": _opaque(42), "appid": identity.client_id, "appidacr": "2", "idp": iss, "idtyp": "app",
            "oid": identity.object_id, "rh": f"0.{_opaque(64)}.", "sub": identity.object_id, "tid": tenant,
            "uti": _opaque(16), "ver": "1.0", "xms_az_rid": _token_form(vm_id), "xms_cae": "1",
            "xms_mirid": _token_form(identity.resource_id), "xms_tcdt": _tenant_created(tenant),
        }
        token = jwt.encode(claims, key, algorithm="RS256", headers=header)
        return Token(token, identity.client_id, resource, not_before, expires)

    def jwks(self) -> dict[str, Any]:
        """The public key as Entra ID's ``/discovery/keys`` lists its keys."""
        cert, key = self.pki.token_signer()
        from cryptography.hazmat.primitives.serialization import Encoding

        numbers = key.public_key().public_numbers()
        kid = thumbprint(cert)
        return {"keys": [{
            "kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": _b64int(numbers.n), "e": _b64int(numbers.e),
            "x5c": [base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")],
        }]}


def discovery(tenant: str, base_url: str, jwks_path: str) -> dict[str, Any]:
    """An OpenID Connect discovery document whose ``issuer`` is the tokens' ``iss`` and whose
    ``jwks_uri`` is the emulator's key set (the other endpoints are listed for form; the emulator does
    not serve them)."""
    login = f"{base_url}/{tenant}"
    return {
        "authorization_endpoint": f"{login}/oauth2/authorize",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid", "appid", "idtyp",
                             "xms_mirid"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "issuer": issuer_url(tenant),
        "jwks_uri": base_url + jwks_path,
        "response_modes_supported": ["query", "fragment", "form_post"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "subject_types_supported": ["pairwise"],
        "tenant_region_scope": "NA",
        "token_endpoint": f"{login}/oauth2/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
    }


_GROUPS = re.compile("/resourcegroups/", re.IGNORECASE)


def _token_form(resource_id: str) -> str:
    """A resource id as tokens carry it: ``/resourcegroups/`` in lower case, the rest as it is."""
    return _GROUPS.sub("/resourcegroups/", resource_id, count=1)


def _opaque(nbytes: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).rstrip(b"=").decode("ascii")


def _b64int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _tenant_created(tenant: str) -> int:
    """``xms_tcdt``, the tenant's creation time: a stable made-up instant between 2012 and 2020."""
    return 1325376000 + int(tenant.replace("-", "")[:8], 16) % (8 * 365 * 86400)
