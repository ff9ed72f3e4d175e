"""/metadata/attested/document: the VM's identity signed as PKCS#7, as the real service signs it, plus the
emulator's CA certificates (the intermediate at the signing certificate's AIA URL).

The signed content is compact JSON, keys sorted, with exactly the fields of the requested api-version
(``azure.ATTESTED_FIELDS``), a 6-hour ``timeStamp`` window and, without a ``nonce``, the default nonce:
``expiresOn`` as ``YYYYMMDD-HHMMSS`` (as in every real document).

A document changes once a second (its ``timeStamp``): each URL's answer is made once a second and kept. Making
one signs it with RSA (~0.5 ms), always on a signing thread, one per core (the signing library lets other threads
run meanwhile), so a flood of fresh nonces never holds up other requests; requests for a URL whose document is
being signed wait for that one signature.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime as dt
import functools
import os
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
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _signers(self) -> concurrent.futures.ThreadPoolExecutor:
        """Threads that sign, one per core: more would only take the interpreter's lock from the loop more often
        (a signature holds it for ~10% of its time)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="azimds-sign")
        return self._pool

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

        latest = _Latest()

        def answer(request: Request) -> Any:
            aia = self.public_url() + INTERMEDIATE_PATH
            key = (int(self.clock()), aia)
            if latest.key == key:
                return latest.response
            if latest.pending is None or latest.pending_key != key:
                latest.pending_key = key
                latest.pending = asyncio.get_running_loop().run_in_executor(
                    self._signers(), self.document, fixed, nonce, domain, region, aia, key[0])
                latest.pending.add_done_callback(functools.partial(latest.made, key))
            return asyncio.shield(latest.pending)  # one request given up does not cancel the others' signature

        return answer

    def document(self, fixed: dict[str, Any], nonce: str | None, domain: str, region: str, aia: str,
                 now: int) -> Response:
        created = dt.datetime.fromtimestamp(now, dt.UTC)
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


class _Latest:
    """One URL's newest document: its answer for (second, AIA URL), and the signature being made, if any."""

    __slots__ = ("key", "pending", "pending_key", "response")

    def __init__(self) -> None:
        self.key: tuple[int, str] | None = None
        self.response: Response | None = None
        self.pending: asyncio.Future[Response] | None = None
        self.pending_key: tuple[int, str] | None = None

    def made(self, key: tuple[int, str], future: asyncio.Future[Response]) -> None:
        if future is self.pending:
            self.pending = self.pending_key = None
        if not future.cancelled() and future.exception() is None:  # out of order at worst: one more signature
            self.key, self.response = key, future.result()
