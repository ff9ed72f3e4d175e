"""Where the public record of the real service is silent, what azimds does: every such decision, once.

Each constant below is used by the code that needs it, and the chosen bodies are in ``responses`` (marked
CHOSEN); ``CHOICES`` is every decision in words (those that need no constant, such as the order of checks,
only there), reproduced in the README ("Behaviour where the real service is undocumented"), and a test keeps
the two in step.
"""

from __future__ import annotations

from typing import NamedTuple

#: Content-Type of ``format=text`` answers (not captured; issue 2 names it).
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

#: Content-Type of /metadata/reprovisiondata's OVF environment (never captured; cloud-init reads the bytes).
OVF_CONTENT_TYPE = "text/xml; charset=utf-8"

#: ``/metadata/instance/`` with a trailing slash is the same as without.
TRAILING_SLASH_IGNORED = True

#: Non-ASCII characters (in tags, say) are written as UTF-8, not as \\u escapes.
JSON_ENSURE_ASCII = False

#: client_id / object_id may name the system-assigned identity too, not only user-assigned ones.
IDENTITY_SYSTEM_SELECTABLE = True

#: Token times: nbf = iat = issue - 300 s, exp = issue + 24 h, so expires_on - not_before = 86700 as in real
#: answers; a cached token is served until fewer than TOKEN_REFRESH_MARGIN seconds are left.
TOKEN_NOT_BEFORE_SKEW = 300
TOKEN_LIFETIME = 86400
TOKEN_REFRESH_MARGIN = 300

#: Only ``bypass_cache=true`` (any case) bypasses the token cache; other values are ignored, as are query
#: parameters the endpoint does not know (``authority`` among them).
BYPASS_CACHE_VALUE = "true"

#: Where the emulator publishes what validates its tokens (no Metadata header, no rate limit): the OpenID
#: discovery document at /<tenant>/.well-known/openid-configuration (and the same at
#: /<tenant>/v2.0/.well-known/openid-configuration), issuer https://sts.windows.net/<tenant>/ as in the
#: tokens; the key set at /common/discovery/keys (also /discovery/keys and /<tenant>/discovery/keys).
DISCOVERY_PATHS = ("/{tenant}/.well-known/openid-configuration", "/{tenant}/v2.0/.well-known/openid-configuration")
JWKS_PATHS = ("/common/discovery/keys", "/discovery/keys", "/{tenant}/discovery/keys")

#: Emulated seconds without a scheduled-events request after which the next one enables the service again (and
#: waits ``--events-first-call-delay``, when set).
EVENTS_IDLE_DISABLES = 24 * 3600

#: ``nonce``: 1 to 32 ASCII letters and digits (Swagger's "up to 32 alphanumeric characters"); ``nonce=``
#: empty is the same as no nonce; anything else is refused (``responses.ATTESTED_BAD_NONCE``).
ATTESTED_NONCE_PATTERN = r"[A-Za-z0-9]{1,32}"

#: An azEnvironment outside the four known clouds signs as the public cloud (metadata.azure.com).
ATTESTED_UNKNOWN_CLOUD = "AzurePublicCloud"


def events_etag(incarnation: int) -> str:
    """The ``ETag`` of a scheduled-events document: its DocumentIncarnation, quoted (no capture shows the header)."""
    return f'"{incarnation}"'


def etag_matches(if_none_match: str, tag: str) -> bool:
    """Whether an ``If-None-Match`` names ``tag``: quoted or not (Microsoft's sample echoes whatever it got and
    starts with a bare ``0``), weak or strong, one of a list, or ``*``."""
    bare = tag.strip('"')
    for item in if_none_match.split(","):
        item = item.strip().removeprefix("W/").strip('"')
        if item == bare or item == "*":
            return True
    return False


class Choice(NamedTuple):
    topic: str
    decision: str
    evidence: str = "none public"  # what the decision rests on, or what it had to do without


