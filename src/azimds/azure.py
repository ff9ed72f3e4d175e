"""Plain facts about the real Azure IMDS that the client and the emulator share: versions, names, formats.

Each fact is written once, here, with its source (``imds-spec`` sections are the project's reference; IMDS-doc,
SE-doc, MI-doc are Microsoft's docs). Standard library only, and cheap to import: the CLI loads it on every call.
"""

from __future__ import annotations

__all__ = [
    "API_VERSION_ERROR", "ATTESTED_FIELDS", "ATTESTED_VALIDITY", "CLOUD_DOMAINS", "ENDPOINT_INTRODUCED",
    "EVENTS_VERSIONS", "EVENT_FIELD_SINCE", "EVENT_MIN_NOTICE", "EVENT_SOURCES", "EVENT_TYPES",
    "EVENT_TYPE_SINCE", "IDENTITY_SELECTORS", "IMDS_ADDRESS", "INSTANCE_VERSIONS", "NO_LOADBALANCER",
    "TIMESTAMP_FORMAT", "attested_fields", "cloud_domain", "format_tags", "parse_tags", "split_tags",
    "tags_list",
]

#: Where IMDS answers on every VM (port 80, HTTP only).
IMDS_ADDRESS = "169.254.169.254"

# -- api-versions ------------------------------------------------------------------------------------------

#: Versions accepted by /metadata/instance (and by attested, identity and loadbalancer from the version that
#: introduced them), oldest first. Source: IMDS-doc "Supported API versions".
INSTANCE_VERSIONS: tuple[str, ...] = (
    "2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01", "2018-04-02",
    "2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01", "2019-06-04", "2019-08-01",
    "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15", "2020-09-01", "2020-10-01", "2020-12-01",
    "2021-01-01", "2021-02-01", "2021-03-01", "2021-05-01", "2021-08-01", "2021-10-01", "2021-11-01",
    "2021-11-15", "2021-12-13", "2023-07-01", "2023-11-15", "2024-03-15", "2024-07-17", "2025-04-07",
)

#: Versions accepted by /metadata/scheduledevents: a family of its own (SE-doc version history; spec §3.2).
EVENTS_VERSIONS: tuple[str, ...] = (
    "2017-03-01", "2017-08-01", "2017-11-01", "2019-01-01", "2019-04-01", "2019-08-01", "2020-07-01",
)

#: The version each endpoint of the instance family first answers at (IMDS-doc endpoint table).
ENDPOINT_INTRODUCED: dict[str, str] = {
    "instance": "2017-04-02",
    "identity": "2018-02-01",
    "attested": "2018-10-01",
    "loadbalancer": "2020-10-01",
    "reprovisiondata": "2017-04-02",  # not in the table; cloud-init asked it at 2017-04-02 first, 2019-06-01 now
}

#: The message of the 400 for a missing or unknown api-version; the body adds ``newest-versions`` (spec §3.4).
API_VERSION_ERROR = ("Bad request. api-version is invalid or was not specified in the request. "
                     "For more information refer to aka.ms/azureimds")

#: The message of the 404 /metadata/loadbalancer gives a VM behind no Standard load balancer (2023 capture).
NO_LOADBALANCER = ("No load balancer metadata is found. Please check if your VM is using any non-basic SKU "
                   "load balancer and retry later.")

# -- attested documents ------------------------------------------------------------------------------------

#: The signed fields of an attested document and the api-version that introduced each (IMDS-doc attested
#: table; spec §6). ``plan`` is an object of name/product/publisher; ``timeStamp`` of createdOn/expiresOn.
ATTESTED_FIELDS: dict[str, str] = {
    "licenseType": "2020-09-01",
    "nonce": "2018-10-01",
    "plan": "2018-10-01",
    "sku": "2019-11-01",
    "subscriptionId": "2019-04-30",
    "timeStamp": "2018-10-01",
    "vmId": "2018-10-01",
}

