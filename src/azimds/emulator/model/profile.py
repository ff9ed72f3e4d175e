"""The VM model: a profile file read, validated against the catalogue and completed with defaults.

A profile mirrors the real response tree (``compute``, ``network``), so a document captured from a real
VM is a valid profile as it is. Optional parts: ``loadbalancer`` (the /metadata/loadbalancer document),
``extended`` (what ``extended=true`` adds), ``identity`` (the VM's managed identities, see
``_identities``) and ``azimds`` (emulator settings). pydantic does the validation and is imported only
here, when a profile is loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from copy import deepcopy
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from . import catalog
from .choices import SERVER_VERSION

__all__ = ["Identities", "Identity", "Profile", "ProfileError", "Settings", "Vm", "load", "load_default",
           "from_tree"]

_DEFAULT_SUBSCRIPTION = "8d10da13-8125-4ba9-a717-bf7490507b3d"
_AZURE_OUI = "000D3A"  # Microsoft's MAC prefix, as on every Azure NIC


class ProfileError(ValueError):
    """A profile that cannot be served: names the file, the place inside it and the problem."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {where}: {what}" if where else f"{source}: {what}" for where, what in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Settings:
    """The ``azimds:`` section: how the emulator behaves, as opposed to what the VM is."""

    rate_limit: int = 5
    newest_version: str | None = None
    server_version: str = SERVER_VERSION
    faults: tuple[Any, ...] = ()  # faults.Fault
    identity_rate_limit: int = 20  # /metadata/identity/*: requests per second per source address (0: off)
    identity_concurrency: int = 5  # /metadata/identity/*: requests in flight per source address (0: off)


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
    """The VM's managed identities (possibly none) and the tenant they live in."""

    tenant_id: str
    system: Identity | None = None
    user: tuple[Identity, ...] = ()

    @property
    def all(self) -> tuple[Identity, ...]:
        return ((self.system,) if self.system else ()) + self.user


@dataclass
class Profile:
    """A loaded profile: the completed instance tree, the optional documents and the settings."""

    source: str
    instance: dict[str, Any]
    loadbalancer: dict[str, Any] | None = None
    settings: Settings = field(default_factory=Settings)
    identity: Identities | None = None  # None only for a Profile built by hand; from_tree always sets it
    scenarios: list[dict[str, Any]] = field(default_factory=list)  # events.scenario_plan entries
    tree: dict[str, Any] = field(default_factory=dict)  # the validated tree before defaults: fleet templates
    fleet: dict[str, Any] | None = None  # the ``fleet`` section (see fleet.py)
    identity_section: dict[str, Any] | None = None  # the ``identity`` section as written, for fleet members


class Vm:
    """One VM's live metadata, and the cache of what was rendered from it."""

    __slots__ = ("profile", "instance", "loadbalancer", "cache", "owner", "_lock")

    def __init__(self, profile: Profile):
        self.profile = profile
        self.owner: Any = None  # the state.Emulation this VM belongs to
        self.instance = profile.instance
        self.loadbalancer = profile.loadbalancer
        self.cache: dict[Any, Any] = {}  # what endpoints derived from this VM as it is now
        self._lock = threading.Lock()

    def replace(self, instance: dict[str, Any], loadbalancer: dict[str, Any] | None = None) -> None:
        """Swap in a new (already validated and completed) tree; drops everything rendered from the old."""
        with self._lock:
            self.instance = instance
            self.loadbalancer = loadbalancer
            self.cache = {}


# -- loading ---------------------------------------------------------------------------------------------

