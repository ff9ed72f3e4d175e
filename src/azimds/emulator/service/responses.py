"""Every fixed answer the metadata port gives, each written once: the real bodies where they were captured,
the chosen ones (see ``choices``) where they were not.

Bodies written ``{ "error": "…" }`` (spaces inside the braces) copy the serializer real IMDS uses for its
instance-path errors; compact ones copy its api-version, identity and load balancer errors (spec §10).
``REAL`` marks bytes seen on a real VM; ``CHOSEN`` a decision recorded in ``choices.CHOICES``.
"""

from __future__ import annotations

import json

from ...azure import API_VERSION_ERROR, NO_LOADBALANCER
from .http import REASONS, Request, Response

__all__ = [
    "APPROVED", "ATTESTED_BAD_NONCE", "BAD_PARAMETER", "DUPLICATE_QUERY", "EVENTS_MALFORMED", "EVENTS_WRONG_FAMILY",
    "FORWARDED", "IDENTITY_MISSING_HEADER", "IDENTITY_MULTIPLE", "IDENTITY_NOT_FOUND", "IDENTITY_NO_RESOURCE",
    "IDENTITY_SELECTOR_CONFLICT", "INSTANCE_NOT_FOUND", "LEAF_NEEDS_TEXT", "MISSING_HEADER", "NO_LOADBALANCER_404",
    "NO_SUCH_VM", "REPROVISION_NOT_YET", "ROOT_WITH_VERSION", "UNKNOWN_PATH", "api_version_error", "events_unknown_id",
    "fault", "invalid_resource", "loadbalancer_bad_value", "loadbalancer_error", "method_not_allowed",
    "too_many_requests",
]

# -- request rules -----------------------------------------------------------------------------------------

#: REAL: missing Metadata header on the instance family (captured raw by curl; note the odd ": .").
MISSING_HEADER = Response(400, b'{ "error": "Bad request: . Required metadata header not specified" }')

#: CHOSEN: a request carrying X-Forwarded-For.
FORWARDED = Response(400, b'{ "error": "Bad request: . X-Forwarded-For header is not allowed" }')

#: CHOSEN: a query naming a parameter twice.
DUPLICATE_QUERY = Response(400, b'{ "error": "Bad request: . Duplicate query parameter" }')

#: CHOSEN: ``format`` other than json/text, and ``extended`` other than true/false.
BAD_PARAMETER = Response(400, b'{ "error": "Bad request" }')

#: REAL: a path under /metadata/ that names no endpoint (the real body for /metadata/identity).
UNKNOWN_PATH = Response(404, b'{"error":"Not Found"}')

#: CHOSEN: /metadata with a valid api-version (without one it answers the real 400 with the newest versions).
ROOT_WITH_VERSION = UNKNOWN_PATH

#: CHOSEN: a fleet in strict mode, asked from an address no VM owns.
NO_SUCH_VM = Response(403, b'{ "error": "Forbidden: no VM has this source address" }')

#: CHOSEN: a fleet with dynamic scale sets, asked from a new address while every instance is claimed.
NO_FREE_INSTANCE = Response(403, b'{ "error": "Forbidden: every instance is claimed by another source address" }')

#: CHOSEN: a new address of a dynamic scale set while the shared world's engine cannot be reached to claim one.
CLAIM_UNAVAILABLE = Response(503, b'{ "error": "Service unavailable. Try again later." }')

_METHOD_NOT_ALLOWED_BODY = b'{ "error": "Method not allowed" }'  # CHOSEN
_TOO_MANY_REQUESTS_BODY = b'{ "error": "Too many requests" }'  # CHOSEN
_IDENTITY_TOO_MANY_REQUESTS_BODY = b'{"error":"too_many_requests","error_description":"Too many requests"}'  # CHOSEN


def api_version_error(newest: tuple[str, ...]) -> Response:
    """REAL: the 400 for a missing or unknown api-version, naming the three newest versions, newest first."""
    return Response(400, json.dumps({"error": API_VERSION_ERROR, "newest-versions": list(newest)},
                                    separators=(",", ":")).encode())


def method_not_allowed(allow: str) -> Response:
    """CHOSEN: methods other than the endpoint's: 405 with an Allow header."""
    return Response(405, _METHOD_NOT_ALLOWED_BODY, headers=(("Allow", allow),))


def too_many_requests(seconds: int, identity: bool) -> Response:
    """CHOSEN: past a rate limit: 429 with Retry-After in whole seconds (the identity family's own form)."""
    body = _IDENTITY_TOO_MANY_REQUESTS_BODY if identity else _TOO_MANY_REQUESTS_BODY
    return Response(429, body, headers=(("Retry-After", str(seconds)),))


def fault(status: int, retry_after: int | None) -> Response:
    """An injected fault's answer: ``{"error":"<reason phrase>"}``."""
    headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
    return Response(status, f'{{"error":"{REASONS.get(status, "Error")}"}}'.encode(), headers=headers)


# -- instance ----------------------------------------------------------------------------------------------

#: REAL: an unknown key under /metadata/instance.
INSTANCE_NOT_FOUND = Response(404, b'{ "error": "Not found" }')

#: REAL status (2023 transcript), body spacing as the other instance errors: a leaf without format=text.
LEAF_NEEDS_TEXT = Response(400, b'{ "error": "Bad request" }')

