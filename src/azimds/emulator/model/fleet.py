"""What a fleet is: the VMs and scale sets a profile's ``fleet`` section lists, and how each member's tree is made.

The profile's own ``compute``/``network`` is the first VM and the base every other VM is built on. Tags set at
subscription, resource-group and scale-set level are inherited by the VMs below, as Azure Policy's tag
inheritance does, and a VM's own tags win::

    fleet:
      tags: {costCenter: "42"}                      # every VM
      resourceGroups: {app-rg: {tags: {env: prod}}}
      strict: false                                 # true: addresses no VM owns are refused (403)
      vms:
        - {addresses: [127.0.0.2], availabilitySet: db, compute: {name: db-1}}
      scaleSets:
        - {name: web, capacity: 1000, addresses: 127.1.0.0, subnet: 10.1.0.0/16,
           faultDomains: 5, updateDomains: 5, tags: {tier: web}, compute: {vmSize: Standard_D4s_v5}}
        - {name: pods, capacity: 50, addresses: dynamic, idleRelease: 10m}

A scale set's ``addresses`` is the source address of instance 0 (instance *i* calls from the *i*-th after it), or
``dynamic``: a source address no other VM owns claims the lowest free instance, keeps it while it calls, and lets
it go after ``idleRelease`` without a call (pods whose addresses are not known in advance).

Pure data: the world (``world/fleet.py``) makes members from these trees when they are first asked for.
"""

from __future__ import annotations

import ipaddress
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ...azure import format_tags, split_tags, tags_list
from ...errors import ProfileError
from .defaults import stable_uuid
from .values import Duration, Flag, Whole, imds_string, validate

__all__ = ["DEFAULT_IDLE_RELEASE", "DYNAMIC", "MAX_DYNAMIC_CAPACITY", "ExplicitVm", "FleetSpec", "ScaleSet",
           "explicit_tree", "inherited_tags", "member_tree", "parse_fleet", "with_tags"]

MAX_CAPACITY = 1_000_000
#: ``addresses: dynamic``: instances are claimed by the source addresses that call.
DYNAMIC = "dynamic"
#: A dynamic scale set's claims are one row of the store, rewritten on every claim: it stays small.
MAX_DYNAMIC_CAPACITY = 10_000
#: Seconds without a call after which a dynamic instance is let go, unless the profile says (``idleRelease``).
DEFAULT_IDLE_RELEASE = 600.0
MAX_IDLE_RELEASE = 365 * 86400.0


def _tag_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise ValueError("a tag value is a string, not a mapping or a list")
    return imds_string(value)


TagValue = Annotated[str, BeforeValidator(_tag_value), Field(max_length=256)]
Tags = dict[Annotated[str, Field(min_length=1, max_length=512)], TagValue]
_CLOSED = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class _Group(BaseModel):
    model_config = _CLOSED
    tags: Tags = {}


class _Vm(BaseModel):
    model_config = _CLOSED
    addresses: list[str] = []
    availability_set: Annotated[str | None, Field(alias="availabilitySet", min_length=1)] = None
    compute: dict[str, Any] = {}
    network: dict[str, Any] | None = None


class _ScaleSet(BaseModel):
    model_config = _CLOSED
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    capacity: Annotated[Whole, Field(ge=1, le=MAX_CAPACITY)] = 2
    addresses: str
    idle_release: Annotated[Duration | None, Field(alias="idleRelease")] = None
    subnet: str | None = None
    fault_domains: Annotated[Whole, Field(alias="faultDomains", ge=1, le=20)] = 5
    update_domains: Annotated[Whole, Field(alias="updateDomains", ge=1, le=20)] = 5
    tags: Tags = {}
    compute: dict[str, Any] = {}
    network: dict[str, Any] | None = None
    resource_group: Annotated[str | None, Field(alias="resourceGroupName", min_length=1)] = None


