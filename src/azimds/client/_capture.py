"""A real VM captured as an emulator profile (``azimds dump``), and the redaction that makes it shareable."""

from __future__ import annotations

import copy
import ipaddress

from ..azure import ENDPOINT_INTRODUCED
from ._client import Client, addresses

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ZERO_GUID", "capture", "redact"]

ZERO_GUID = "00000000-0000-0000-0000-000000000000"


def capture(client: Client) -> dict[str, Any]:
    """The VM behind ``client`` as an emulator profile that serves it back as it was.

    The instance document at the newest api-version the host accepts, its load balancer document if it has
    one, and ``azimds.newestVersion`` so that the emulator accepts the same versions.
    """
    version = client.newest_version()
    profile: dict[str, Any] = client.get("instance", api_version=version)
    balancer = client.load_balancer(api_version=version) if version >= ENDPOINT_INTRODUCED["loadbalancer"] else None
    if balancer is not None:
        profile["loadbalancer"] = balancer
    profile["azimds"] = {"newestVersion": version}
    return profile


_SECRETS = frozenset({"userData", "customData", "keyData", "secretUrl", "keyUrl", "uri"})
_KEPT = frozenset({"tags", "tagsList"})


def redact(profile: dict[str, Any]) -> dict[str, Any]:
    """A copy of a captured profile with secrets blanked and identifiers replaced, consistently.

    Blanks userData, customData, publicKeys keyData, encryption secretUrl/keyUrl and storage uris; puts the
    zero GUID for subscriptionId, vmId and placementGroupId; placeholders for the resource group, VM,
    computer, admin user, scale set and disk names (as whole values, and as parts of a public key's path) and
    for every subscription, resource group and resource name inside resource IDs; documentation addresses for
    public IPs. Tags are kept.
    ``azimds dump --help`` says the same to users.
    """
    scrubbed: dict[str, Any] = _scrub(profile, _identifiers(profile))
    return scrubbed


def _identifiers(doc: dict[str, Any]) -> dict[str, str]:
    """Identifying value -> placeholder, for the whole values ``redact`` replaces."""
    compute = doc.get("compute", {})
    storage = compute.get("storageProfile", {})
    os_profile = compute.get("osProfile", {})
    wanted = [(compute.get(key), ZERO_GUID) for key in ("subscriptionId", "vmId", "placementGroupId")]
    wanted += [(compute.get("resourceGroupName"), "redacted-rg"), (compute.get("name"), "redacted-vm"),
               (os_profile.get("computerName"), "redacted-vm"), (os_profile.get("adminUsername"), "azureuser"),
               (compute.get("vmScaleSetName"), "redacted-vmss"),
               (storage.get("osDisk", {}).get("name"), "redacted-vm-osdisk")]
    wanted += [(disk.get("name"), f"redacted-vm-datadisk-{index}")
               for index, disk in enumerate(storage.get("dataDisks", []))]
    names: dict[str, str] = {}
    for value, placeholder in wanted:
        if isinstance(value, str) and value:
            names.setdefault(value, placeholder)
    for address in _public_addresses(doc):
        if address not in names:
            names[address] = _fresh(names, "2001:db8::" if ":" in address else "203.0.113.")
    return names


def _fresh(names: dict[str, str], prefix: str) -> str:
    """The next unused placeholder ``prefix<N>`` (N from 1)."""
    used = sum(1 for placeholder in names.values() if placeholder.startswith(prefix))
    return f"{prefix}{used + 1}"


def _public_addresses(doc: dict[str, Any]) -> list[str]:
    found = addresses(doc.get("network", {}), "publicIpAddress")
    for group in ("publicIpAddresses", "inboundRules", "outboundRules"):
        found.extend(rule.get("frontendIpAddress", "") for rule in doc.get("loadbalancer", {}).get(group, []))
    return [address for address in found if _is_global(address)]


def _is_global(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_global
    except ValueError:
        return False


def _scrub(value: Any, names: dict[str, str], key: str = "") -> Any:
    """A redacted copy of ``value`` (found under ``key``)."""
    if key in _KEPT:
        return copy.deepcopy(value)
    if isinstance(value, dict):
        return {k: _scrub(v, names, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, names, key) for item in value]
    if not isinstance(value, str):
        return value
    if key in _SECRETS:
        return ""
    if value.lower().startswith("/subscriptions/"):
        return _scrub_resource_id(value, names)
    if key == "path":  # a public key's file, /home/<admin>/.ssh/authorized_keys: the admin's name goes too
        return "/".join(names.get(part, part) if part else part for part in value.split("/"))
    return names.get(value, value)


def _scrub_resource_id(resource_id: str, names: dict[str, str]) -> str:
    """Replace the subscription, resource group and resource names in an ARM resource ID, consistently."""
    parts = resource_id.split("/")
    providers = next((i for i, part in enumerate(parts) if part.lower() == "providers"), len(parts))
    for index, part in enumerate(parts):
        previous = parts[index - 1].lower() if index else ""
        if previous == "subscriptions":
            parts[index] = ZERO_GUID
        elif previous == "resourcegroups":
            parts[index] = names.get(part) or names.setdefault(part, _fresh(names, "redacted-rg-"))
        elif index > providers + 2 and (index - providers) % 2 == 1:
            parts[index] = names.get(part) or names.setdefault(part, _fresh(names, "redacted-name-"))
    return "/".join(parts)