CHOICES: tuple[Choice, ...] = (
    Choice("Content-Type of text answers", "`text/plain; charset=utf-8`"),
    Choice("Server header",
           "`IMDS/150.870.65.1253`, the newest build seen on a real VM; `serverVersion` in the profile changes "
           "it"),
    Choice("Trailing slash", "`/metadata/instance/` answers as `/metadata/instance`"),
    Choice("Text listing of objects and arrays",
           "one name per line, sorted, `/` after containers, array items as `0/`, `1/`…, no trailing newline"),
    Choice("X-Forwarded-For", "400 `{ \"error\": \"Bad request: . X-Forwarded-For header is not allowed\" }`"),
    Choice("Duplicate query parameters", "400 `{ \"error\": \"Bad request: . Duplicate query parameter\" }`"),
    Choice("Other methods",
           "405 `{ \"error\": \"Method not allowed\" }` with `Allow: GET` (`GET, POST` for scheduled events)"),
    Choice("Rate limit answer", "429 `{ \"error\": \"Too many requests\" }` with `Retry-After` in whole seconds"),
    Choice("Bad `format` or `extended` value", "400 `{ \"error\": \"Bad request\" }`"),
    Choice("Check order",
           "faults, then rate limit, then path (404), then method, then X-Forwarded-For, then the Metadata "
           "header, then duplicate parameters, then api-version"),
    Choice("Version older than the endpoint", "the same 400 as an unknown version, with that endpoint's three newest"),
    Choice("2017-03-01 on /metadata/instance",
           "refused like an unknown version, and not listed by /metadata/versions: it was the preview, whose shape "
           "is unknown (instance answers from 2017-04-02, as the docs' endpoint table says)"),
    Choice("/metadata/versions",
           "needs the Metadata header; lists every instance version the emulator accepts, oldest first"),
    Choice("Load balancer document",
           "keys in the service's order (publicIpAddresses, inboundRules, outboundRules; a rule's frontendIpAddress, "
           "protocol, frontendPort, backendPort, privateIpAddress); `protocol` `Tcp`/`Udp`/`All`; ports as numbers",
           "cloud-provider-azure #535 (real output through jq, 2021); the docs' sample writes `tcp`"),
    Choice("Load balancer errors",
           "`{\"error\":\"…\"}` with the load balancer troubleshooting doc's 2023 wording: 404 `API is not found: "
           "Path = \"<path>\", Method = \"GET\"` below /metadata/loadbalancer, 405 `Http method is not allowed: …` "
           "(with `Allow: GET`), 400 `Parameter value is not allowed, or parameter value \"<v>\" is not allowed for "
           "parameter \"format\". Please fix the request and retry.`; Path is the path as sent, without the query; "
           "a missing or unknown api-version gets the common 400 (the IMDS front door checks it first)",
           "troubleshoot-load-balancer-imds.md (2023 revision; the real 2023 404 shares its \"Please\" style)"),
    Choice("/metadata (the root)",
           "without a valid api-version the common 400 with the newest versions; with one, 404 "
           "`{\"error\":\"Not Found\"}`; `/metadata/` the same",
           "a real VM in 2025 (azure-compute-docs PR #289) for the 400; nothing public for the rest"),
    Choice("Non-ASCII values", "written as UTF-8, not escaped"),
    Choice("Case", "path keys and parameter names are case-sensitive; the Metadata header's value is not"),
    Choice("extended=true",
           "accepted at every version; adds `extended.compute.ppsType` (profile's value, default `None`)"),
    Choice("dataDisks diffDiskSettings/encryptionSettings/osType, ipv6 publicIpAddress",
           "served when the profile sets them, never added by defaults"),
    Choice("Fleet: a source address no VM owns",
           "answered as the profile's own (first) VM; with `fleet.strict: true`, 403 `{ \"error\": \"Forbidden: no "
           "VM has this source address\" }`"),
    Choice("Fleet: a new source address with `addresses: dynamic`",
           "claims the lowest free instance of the first dynamic scale set with one (before the stranger rule, "
           "which then never applies); keeps it while it calls; let go `idleRelease` (default 10m, emulated time) "
           "after its last call, at most a tenth of that later; with every instance claimed, 403 `{ \"error\": "
           "\"Forbidden: every instance is claimed by another source address\" }`; while a shared world's engine "
           "cannot be reached, a new address gets 503 `{ \"error\": \"Service unavailable. Try again later.\" }` "
           "and a held claim is answered from memory"),
    Choice("Fleet: rate limits",
           "per VM (by name), whatever address it calls from; per source address when there is one VM"),
    Choice("Fleet: approving a shared event",
           "approval by any VM the event lists starts it for all of them, unless it was scheduled with "
           "`approval: all`"),
    Choice("Scheduled events approval answer", "200 with an empty body"),
    Choice("Approving while a shared world's engine is unreachable",
           "503 `{\"error\":\"Service unavailable. Try again later.\"}`; nothing is approved"),
    Choice("Approving an unknown EventId",
           "400 `{\"error\":\"Bad request. EventId <id> is not a current event.\"}`; a malformed body 400 "
           "`{\"error\":\"Bad request. The request body is malformed.\"}`"),
    Choice("Scheduled events version of another family",
           "an instance-only version gets the real 404 `{\"error\": \"Not found\"}`; a missing or unknown one the "
           "400 with the three newest events versions"),
    Choice("Event types newer than the api-version",
           "left out of the document (Preempt before 2017-11-01, Terminate before 2019-01-01)"),
    Choice("Scheduled events Metadata header", "required from 2017-08-01; not at the 2017-03-01 preview",
           "the scheduled-events docs' version table lists \"Metadata header requirement enforced for all requests\" "
           "under 2017-08-01"),
    Choice("First scheduled-events request",
           "answered at once; `--events-first-call-delay SECONDS` (profile `eventsFirstCallDelay`) delays each VM's "
           "first request, and its first after 24 emulated hours without one, in real seconds; who asked last is "
           "kept per process",
           "the docs: \"expect a delayed response in your first call of up to two minutes\"; disabled after 24 h "
           "without a request"),
    Choice("/metadata/reprovisiondata",
           "404 `{\"error\":\"Not Found\"}` until the control plane hands a pre-provisioned VM over (`POST "
           "/v1/reprovision`: `ppsType` becomes `None`); then 200, the ovf-env.xml built from the VM's documents "
           "(host name, admin user, SSH keys, customData), `Content-Type: text/xml; charset=utf-8`; every instance "
           "api-version from 2017-04-02",
           "cloud-init's Azure datasource (polls 2019-06-01, retries 404/410, reads ppsType None after); no capture "
           "of the body or its headers"),
    Choice("Scheduled events ETag",
           "GET answers `ETag: \"<DocumentIncarnation>\"`; `If-None-Match` naming it (quoted or not, weak, in a list, "
           "or `*`) answers 304 with no body; POST ignores it",
           "Microsoft's sample client sends If-None-Match and handles 304, and its log against a real VM shows no "
           "answer between changes (Azure/vm-scheduled-events); the header's form was never captured"),
    Choice("`resourceDisk.size`",
           "the VM size's temporary disk in MiB, as a string; `\"0\"` for sizes without one (v4 and later without "
           "`d`); `\"\"` for a size azimds does not know; a profile's own value wins",
           "real DS2_v2 `\"14336\"` and D8s_v3 `\"65536\"` (the docs' \"kB\" is wrong); the size pages"),
    Choice("`priority`", "`\"\"` for a regular VM; `Spot` or `Low` only when the profile says",
           "every capture since 2022 (one 2021 capture says `Regular`)"),
    Choice("Public IP of a VM behind a Standard load balancer",
           "`\"\"` on the NIC; the address only in /metadata/loadbalancer; a profile or change giving both is refused",
           "azure-docs #58263, microsoft/azureimds #25, cloud-provider-azure #535 (real); the IMDS article's "
           "Sample 7 note"),
    Choice("Profile without an `identity` section",
           "the VM has no managed identity (token requests get \"Identity not found\"); the tenant is derived from"
           " the subscription"),
    Choice("Token request without `resource`",
           "400 `{\"error\":\"invalid_request\",\"error_description\":\"Required query variable 'resource' is "
           "missing\"}`; an empty `resource=` counts as none",
           "aad-pod-identity PR #450, written to copy IMDS's answer"),
    Choice("Token request with two identity selectors",
           "400 `{\"error\":\"invalid_request\",\"error_description\":\"Only one of client_id, object_id, msi_res_id "
           "and mi_res_id may be specified\"}`; an empty selector counts as not given"),
    Choice("Selecting the system-assigned identity", "by no selector, or by its own client_id or object_id"),
    Choice("Token request's `resource`",
           "Azure's well-known audiences of the VM's cloud (and per-account hosts such as `https://<account>."
           "documents.azure.com`), the AKS and Azure DevOps application ids, and the profile's `identity.resources` "
           "(`*`: any) are accepted, in any case, with or without one trailing slash or `/.default`, and echoed "
           "as asked in `resource` and `aud`; any other is 400 `invalid_resource` AADSTS500011 naming the "
           "resource and the tenant's display name (`identity.tenantName`, default `Default Directory`), with "
           "fresh Trace and Correlation IDs and the emulated time; Entra's other keys (`error_codes`, "
           "`trace_id`…) are not passed on",
           "MSAL.NET #3979 (a real IMDS body, cut after its first sentence); Entra's bodies for the rest; the "
           "managed-identity services table and SDK scopes for the audiences"),
    Choice("Token claims",
           "as Entra's v1 app tokens, with `xms_az_rid` (the VM) and `xms_cae` `\"1\"`; resource ids in claims spell "
           "`resourcegroups` in lower case",
           "a real token decoded (SANS Holiday Hack 2023)"),
    Choice("Identity limits",
           "20 requests/s and 5 in flight per source address on `/metadata/identity/*`, apart from the 5/s of "
           "other paths; 429 `{\"error\":\"too_many_requests\",\"error_description\":\"Too many requests\"}` with "
           "`Retry-After`"),
    Choice("Token times and cache",
           "`nbf` = `iat` = issue time − 300 s, `exp` = issue time + 24 h; a token is reused per identity and "
           "resource until 5 minutes before `exp`; `bypass_cache=true` (any case) issues a new one"),
    Choice("Identity Metadata header, api-version, unknown parameters",
           "header value in any case, as elsewhere; a bad api-version gets the common 400 with the newest "
           "versions; unknown parameters are ignored"),
    Choice("`/metadata/identity/info` on a VM without identities", "still `{\"tenantId\":\"…\"}`"),
    Choice("Other paths under identity and attested",
           "404 `{\"error\":\"Not Found\"}`, like bare `/metadata/identity`, with or without the header"),
    Choice("Token validation",
           "OpenID discovery at `/<tenant>/.well-known/openid-configuration` (and `/<tenant>/v2.0/…`), issuer "
           "`https://sts.windows.net/<tenant>/`; keys at `/common/discovery/keys`; no Metadata header, no rate "
           "limit"),
    Choice("Attested `nonce`",
           "1–32 ASCII letters or digits; empty is the same as none; otherwise 400 `{ \"error\": \"Bad request: . "
           "nonce must be 1 to 32 letters or digits\" }`"),
    Choice("Attested caching", "every request is signed afresh, `createdOn` = now"),
    Choice("Attested signing certificate",
           "issued by the emulator's own CA (root → intermediate, kept in the state directory); AIA URL `<public"
           " URL>/azimds/ca/intermediate.crt`, served without the Metadata header; an unknown azEnvironment "
           "signs as the public cloud"),
)


def markdown_table() -> str:
    """The README's table of choices (``python -m azimds.choices`` prints it)."""
    rows = ["| Topic | What azimds does | Evidence |", "|---|---|---|"] + [
        f"| {c.topic} | {c.decision} | {c.evidence} |" for c in CHOICES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
