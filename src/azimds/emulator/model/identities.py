"""A VM's managed identities: the system-assigned one and any user-assigned ones, with their ids.

No ``identity`` section means no managed identity, as on a new Azure VM. Every GUID a section leaves out is
derived from the VM's or the identity's resource id, so it is the same on every start; GUIDs are compared
and served in lower case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .audiences import Audiences
from .defaults import stable_uuid
from .values import parse_flag

__all__ = ["DEFAULT_TENANT_NAME", "Identities", "Identity", "derive", "guid", "identity_name", "no_identities",
           "switch", "uami_resource_id"]


#: The display name of a tenant a profile does not name: what Azure calls the directory a subscription makes.
DEFAULT_TENANT_NAME = "Default Directory"


@dataclass(frozen=True)
class Identity:
    """One managed identity assigned to the VM, as the token endpoint and the tokens name it.

    ``kind`` is "system" or "user"; ``resource_id`` is the user-assigned identity's ARM id, or for the
    system-assigned identity the VM's own resourceId (what real tokens carry in ``xms_mirid``).
    """

    kind: str
    client_id: str
    object_id: str
    resource_id: str


@dataclass(frozen=True)
class Identities:
    """The VM's managed identities (possibly none), the tenant they live in, and the resources that tenant
    can issue tokens for."""

    tenant_id: str
    system: Identity | None = None
    user: tuple[Identity, ...] = ()
    tenant_name: str = DEFAULT_TENANT_NAME
    audiences: Audiences = field(default_factory=lambda: Audiences("AzurePublicCloud"), compare=False)

    @property
    def all(self) -> tuple[Identity, ...]:
        return ((self.system,) if self.system else ()) + self.user



_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_UAMI = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ManagedIdentity/"
                   r"userAssignedIdentities/([^/]+)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$")  # ARM's rule for user-assigned identity names


def guid(value: str) -> str:
    if not _GUID.match(value):
        raise ValueError(f"not a GUID: {value!r}")
    return value.lower()


def uami_resource_id(value: str) -> str:
    if not _UAMI.match(value):
        raise ValueError("not a user-assigned identity id: /subscriptions/SUB/resourceGroups/RG/providers/"
                         f"Microsoft.ManagedIdentity/userAssignedIdentities/NAME, not {value!r}")
    return value


def identity_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"not an identity name (3-128 letters, digits, '-' or '_'): {value!r}")
    return value


def switch(value: Any) -> Any:
    """``systemAssigned: true`` is short for ``systemAssigned: {enabled: true}``."""
    if isinstance(value, dict):
        return value
    try:
        return {"enabled": value if isinstance(value, bool) else parse_flag(str(value))}
    except ValueError:
        raise ValueError(f"true, false or a mapping (enabled, clientId, objectId), not {value!r}") from None


def derive(section: dict[str, Any] | None, compute: dict[str, Any],
                problems: list[tuple[str, str]]) -> Identities:
    """The ``identity:`` section, completed. Every part is optional::

        identity:
          tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47   # default: derived from the subscription
          tenantName: Contoso           # its display name, in AADSTS500011 errors (default: Default Directory)
          resources:                    # resources beyond Azure's own that tokens may be asked for
            - api://my-app              # ("*": any resource at all)
          systemAssigned: true          # or false (the default), or a mapping:
          #   {enabled: true, clientId: GUID, objectId: GUID}   (principalId is objectId's ARM name)
          userAssigned:                 # any number; each names itself by resourceId or by name
            - resourceId: /subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ManagedIdentity/
                          userAssignedIdentities/NAME
              clientId: GUID            # default: derived from the resourceId
              objectId: GUID            # default: derived from the resourceId
            - name: app-identity        # resourceId in the VM's own subscription and resource group

    No section means no managed identity, as on a new Azure VM: the token endpoint then answers
    "Identity not found". Missing GUIDs are derived from the VM's or the identity's resource id, so
    they are the same on every start; GUIDs are compared and served in lower case.
    """
    section = section or {}
    sub = compute["subscriptionId"]
    tenant = section.get("tenantId") or stable_uuid(f"tenant:{sub.lower()}")
    system = None
    raw_system = section.get("systemAssigned") or {}
    where = "identity.systemAssigned"
    if raw_system.get("enabled", bool(raw_system.keys() - {"enabled"})):
        seed = compute["resourceId"].lower() + "/identity/system"
        object_id = _principal(raw_system, where, problems) or stable_uuid(seed + "/objectId")
        system = Identity("system", raw_system.get("clientId") or stable_uuid(seed + "/clientId"), object_id,
                          compute["resourceId"])
    users = []
    for index, raw in enumerate(section.get("userAssigned", [])):
        where = f"identity.userAssigned[{index}]"
        resource_id = raw.get("resourceId")
        name = raw.get("name")
        if resource_id is None and name is None:
            problems.append((where, "give the identity's resourceId or its name"))
            continue
        if resource_id is None:
            resource_id = (f"/subscriptions/{sub}/resourceGroups/{compute['resourceGroupName']}/providers/"
                           f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
        elif name is not None and _UAMI.match(resource_id).group(1) != name:  # type: ignore[union-attr]
            problems.append((f"{where}.name", f"{name!r} is not the name its resourceId ends with"))
        seed = resource_id.lower()
        object_id = _principal(raw, where, problems) or stable_uuid(seed + "/objectId")
        users.append(Identity("user", raw.get("clientId") or stable_uuid(seed + "/clientId"), object_id, resource_id))
    _unique(system, users, problems)
    audiences = Audiences(str(compute.get("azEnvironment", "")), section.get("resources") or ())
    return Identities(tenant, system, tuple(users), section.get("tenantName") or DEFAULT_TENANT_NAME, audiences)


def no_identities(compute: dict[str, Any]) -> Identities:
    """A VM without managed identities (for a Profile built by hand, which has no ``identity``)."""
    return derive(None, compute, [])


def _principal(raw: dict[str, Any], where: str, problems: list[tuple[str, str]]) -> str | None:
    object_id, principal_id = raw.get("objectId"), raw.get("principalId")
    if object_id and principal_id and object_id != principal_id:
        problems.append((f"{where}.principalId", "principalId is the objectId; they differ"))
    return object_id or principal_id


def _unique(system: Identity | None, users: list[Identity], problems: list[tuple[str, str]]) -> None:
    """No two identities may share a clientId, an objectId or a resourceId: requests could not tell them apart."""
    named = ([("identity.systemAssigned", system)] if system else []) + [
        (f"identity.userAssigned[{i}]", u) for i, u in enumerate(users)]
    for attribute, label in (("client_id", "clientId"), ("object_id", "objectId"), ("resource_id", "resourceId")):
        seen: dict[str, str] = {}
        for where, ident in named:
            value = getattr(ident, attribute).lower()
            if value in seen:
                problems.append((f"{where}.{label}", f"the same {label} as {seen[value]}"))
            else:
                seen[value] = where