# -- load balancer -----------------------------------------------------------------------------------------

#: REAL: the VM is behind no Standard load balancer (2023 capture).
NO_LOADBALANCER_404 = Response(404, json.dumps({"error": NO_LOADBALANCER}, separators=(",", ":")).encode())

def loadbalancer_error(status: int, request: Request) -> Response:
    """REAL wording (load balancer troubleshooting doc, 2023 revision, whose "Please"/"non-basic" style the one
    captured body shares): an unknown path below /metadata/loadbalancer (404) or another method (405), as
    ``{"error":"…"}`` like the captured 404. CHOSEN: Path is the path as sent, without the query."""
    path = request.url.partition(b"?")[0].decode("latin-1")
    what = "API is not found" if status == 404 else "Http method is not allowed"
    message = f'{what}: Path = "{path}", Method = "{request.method}"'
    headers = (("Allow", "GET"),) if status == 405 else ()
    return Response(status, json.dumps({"error": message}, separators=(",", ":"), ensure_ascii=False).encode(),
                    headers=headers)


def loadbalancer_bad_value(name: str, value: str) -> Response:
    """REAL wording (as ``loadbalancer_error``): a parameter value the load balancer API does not take. The doc
    writes ``for parameter "ParameterName"`` literally; CHOSEN: the parameter's name is filled in."""
    message = (f'Parameter value is not allowed, or parameter value "{value}" is not allowed for parameter '
               f'"{name}". Please fix the request and retry.')
    return Response(400, json.dumps({"error": message}, separators=(",", ":"), ensure_ascii=False).encode())


# -- reprovision data --------------------------------------------------------------------------------------

#: CHOSEN body, REAL status (what cloud-init retries as "not yet"): a VM not (yet) handed over.
REPROVISION_NOT_YET = UNKNOWN_PATH

# -- scheduled events --------------------------------------------------------------------------------------

#: REAL: a version of another family (a real VM, api-version=2021-12-13).
EVENTS_WRONG_FAMILY = Response(404, b'{"error": "Not found"}')

#: CHOSEN: a POST whose body is not ``{"StartRequests":[{"EventId":"…"}, …]}``.
EVENTS_MALFORMED = Response(400, b'{"error":"Bad request. The request body is malformed."}')

#: CHOSEN: the answer to an approval (the docs promise 200; the body was never captured).
APPROVED = Response(200, b"")

#: CHOSEN: an approval that could not be kept because the shared state engine is unreachable (IMDS answers 5xx
#: at times; clients try again). Nothing was approved.
EVENTS_UNAVAILABLE = Response(503, b'{"error":"Service unavailable. Try again later."}')


def events_unknown_id(event_id: str) -> Response:
    """CHOSEN: approving an EventId that is not in the current document."""
    return Response(400, json.dumps({"error": f"Bad request. EventId {event_id} is not a current event."},
                                    separators=(",", ":"), ensure_ascii=False).encode())


# -- managed identity --------------------------------------------------------------------------------------

#: REAL (Content-Length-verified, spec §7.3): the identity family's own error bodies.
IDENTITY_MISSING_HEADER = Response(
    400, b'{"error":"invalid_request","error_description":"Required metadata header not specified"}')
IDENTITY_NOT_FOUND = Response(400, b'{"error":"invalid_request","error_description":"Identity not found"}')
IDENTITY_MULTIPLE = Response(400, b'{"error":"invalid_request","error_description":"Multiple user assigned '
                                  b'identities exist, please specify the clientId / resourceId of the identity in '
                                  b'the token request"}')

#: REAL (aad-pod-identity PR #450, written to mimic IMDS's answer): a token request without ``resource``; an
#: empty ``resource=`` is taken as none (CHOSEN).
IDENTITY_NO_RESOURCE = Response(400, b'{"error":"invalid_request","error_description":'
                                     b'"Required query variable \'resource\' is missing"}')


def invalid_resource(resource: str, tenant_name: str, when: float) -> Response:
    """REAL (MSAL.NET #3979, 2023; Entra's own bodies for the line breaks): a token for a resource the tenant
    has no principal for. Trace and correlation ids are fresh GUIDs; the time is the emulated clock's.
    CHOSEN: Entra's other keys (error_codes, timestamp, trace_id, …) are not passed on."""
    import time
    import uuid

    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(when))
    description = (f"AADSTS500011: The resource principal named {resource} was not found in the tenant named "
                   f"{tenant_name}. This can happen if the application has not been installed by the administrator "
                   "of the tenant or consented to by any user in the tenant. You might have sent your authentication "
                   f"request to the wrong tenant.\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}"
                   f"\r\nTimestamp: {stamp}")
    return Response(400, json.dumps({"error": "invalid_resource", "error_description": description},
                                    separators=(",", ":"), ensure_ascii=False).encode())

#: CHOSEN: a token request naming more than one of client_id, object_id, msi_res_id, mi_res_id.
IDENTITY_SELECTOR_CONFLICT = Response(400, b'{"error":"invalid_request","error_description":"Only one of '
                                           b'client_id, object_id, msi_res_id and mi_res_id may be specified"}')

# -- attested ----------------------------------------------------------------------------------------------

#: CHOSEN: a nonce that is not 1-32 letters or digits.
ATTESTED_BAD_NONCE = Response(400, b'{ "error": "Bad request: . nonce must be 1 to 32 letters or digits" }')