class _Fleet(BaseModel):
    model_config = _CLOSED
    tags: Tags = {}
    resource_groups: Annotated[dict[str, _Group], Field(alias="resourceGroups")] = {}
    strict: Flag = False
    vms: list[_Vm] = []
    scale_sets: Annotated[list[_ScaleSet], Field(alias="scaleSets")] = []


@dataclass(frozen=True)
class ScaleSet:
    name: str
    capacity: int
    first_address: int | None  # the source address of instance 0, as an integer; None: claimed (dynamic)
    subnet: ipaddress.IPv4Network | None
    fault_domains: int
    update_domains: int
    tags: dict[str, str]
    template: dict[str, Any]  # compute/network overlay
    resource_group: str | None
    # Seconds without a call before a dynamic instance is let go (not part of what the world is: a state kept
    # with one idle time is the same world with another).
    idle_release: float = field(default=DEFAULT_IDLE_RELEASE, repr=False)

    @property
    def dynamic(self) -> bool:
        return self.first_address is None

    def index_of(self, address: int) -> int | None:
        if self.first_address is None:
            return None
        index = address - self.first_address
        return index if 0 <= index < self.capacity else None

    def member_name(self, index: int) -> str:
        return f"{self.name}_{index}"

    def update_domain_groups(self) -> list[list[str]]:
        """The members' names grouped by update domain, for a walk through them."""
        return [[self.member_name(i) for i in range(ud, self.capacity, self.update_domains)]
                for ud in range(min(self.update_domains, self.capacity))]


@dataclass(frozen=True)
class ExplicitVm:
    addresses: tuple[str, ...]
    availability_set: str | None
    overlay: dict[str, Any]


@dataclass(frozen=True)
class FleetSpec:
    tags: dict[str, str] = field(default_factory=dict)
    group_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    strict: bool = False
    vms: tuple[ExplicitVm, ...] = ()
    scale_sets: tuple[ScaleSet, ...] = ()

    def scale_set(self, name: str) -> ScaleSet | None:
        return next((s for s in self.scale_sets if s.name == name), None)

    @property
    def dynamic_sets(self) -> tuple[ScaleSet, ...]:
        """The scale sets whose instances are claimed, in the profile's order (a newcomer joins the first with a
        free instance)."""
        return tuple(s for s in self.scale_sets if s.dynamic)