#: The format of ``timeStamp.createdOn``/``expiresOn`` (UTC), e.g. ``11/19/25 12:53:30 -0000``.
TIMESTAMP_FORMAT = "%m/%d/%y %H:%M:%S -0000"

#: Seconds between createdOn and expiresOn in every real document (2023, 2025, 2026 captures).
ATTESTED_VALIDITY = 6 * 3600

#: The DNS domain of the attested-document signing certificate in each cloud, by ``compute.azEnvironment``
#: (IMDS-doc "Verifying the signature"). Looked up case-insensitively.
CLOUD_DOMAINS: dict[str, str] = {
    "AzurePublicCloud": "metadata.azure.com",
    "AzureUSGovernmentCloud": "metadata.azure.us",
    "AzureChinaCloud": "metadata.azure.cn",
    "AzureGermanCloud": "metadata.microsoftazure.de",
}


def attested_fields(version: str) -> tuple[str, ...]:
    """The signed fields of an attested document requested at ``version``, sorted."""
    return tuple(sorted(name for name, since in ATTESTED_FIELDS.items() if since <= version))


def cloud_domain(environment: str) -> str:
    """The signing certificate's domain for an azEnvironment; an unknown or empty one is the public cloud."""
    lowered = {name.lower(): domain for name, domain in CLOUD_DOMAINS.items()}
    return lowered.get(environment.lower(), CLOUD_DOMAINS["AzurePublicCloud"])


# -- managed identity --------------------------------------------------------------------------------------

#: The token endpoint's optional parameters naming an identity (MI-doc; IMDS honours both msi_res_id and
#: mi_res_id, spec §7.1). At most one may be given.
IDENTITY_SELECTORS: tuple[str, ...] = ("client_id", "object_id", "msi_res_id", "mi_res_id")

# -- scheduled events --------------------------------------------------------------------------------------

#: Event types, and the events api-version that introduced each (SE-doc; spec §3.2, §8.1).
EVENT_TYPES: tuple[str, ...] = ("Freeze", "Reboot", "Redeploy", "Preempt", "Terminate")
EVENT_TYPE_SINCE: dict[str, str] = {"Freeze": "2017-03-01", "Reboot": "2017-03-01", "Redeploy": "2017-03-01",
                                    "Preempt": "2017-11-01", "Terminate": "2019-01-01"}
#: Who asked for the maintenance.
EVENT_SOURCES: tuple[str, ...] = ("Platform", "User")
#: Event fields added after the first version, and the version that added each.
EVENT_FIELD_SINCE: dict[str, str] = {"Description": "2019-04-01", "EventSource": "2019-08-01",
                                     "DurationInSeconds": "2020-07-01"}
#: Minimum notice (seconds between publication and NotBefore) per type, as Azure gives it (SE-doc).
EVENT_MIN_NOTICE: dict[str, int] = {"Freeze": 900, "Reboot": 900, "Redeploy": 600, "Preempt": 30, "Terminate": 300}

# -- tags --------------------------------------------------------------------------------------------------


def split_tags(text: str) -> list[tuple[str, str]]:
    """The ``tags`` string ``name:value;name:value`` as pairs: split on ';', then on the first ':'.

    A value may contain ':' (``owner:ops:a`` is owner = ``ops:a``). A ';' inside a value cannot be told apart
    from the separator (``k:a;b`` reads as k = ``a`` and b = ``""``): that is why ``tagsList``, served from
    api-version 2019-06-04, is exact where this is not.
    """
    pairs = []
    for item in text.split(";"):
        if item:
            name, _, value = item.partition(":")
            pairs.append((name, value))
    return pairs


def parse_tags(text: str) -> dict[str, str]:
    """The ``tags`` string as a mapping (a name given twice keeps its last value)."""
    return dict(split_tags(text))


def format_tags(pairs: list[tuple[str, str]]) -> str:
    """The ``tags`` string the service writes for these tags."""
    return ";".join(f"{name}:{value}" for name, value in pairs)


def tags_list(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """The ``tagsList`` array the service writes for these tags."""
    return [{"name": name, "value": value} for name, value in pairs]