def load(path: str | Path) -> Profile:
    """Read, validate and complete a profile file (JSON or YAML). Raises ProfileError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(source, [("", f"cannot read the file: {exc}")]) from None
    return from_tree(parse(text, source), source)


def load_default() -> Profile:
    """The embedded default VM: a realistic Linux VM with tags, userData, a data disk and a public IP."""
    text = resources.files("azimds").joinpath("profiles/default.yaml").read_text(encoding="utf-8")
    return from_tree(parse(text, "<embedded default>"), "<embedded default>")


def parse(text: str, source: str) -> Any:
    """JSON when it looks like JSON, else YAML with every plain scalar kept as the string it is."""
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(source, [(f"line {exc.lineno} column {exc.colno}", f"malformed JSON: {exc.msg}")]) from None
    import yaml

    try:
        return yaml.load(text, Loader=_string_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError(source, [(where, f"malformed YAML: {problem}")]) from None


@cache
def _string_loader() -> type:
    """A SafeLoader that reads ``sku: 7.10`` as "7.10", not 7.1: IMDS values are strings."""
    import yaml

    class StringLoader(yaml.SafeLoader):
        pass

    StringLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return StringLoader


def from_tree(data: Any, source: str) -> Profile:
    """Validate a parsed profile and fill in what it leaves out."""
    if not isinstance(data, dict):
        raise ProfileError(source, [("", f"a profile is a mapping with 'compute' and 'network', not {_kind(data)}")])
    data = dict(data)
    compute = data.get("compute")
    if isinstance(compute, dict) and isinstance(compute.get("tags"), dict):
        data["compute"] = compute = dict(compute)
        _tags_from_mapping(compute)
    validated = _validate(data, source)
    settings = _settings(validated.pop("azimds", None) or {}, source)
    loadbalancer = validated.pop("loadbalancer", None)
    identity = validated.pop("identity", None)
    scenarios = validated.pop("scenarios", None) or []
    fleet = validated.pop("fleet", None)
    problems: list[tuple[str, str]] = []
    tree = deepcopy(validated)
    instance = complete(validated, problems)
    identities = _identities(identity, instance["compute"], problems)
    problems += check_scenarios(scenarios)
    if problems:
        raise ProfileError(source, problems)
    profile = Profile(source, instance, loadbalancer, settings, identities, scenarios, tree, fleet, identity)
    if fleet is not None:
        from .fleet import check_fleet

        problems += check_fleet(profile, identity)
        if problems:
            raise ProfileError(source, problems)
    return profile


def check_scenarios(entries: Any) -> list[tuple[str, str]]:
    """Problems with scenario entries, as (place, problem); their times are checked against any start."""
    from .events import scenario_plan

    if not isinstance(entries, list):
        return [("scenarios", "scenarios are a list of events")]
    try:
        scenario_plan(entries, 0.0, "vm")
    except ValueError as exc:
        where, _, problem = str(exc).partition(": ")
        return [(where, problem)]
    return []


def load_scenarios(path: str | Path) -> list[dict[str, Any]]:
    """A scenario file: a list of entries, or a mapping with a ``scenarios`` list. Raises ProfileError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(source, [("", f"cannot read the file: {exc}")]) from None
    data = parse(text, source)
    entries = data.get("scenarios") if isinstance(data, dict) else data
    problems = check_scenarios(entries)
    if problems:
        raise ProfileError(source, problems)
    return list(entries)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def _tags_from_mapping(compute: dict[str, Any]) -> None:
    """Convenience: ``tags: {k: v}`` in a profile becomes the real ``tags`` string and ``tagsList``."""
    mapping = compute.pop("tags")
    pairs = [(str(k), "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in mapping.items()]
    compute["tags"] = ";".join(f"{k}:{v}" for k, v in pairs)
    compute.setdefault("tagsList", [{"name": k, "value": v} for k, v in pairs])


# -- validation --------------------------------------------------------------------------------------------

def _validate(data: dict[str, Any], source: str) -> dict[str, Any]:
    import pydantic

    try:
        return _profile_adapter().validate_python(data)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [part for part in err["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
            problem = err["msg"]
            if err["type"] == "extra_forbidden":
                problem = "unknown field"
            elif err["type"] == "missing":
                problem = "required field missing"
            problems.append((_format_loc(loc), problem))
        raise ProfileError(source, problems) from None


def _format_loc(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _scalar(value: Any) -> Any:
    """IMDS primitives are strings: accept numbers and booleans from a hand-written profile."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return ""
    return value


@cache
def _profile_adapter() -> Any:
    """A pydantic TypeAdapter for the whole profile, generated from the catalogue's field table."""
    from typing import Annotated, Literal

    from typing_extensions import TypedDict

    import pydantic
    from pydantic import ConfigDict, Field

    forbid = ConfigDict(extra="forbid")
    string = Annotated[str, pydantic.BeforeValidator(_scalar)]

    def typed(node: catalog.Node, name: str, leaf: Any) -> Any:
        """A TypedDict (closed to unknown keys) per object node, a list per array, ``leaf(node)`` per leaf."""
        if node.children is None:
            return leaf(node)
        if node.is_array:
            return list[typed(node.children["*"], name + "Item", leaf)]  # type: ignore[misc]
        members = {key: typed(child, name + key[:1].upper() + key[1:], leaf) for key, child in node.children.items()}
        td = TypedDict(name, members, total=False)  # type: ignore[misc, operator]
        td.__pydantic_config__ = forbid  # type: ignore[attr-defined]
        return td

    def lb_leaf(node: catalog.Node) -> Any:
        integer = catalog.LOADBALANCER_FIELDS[node.path] == "integer"
        return Annotated[int, Field(ge=0, le=65535)] if integer else string

    lb_schema = catalog.build_schema({k: "" for k in catalog.LOADBALANCER_FIELDS})

    version = Literal[catalog.INSTANCE_VERSIONS]  # type: ignore[valid-type]
    fault = TypedDict("Fault", {  # type: ignore[misc, operator]
        "path": str, "status": int, "latency": float, "drop": bool, "retryAfter": int,
        "probability": float, "first": int, "firstSeconds": float,
    }, total=False)
    fault.__pydantic_config__ = forbid  # type: ignore[attr-defined]
    settings = TypedDict("AzimdsSettings", {  # type: ignore[misc, operator]
        "rateLimit": Annotated[int, Field(ge=0)],
        "identityRateLimit": Annotated[int, Field(ge=0)],
        "identityConcurrency": Annotated[int, Field(ge=0)],
        "newestVersion": version,
        "serverVersion": Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+\.\d+$")],
        "faults": list[fault],  # type: ignore[valid-type]
    }, total=False)
    settings.__pydantic_config__ = forbid  # type: ignore[attr-defined]

    guid = Annotated[str, pydantic.BeforeValidator(_scalar), pydantic.AfterValidator(_guid)]
    system = TypedDict("SystemAssignedIdentity", {  # type: ignore[misc, operator]
        "enabled": bool, "clientId": guid, "objectId": guid, "principalId": guid,
    }, total=False)
    system.__pydantic_config__ = forbid  # type: ignore[attr-defined]
    user = TypedDict("UserAssignedIdentity", {  # type: ignore[misc, operator]
        "name": Annotated[str, pydantic.AfterValidator(_identity_name)],
        "resourceId": Annotated[str, pydantic.AfterValidator(_uami_resource_id)],
        "clientId": guid, "objectId": guid, "principalId": guid,
    }, total=False)
    user.__pydantic_config__ = forbid  # type: ignore[attr-defined]
    identity = TypedDict("IdentitySection", {  # type: ignore[misc, operator]
        "tenantId": guid,
        "systemAssigned": Annotated[system, pydantic.BeforeValidator(_switch)],  # type: ignore[valid-type]
        "userAssigned": list[user],  # type: ignore[valid-type]
    }, total=False)
    identity.__pydantic_config__ = forbid  # type: ignore[attr-defined]

    root = catalog.instance_schema()
    members = {key: typed(child, "Profile" + key[:1].upper() + key[1:], lambda node: string)
               for key, child in root.children.items()}
    members["loadbalancer"] = typed(lb_schema, "Loadbalancer", lb_leaf)
    members["identity"] = identity
    members["azimds"] = settings
    members["scenarios"] = list[dict[str, Any]]  # checked by events.scenario_plan, which names the problem
    members["fleet"] = dict[str, Any]  # checked by fleet.check_fleet, which names the problem
    profile = TypedDict("Profile", members, total=False)  # type: ignore[misc, operator]
    profile.__pydantic_config__ = forbid  # type: ignore[attr-defined]
    return pydantic.TypeAdapter(profile)


def _settings(raw: dict[str, Any], source: str) -> Settings:
    from . import faults

    rules = []
    for index, item in enumerate(raw.get("faults", [])):
        try:
            rules.extend(faults.from_profile([item]))
        except ValueError as exc:
            raise ProfileError(source, [(f"azimds.faults[{index}]", str(exc))]) from None
    return Settings(
        rate_limit=raw.get("rateLimit", Settings.rate_limit),
        newest_version=raw.get("newestVersion"),
        server_version=raw.get("serverVersion", Settings.server_version),
        faults=tuple(rules),
        identity_rate_limit=raw.get("identityRateLimit", Settings.identity_rate_limit),
        identity_concurrency=raw.get("identityConcurrency", Settings.identity_concurrency),
    )


# -- managed identities ----------------------------------------------------------------------------------

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_UAMI = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ManagedIdentity/"
                   r"userAssignedIdentities/([^/]+)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$")  # ARM's rule for user-assigned identity names


def _guid(value: str) -> str:
    if not _GUID.match(value):
        raise ValueError(f"not a GUID: {value!r}")
    return value.lower()


def _uami_resource_id(value: str) -> str:
    if not _UAMI.match(value):
        raise ValueError("not a user-assigned identity id: /subscriptions/SUB/resourceGroups/RG/providers/"
                         f"Microsoft.ManagedIdentity/userAssignedIdentities/NAME, not {value!r}")
    return value


def _identity_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"not an identity name (3-128 letters, digits, '-' or '_'): {value!r}")
    return value


def _switch(value: Any) -> Any:
    """``systemAssigned: true`` is short for ``systemAssigned: {enabled: true}``."""
    if isinstance(value, dict):
        return value
    if isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false")):
        return {"enabled": value}
    raise ValueError(f"true, false or a mapping (enabled, clientId, objectId), not {value!r}")


def _identities(section: dict[str, Any] | None, compute: dict[str, Any],
                problems: list[tuple[str, str]]) -> Identities:
    """The ``identity:`` section, completed. Every part is optional::

        identity:
          tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47   # default: derived from the subscription
          systemAssigned: true          # or false (the default), or a mapping:
          #   {enabled: true, clientId: GUID, objectId: GUID}   (principalId is objectId's ARM name)
          userAssigned:                 # any number; each names itself by resourceId or by name
            - resourceId: /subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME
              clientId: GUID            # default: derived from the resourceId
              objectId: GUID            # default: derived from the resourceId
            - name: app-identity        # resourceId in the VM's own subscription and resource group

    No section means no managed identity, as on a new Azure VM: the token endpoint then answers
    "Identity not found". Missing GUIDs are derived from the VM's or the identity's resource id, so
    they are the same on every start; GUIDs are compared and served in lower case.
    """
    section = section or {}
    sub = compute["subscriptionId"]
    tenant = section.get("tenantId") or _stable_uuid(f"tenant:{sub.lower()}")
    system = None
    raw_system = section.get("systemAssigned") or {}
    where = "identity.systemAssigned"
    if raw_system.get("enabled", bool(raw_system.keys() - {"enabled"})):
        seed = compute["resourceId"].lower() + "/identity/system"
        object_id = _principal(raw_system, where, problems) or _stable_uuid(seed + "/objectId")
        system = Identity("system", raw_system.get("clientId") or _stable_uuid(seed + "/clientId"), object_id,
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
        object_id = _principal(raw, where, problems) or _stable_uuid(seed + "/objectId")
        users.append(Identity("user", raw.get("clientId") or _stable_uuid(seed + "/clientId"), object_id, resource_id))
    _unique(system, users, problems)
    return Identities(tenant, system, tuple(users))


def no_identities(compute: dict[str, Any]) -> Identities:
    """A VM without managed identities (for a Profile built by hand, which has no ``identity``)."""
    return _identities(None, compute, [])


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


# -- defaults ----------------------------------------------------------------------------------------------

_IMAGE = {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2",
          "version": "22.04.202410020"}


def complete(tree: dict[str, Any], problems: list[tuple[str, str]]) -> dict[str, Any]:
    """Fill what a validated tree leaves out with realistic values consistent with what it has.

    Values the tree gives are never changed (but for MAC addresses, normalised to the real form), so a
    captured document renders back as it was.
    """
    tree = deepcopy(tree)
    compute = tree.setdefault("compute", {})
    _complete_compute(compute)
    network = tree.setdefault("network", {})
    interfaces = network.setdefault("interface", [_default_nic()])
    for index, nic in enumerate(interfaces):
        _complete_nic(nic, index, compute["resourceId"], problems)
    extended = tree.setdefault("extended", {}).setdefault("compute", {})
    extended.setdefault("ppsType", "None")
    _fill(tree, catalog.instance_schema())
    return tree


def _complete_compute(c: dict[str, Any]) -> None:
    c.setdefault("name", "azimds-vm")
    c.setdefault("location", "eastus")
    c.setdefault("subscriptionId", _DEFAULT_SUBSCRIPTION)
    c.setdefault("resourceGroupName", "azimds-rg")
    c.setdefault("osType", "Linux")
    linux = c["osType"].lower() == "linux"
    rg_path = f"/subscriptions/{c['subscriptionId']}/resourceGroups/{c['resourceGroupName']}"
    c.setdefault("resourceId", f"{rg_path}/providers/Microsoft.Compute/virtualMachines/{c['name']}")
    c.setdefault("vmId", _stable_uuid(c["resourceId"].lower()))
    c.setdefault("azEnvironment", "AzurePublicCloud")
    c.setdefault("provider", "Microsoft.Compute")
    c.setdefault("vmSize", "Standard_D2s_v3")
    c.setdefault("platformFaultDomain", "0")
    c.setdefault("platformUpdateDomain", "0")
    c.setdefault("priority", "Regular")
    c.setdefault("isHostCompatibilityLayerVm", "false")
    c.setdefault("additionalCapabilities", {}).setdefault("hibernationEnabled", "false")
    security = c.setdefault("securityProfile", {})
    for key in ("secureBootEnabled", "virtualTpmEnabled", "encryptionAtHost"):
        security.setdefault(key, "false")
    os_profile = c.setdefault("osProfile", {})
    os_profile.setdefault("adminUsername", "azureuser")
    os_profile.setdefault("computerName", c["name"])
    os_profile.setdefault("disablePasswordAuthentication", "true" if linux else "")
    # Tags: the string and the list say the same thing; derive whichever is missing.
    if "tags" in c and "tagsList" not in c:
        c["tagsList"] = [{"name": k, "value": v} for k, v in _split_tags(c["tags"])]
    elif "tagsList" in c and "tags" not in c:
        c["tags"] = ";".join(f"{t.get('name', '')}:{t.get('value', '')}" for t in c["tagsList"])
    # The image: compute's offer/publisher/sku/version and storageProfile.imageReference agree.
    storage = c.setdefault("storageProfile", {})
    image = storage.setdefault("imageReference", {})
    for key in ("publisher", "offer", "sku", "version"):
        if key not in c and key not in image:
            c[key] = image[key] = _IMAGE[key]
        else:
            c.setdefault(key, image.get(key, ""))
            image.setdefault(key, c[key])
    if image.get("version") != "latest":
        image.setdefault("exactVersion", image.get("version", ""))
    _complete_storage(storage, c, rg_path, linux)


def _split_tags(tags: str) -> list[tuple[str, str]]:
    pairs = []
    for item in tags.split(";"):
        if item:
            name, _, value = item.partition(":")
            pairs.append((name, value))
    return pairs


def _complete_storage(storage: dict[str, Any], c: dict[str, Any], rg_path: str, linux: bool) -> None:
    disk_path = f"{rg_path}/providers/Microsoft.Compute/disks"
    os_disk = storage.setdefault("osDisk", {})
    os_disk.setdefault("name", f"{c['name']}_OsDisk_1_{_hex(c['resourceId'] + '/osDisk', 32)}")
    os_disk.setdefault("caching", "ReadWrite")
    os_disk.setdefault("createOption", "FromImage")
    os_disk.setdefault("diskSizeGB", "30")
    os_disk.setdefault("osType", c["osType"])
    os_disk.setdefault("writeAcceleratorEnabled", "false")
    os_disk.setdefault("encryptionSettings", {}).setdefault("enabled", "false")
    managed = os_disk.setdefault("managedDisk", {})
    managed.setdefault("id", f"{disk_path}/{os_disk['name']}")
    managed.setdefault("storageAccountType", "Premium_LRS")
    for lun, disk in enumerate(storage.setdefault("dataDisks", [])):
        disk.setdefault("lun", str(lun))
        disk.setdefault("name", f"{c['name']}_DataDisk_{disk['lun']}")
        disk.setdefault("caching", "None")
        disk.setdefault("createOption", "Empty")
        disk.setdefault("diskSizeGB", "32")
        disk.setdefault("isSharedDisk", "false")
        disk.setdefault("isUltraDisk", "false")
        disk.setdefault("writeAcceleratorEnabled", "false")
        data_managed = disk.setdefault("managedDisk", {})
        data_managed.setdefault("id", f"{disk_path}/{disk['name']}")
        data_managed.setdefault("storageAccountType", "Premium_LRS")
    storage.setdefault("resourceDisk", {}).setdefault("size", "16384")


def _default_nic() -> dict[str, Any]:
    return {"ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4", "publicIpAddress": ""}],
                     "subnet": [{"address": "10.0.0.0", "prefix": "24"}]},
            "ipv6": {"ipAddress": []}}


def _complete_nic(nic: dict[str, Any], index: int, resource_id: str, problems: list[tuple[str, str]]) -> None:
    mac = nic.get("macAddress")
    if mac is None:
        nic["macAddress"] = _AZURE_OUI + _hex(f"{resource_id}/nic/{index}", 6).upper()
        return
    normal = mac.replace(":", "").replace("-", "").upper()
    if len(normal) != 12 or any(ch not in "0123456789ABCDEF" for ch in normal):
        problems.append((f"network.interface[{index}].macAddress", f"not a MAC address: {mac!r}"))
    nic["macAddress"] = normal


def _stable_uuid(seed: str) -> str:
    """A random-looking (version 4) lower-case GUID that is the same every time for the same seed."""
    return str(uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16], version=4))


def _hex(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def _fill(value: Any, node: catalog.Node) -> None:
    """Give every known member of every present object a value: "" for leaves, [] for arrays, {...}."""
    if node.children is None:
        return
    if node.is_array:
        item = node.children["*"]
        for element in value:
            _fill(element, item)
        return
    for key, child in node.children.items():
        if key not in value:
            if child.path in catalog.OPTIONAL_FIELDS:
                continue
            value[key] = "" if child.children is None else [] if child.is_array else {}
        _fill(value[key], child)
