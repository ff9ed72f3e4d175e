"""Where the public record of the real service is silent, what azimds does: every such decision, once.

Each constant below is used by the code that needs it; ``CHOICES`` is the same list in words, reproduced
in the README ("Behaviour where the real service is undocumented"), and a test keeps the two in step.
Bodies written ``{ "error": "…" }`` (spaces inside the braces) copy the serializer real IMDS uses for its
instance-path errors; compact ones copy its api-version and identity errors (spec §10).
"""

from __future__ import annotations

from typing import NamedTuple

#: Content-Type of ``format=text`` answers (not captured; issue 2 names it).
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

#: ``Server`` header: ``IMDS/`` and the newest build seen on a real VM (2024).
SERVER_VERSION = "150.870.65.1253"

#: ``/metadata/instance/`` with a trailing slash is the same as without.
TRAILING_SLASH_IGNORED = True

#: A request carrying X-Forwarded-For is refused with this status and body.
FORWARDED_STATUS = 400
FORWARDED_BODY = b'{ "error": "Bad request: . X-Forwarded-For header is not allowed" }'

#: A query naming a parameter twice.
DUPLICATE_QUERY_BODY = b'{ "error": "Bad request: . Duplicate query parameter" }'

#: Methods other than the endpoint's (GET; GET and POST for scheduled events): 405 with an Allow header.
METHOD_NOT_ALLOWED_BODY = b'{ "error": "Method not allowed" }'

#: Past the rate limit: 429, this body, and a Retry-After header in whole seconds.
TOO_MANY_REQUESTS_BODY = b'{ "error": "Too many requests" }'

#: ``format`` other than json/text, and ``extended`` other than true/false.
BAD_PARAMETER_BODY = b'{ "error": "Bad request" }'

#: Leaf without format=text, or with format=json: the real status, body spacing as the other instance errors.
LEAF_NEEDS_TEXT_BODY = b'{ "error": "Bad request" }'

#: A path under /metadata/ that names no endpoint (the real body for /metadata/identity).
UNKNOWN_PATH_BODY = b'{"error":"Not Found"}'

#: The Metadata header is checked before the api-version (both are 400s).
HEADER_BEFORE_VERSION = True

#: A known version older than the endpoint (attested before 2018-10-01, loadbalancer before 2020-10-01,
#: identity before 2018-02-01) gets the same 400 as an unknown version, listing that endpoint's newest.
TOO_OLD_FOR_ENDPOINT_IS_INVALID = True

#: /metadata/versions needs the Metadata header like every other path, and takes no api-version.
VERSIONS_NEEDS_HEADER = True

#: Load balancer document: keys sorted like every other IMDS document; ports as JSON numbers (docs sample).
LOADBALANCER_PORTS_AS_NUMBERS = True

#: Non-ASCII characters (in tags, say) are written as UTF-8, not as \\u escapes.
JSON_ENSURE_ASCII = False

#: Path keys and query parameter names are case-sensitive; Metadata header value is not.
CASE_SENSITIVE_PATHS = True

#: Scheduled events: a POST whose body is not ``{"StartRequests":[{"EventId":"…"}, …]}``.
EVENTS_MALFORMED_BODY = b'{"error":"Bad request. The request body is malformed."}'

#: Scheduled events: approving an EventId that is not in the current document.
EVENTS_UNKNOWN_ID_BODY = b'{"error":"Bad request. EventId {id} is not a current event."}'


class Choice(NamedTuple):
    topic: str
    decision: str


CHOICES: tuple[Choice, ...] = (
    Choice("Content-Type of text answers", "`text/plain; charset=utf-8`"),
    Choice("Server header", "`IMDS/150.870.65.1253`, the newest build seen on a real VM; `serverVersion` in the profile changes it"),
    Choice("Trailing slash", "`/metadata/instance/` answers as `/metadata/instance`"),
    Choice("Text listing of objects and arrays", "one name per line, sorted, `/` after containers, array items as `0/`, `1/`…, no trailing newline"),
    Choice("X-Forwarded-For", "400 `{ \"error\": \"Bad request: . X-Forwarded-For header is not allowed\" }`"),
    Choice("Duplicate query parameters", "400 `{ \"error\": \"Bad request: . Duplicate query parameter\" }`"),
    Choice("Other methods", "405 `{ \"error\": \"Method not allowed\" }` with `Allow: GET` (`GET, POST` for scheduled events)"),
    Choice("Rate limit answer", "429 `{ \"error\": \"Too many requests\" }` with `Retry-After` in whole seconds"),
    Choice("Bad `format` or `extended` value", "400 `{ \"error\": \"Bad request\" }`"),
    Choice("Check order", "rate limit, then path (404), then method, then X-Forwarded-For, then the Metadata header, then duplicate parameters, then api-version"),
    Choice("Version older than the endpoint", "the same 400 as an unknown version, with that endpoint's three newest"),
    Choice("/metadata/versions", "needs the Metadata header; lists every instance version the emulator accepts, oldest first"),
    Choice("Load balancer document", "keys sorted; ports as JSON numbers, as in the docs sample"),
    Choice("Non-ASCII values", "written as UTF-8, not escaped"),
    Choice("Case", "path keys and parameter names are case-sensitive; the Metadata header's value is not"),
    Choice("extended=true", "accepted at every version; adds `extended.compute.ppsType` (profile's value, default `None`)"),
    Choice("dataDisks diffDiskSettings/encryptionSettings/osType, ipv6 publicIpAddress", "served when the profile sets them, never added by defaults"),
    Choice("Scheduled events approval answer", "200 with an empty body"),
    Choice("Approving an unknown EventId", "400 `{\"error\":\"Bad request. EventId <id> is not a current event.\"}`; a malformed body 400 `{\"error\":\"Bad request. The request body is malformed.\"}`"),
    Choice("Scheduled events version of another family", "an instance-only version gets the real 404 `{\"error\": \"Not found\"}`; a missing or unknown one the 400 with the three newest events versions"),
    Choice("Event types newer than the api-version", "left out of the document (Preempt before 2017-11-01, Terminate before 2019-01-01)"),
    Choice("Scheduled events Metadata header", "required at every events version, 2017-03-01 included"),
)


def markdown_table() -> str:
    """The README's table of choices (``python -m azimds.choices`` prints it)."""
    rows = ["| Topic | What azimds does |", "|---|---|"] + [f"| {c.topic} | {c.decision} |" for c in CHOICES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