def parse_fleet(section: Any, source: str) -> FleetSpec:
    """The ``fleet`` section as typed values. Raises ProfileError naming every problem and its place."""
    raw = validate(_adapter(), section, source, lax=True, where="fleet")
    problems: list[tuple[str, str]] = []
    taken: list[tuple[int, int, str]] = []  # (first address, how many, whose)
    vms = []
    for i, vm in enumerate(raw.vms):
        where = f"fleet.vms[{i}]"
        if not isinstance(vm.compute.get("name"), str) or not vm.compute.get("name"):
            problems.append((f"{where}.compute.name", "every VM of a fleet needs its own name"))
        _check_tags(vm.compute, where, problems)
        addresses = []
        for address in vm.addresses:
            number = _address(address, f"{where}.addresses", problems)
            if number is not None:
                _claim(taken, number, 1, where, problems)
                addresses.append(str(ipaddress.IPv4Address(number)))
        overlay = {"compute": vm.compute, **({"network": vm.network} if vm.network is not None else {})}
        vms.append(ExplicitVm(tuple(addresses), vm.availability_set, overlay))
    sets = []
    names: set[str] = set()
    for i, item in enumerate(raw.scale_sets):
        where = f"fleet.scaleSets[{i}]"
        if item.name in names:
            problems.append((f"{where}.name", "a scale set needs a unique name"))
        names.add(item.name)
        _check_tags(item.compute, where, problems)
        first = None
        idle = DEFAULT_IDLE_RELEASE
        if item.addresses.strip().lower() == DYNAMIC:
            if item.capacity > MAX_DYNAMIC_CAPACITY:
                problems.append((f"{where}.capacity", f"a dynamic scale set has at most {MAX_DYNAMIC_CAPACITY} "
                                                      f"instances, not {item.capacity}"))
            if item.idle_release is not None:
                if not 1 <= item.idle_release <= MAX_IDLE_RELEASE:
                    problems.append((f"{where}.idleRelease", "must be 1 second to 365 days, not "
                                                             f"{item.idle_release:g} seconds"))
                idle = item.idle_release
        else:
            if item.idle_release is not None:
                problems.append((f"{where}.idleRelease", "only a scale set with addresses: dynamic lets instances "
                                                         "go"))
            first = _address(item.addresses, f"{where}.addresses", problems, or_dynamic=True)
            if first is not None:
                _claim(taken, first, item.capacity, where, problems)
        subnet = None
        if item.subnet is not None:
            try:
                subnet = ipaddress.IPv4Network(item.subnet)
            except ValueError as exc:
                problems.append((f"{where}.subnet", str(exc)))
            else:
                if subnet.num_addresses - 5 < item.capacity:  # Azure keeps the first four and the last address
                    problems.append((f"{where}.subnet", f"{subnet} has room for {subnet.num_addresses - 5} VMs, "
                                                        f"not {item.capacity}"))
        overlay = {"compute": item.compute, **({"network": item.network} if item.network is not None else {})}
        sets.append(ScaleSet(item.name, item.capacity, first, subnet, item.fault_domains, item.update_domains,
                             dict(item.tags), overlay, item.resource_group, idle))
    if problems:
        raise ProfileError(source, problems)
    group_tags = {name: dict(group.tags) for name, group in raw.resource_groups.items()}
    return FleetSpec(dict(raw.tags), group_tags, raw.strict, tuple(vms), tuple(sets))


def _check_tags(compute: dict[str, Any], where: str, problems: list[tuple[str, str]]) -> None:
    """An overlay's ``tags`` may be the mapping form; its values must be scalars."""
    tags = compute.get("tags")
    if isinstance(tags, dict):
        for key, value in tags.items():
            if isinstance(value, (dict, list)):
                problems.append((f"{where}.compute.tags.{key}", "a tag value is a string, not a mapping or a list"))


def _address(value: str, where: str, problems: list[tuple[str, str]], *, or_dynamic: bool = False) -> int | None:
    try:
        return int(ipaddress.IPv4Address(value))
    except ValueError:
        problems.append((where, f"not an IPv4 address{' or dynamic' if or_dynamic else ''}: {value!r}"))
        return None


def _claim(taken: list[tuple[int, int, str]], first: int, count: int, where: str,
           problems: list[tuple[str, str]]) -> None:
    """Addresses belong to one VM each: a new range must not overlap one claimed before."""
    for start, length, owner in taken:
        if first < start + length and start < first + count:
            problems.append((where, f"its addresses overlap {owner}'s"))
            return
    taken.append((first, count, where))


# -- member trees ------------------------------------------------------------------------------------------

def merge(base: Any, overlay: Any) -> Any:
    """A new tree: ``base`` with ``overlay`` laid over it, mappings merged key by key; neither is changed."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = deepcopy(base)
        for key, value in overlay.items():
            out[key] = merge(base.get(key), value)
        return out
    return deepcopy(overlay)


def own_tags(compute: dict[str, Any]) -> dict[str, str]:
    tags = compute.get("tags")
    if isinstance(tags, dict):
        return {str(k): str(imds_string(v)) for k, v in tags.items()}
    if "tagsList" in compute:
        return {t.get("name", ""): t.get("value", "") for t in compute["tagsList"]}
    return dict(split_tags(tags)) if isinstance(tags, str) else {}


def inherited_tags(spec: FleetSpec, compute: dict[str, Any], base_group: str | None,
                   set_tags: dict[str, str] | None = None) -> dict[str, str]:
    """Subscription < resource group < scale set < the VM's own tags."""
    group = compute.get("resourceGroupName") or base_group
    tags = dict(spec.tags)
    tags.update(spec.group_tags.get(str(group), {}))
    tags.update(set_tags or {})
    tags.update(own_tags(compute))
    return tags


