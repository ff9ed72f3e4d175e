"""/metadata/attested/document: the VM's identity signed as PKCS#7, as the real service signs it, plus the
emulator's CA certificates (the intermediate at the signing certificate's AIA URL).

The signed content is compact JSON, keys sorted, with exactly the fields of the requested api-version
(``azure.ATTESTED_FIELDS``), a 6-hour ``timeStamp`` window and, without a ``nonce``, the default nonce:
``expiresOn`` as ``YYYYMMDD-HHMMSS`` (as in every real document).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from ....azure import ATTESTED_VALIDITY, ENDPOINT_INTRODUCED, TIMESTAMP_FORMAT, attested_fields, cloud_domain
from .. import choices, render, responses
from ..http import Request, Response
from ..pki import INTERMEDIATE_PATH, ROOT_PATH, Pki
from ..ports import VmView
from .base import Endpoint, Outcome

__all__ = ["AttestedEndpoint"]

VALIDITY = dt.timedelta(seconds=ATTESTED_VALIDITY)
GET_ONLY = responses.method_not_allowed("GET")
PKIX_CERT = "application/pkix-cert"
_NONCE = re.compile(choices.ATTESTED_NONCE_PATTERN)


class AttestedEndpoint(Endpoint):
    name = "attested"
    introduced = ENDPOINT_INTRODUCED["attested"]
    paths = frozenset({("document",)})

    def __init__(self, newest: str | None, *, pki: Pki, clock: Callable[[], float], public_url: Callable[[], str]):
        super().__init__(newest)
        self.pki = pki
        self.clock = clock
        self.public_url = public_url

    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        assert version is not None
        nonce = query.get("nonce") or None
        if nonce is not None and not _NONCE.fullmatch(nonce):
            return responses.ATTESTED_BAD_NONCE
        compute = vm.instance["compute"]
        fields = attested_fields(version)
        plan = compute.get("plan") or {}
        known = {
            "licenseType": compute.get("licenseType", ""),
            "plan": {k: plan.get(k, "") for k in ("name", "product", "publisher")},
            "sku": compute.get("sku", ""),
            "subscriptionId": compute.get("subscriptionId", ""),
            "vmId": compute.get("vmId", ""),
        }
        fixed = {name: value for name, value in known.items() if name in fields}
        domain = cloud_domain(compute.get("azEnvironment") or choices.ATTESTED_UNKNOWN_CLOUD)
        region = compute.get("location", "")

        def answer(request: Request) -> Any:
            aia = self.public_url() + INTERMEDIATE_PATH
            if self.pki.has_leaf(domain, region, aia):
                return self.document(fixed, nonce, domain, region, aia)
            loop = asyncio.get_running_loop()  # the first document reads or makes the CA: not on the loop
            return loop.run_in_executor(None, self.document, fixed, nonce, domain, region, aia)

        return answer

    def document(self, fixed: dict[str, Any], nonce: str | None, domain: str, region: str, aia: str) -> Response:
        created = dt.datetime.fromtimestamp(int(self.clock()), dt.UTC)
        expires = created + VALIDITY
        content = dict(fixed)
        content["nonce"] = nonce if nonce is not None else expires.strftime("%Y%m%d-%H%M%S")
        content["timeStamp"] = {"createdOn": created.strftime(TIMESTAMP_FORMAT),
                                "expiresOn": expires.strftime(TIMESTAMP_FORMAT)}
        signature = self.pki.sign_attested(render.to_json(content), domain, region, aia)
        return Response(200, render.to_json({"encoding": "pkcs7",
                                             "signature": base64.b64encode(signature).decode("ascii")}))

    def public(self, vm: VmView, path: str) -> Outcome | None:
        """The CA certificates, DER, if ``path`` names one (None otherwise)."""
        if path not in (INTERMEDIATE_PATH, ROOT_PATH):
            return None
        which = "intermediate" if path == INTERMEDIATE_PATH else "root"

        def answer(request: Request) -> Response:
            return Response(200, self.pki.der(which), PKIX_CERT) if request.method == "GET" else GET_ONLY

        return answer