def with_tags(compute: dict[str, Any], tags: dict[str, str]) -> None:
    """Write ``tags`` as both the ``tags`` string and ``tagsList``."""
    pairs = list(tags.items())
    compute["tags"] = format_tags(pairs)
    compute["tagsList"] = tags_list(pairs)


def explicit_tree(spec: FleetSpec, base: dict[str, Any], vm: ExplicitVm) -> dict[str, Any]:
    """The tree of an explicitly listed VM: the base VM with its overlay; per-VM identifiers not inherited."""
    tree: dict[str, Any] = merge(base, vm.overlay)
    compute = tree.setdefault("compute", {})
    own = vm.overlay.get("compute", {})
    for key in ("vmId", "resourceId", "osProfile", "storageProfile", "tags", "tagsList"):
        if key not in own:
            compute.pop(key, None)
    if "network" not in vm.overlay:
        tree.pop("network", None)
    with_tags(compute, inherited_tags(spec, compute, base.get("compute", {}).get("resourceGroupName")))
    return tree


def member_tree(spec: FleetSpec, base: dict[str, Any], base_compute: dict[str, Any], scale_set: ScaleSet,
                index: int) -> dict[str, Any]:
    """The tree of scale set instance ``index``: name, domains, resource id and address follow from it.

    ``base_compute`` is the first VM's completed compute document (its subscription and resource group).
    """
    tree: dict[str, Any] = merge(base, scale_set.template)
    compute = tree.setdefault("compute", {})
    for key in ("vmId", "resourceId", "name", "osProfile", "storageProfile", "tags", "tagsList"):
        if key not in scale_set.template.get("compute", {}):
            compute.pop(key, None)
    if scale_set.resource_group:
        compute["resourceGroupName"] = scale_set.resource_group
    compute.setdefault("subscriptionId", base_compute["subscriptionId"])
    compute.setdefault("resourceGroupName", base_compute["resourceGroupName"])
    compute["name"] = scale_set.member_name(index)
    compute["vmScaleSetName"] = scale_set.name
    compute["platformFaultDomain"] = str(index % scale_set.fault_domains)
    compute["platformUpdateDomain"] = str(index % scale_set.update_domains)
    compute["placementGroupId"] = stable_uuid(f"{compute['subscriptionId']}/{scale_set.name}/placement")
    compute["resourceId"] = (f"/subscriptions/{compute['subscriptionId']}/resourceGroups/"
                             f"{compute['resourceGroupName']}/providers/Microsoft.Compute/virtualMachineScaleSets/"
                             f"{scale_set.name}/virtualMachines/{index}")
    compute["osProfile"] = {"computerName": f"{scale_set.name}{index:06X}"}
    with_tags(compute, inherited_tags(spec, compute, base.get("compute", {}).get("resourceGroupName"),
                                      scale_set.tags))
    if scale_set.subnet is not None:
        address = scale_set.subnet.network_address + 4 + index
        tree["network"] = {"interface": [{"ipv4": {
            "ipAddress": [{"privateIpAddress": str(address), "publicIpAddress": ""}],
            "subnet": [{"address": str(scale_set.subnet.network_address),
                        "prefix": str(scale_set.subnet.prefixlen)}]}, "ipv6": {"ipAddress": []}}]}
    elif "network" not in scale_set.template:
        tree.pop("network", None)
    return tree


_ADAPTER: list[pydantic.TypeAdapter[_Fleet]] = []


def _adapter() -> pydantic.TypeAdapter[_Fleet]:
    if not _ADAPTER:
        _ADAPTER.append(pydantic.TypeAdapter(_Fleet))
    return _ADAPTER[0]
