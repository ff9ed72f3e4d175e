"""Many VMs in one emulator, each answered about itself: who is asking is told by the source address.

A profile's ``fleet`` section lists VMs and scale sets; the profile's own ``compute``/``network`` is the
first VM and the base every other VM is built on. Tags set at subscription, resource-group and scale-set
level are inherited by the VMs below, as Azure Policy's tag inheritance does, and a VM's own tags win.
Scale-set instances are made only when one is first asked for, so a fleet of 100,000 starts at once::

    fleet:
      tags: {costCenter: "42"}                      # every VM
      resourceGroups: {app-rg: {tags: {env: prod}}}
      strict: false                                 # true: addresses no VM owns are refused (403)
      vms:
        - {addresses: [127.0.0.2], availabilitySet: db, compute: {name: db-1}}
      scaleSets:
        - {name: web, capacity: 1000, addresses: 127.1.0.0, subnet: 10.1.0.0/16,
           faultDomains: 5, updateDomains: 5, tags: {tier: web}, compute: {vmSize: Standard_D4s_v5}}

Events scheduled for a scale set or availability set are seen by every member of it.
"""

from __future__ import annotations

import ipaddress
import threading
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Iterator

from .events import EventBook
from .profile import Profile, ProfileError, _identities, _split_tags, _stable_uuid, _validate, complete
from .state import Emulation

__all__ = ["Fleet", "check_fleet"]

_FLEET_KEYS = {"tags", "resourceGroups", "strict", "vms", "scaleSets"}
_VM_KEYS = {"addresses", "availabilitySet", "compute", "network"}
_SET_KEYS = {"name", "capacity", "addresses", "subnet", "faultDomains", "updateDomains", "tags", "compute",
             "network", "resourceGroupName"}
MAX_LIVE = 20_000  # scale-set instances kept made at once; the least recently made are let go past it


@dataclass
class ScaleSet:
    name: str
    capacity: int
    first_address: int  # the source address of instance 0, as an integer
    subnet: ipaddress.IPv4Network | None
    fault_domains: int
    update_domains: int
    tags: dict[str, str]
    template: dict[str, Any]  # compute/network overlay
    resource_group: str | None
    events: EventBook | None = None

    def index_of(self, address: int) -> int | None:
        index = address - self.first_address
        return index if 0 <= index < self.capacity else None

    def member_name(self, index: int) -> str:
        return f"{self.name}_{index}"


@dataclass
class ExplicitVm:
    addresses: list[str]
    availability_set: str | None
    overlay: dict[str, Any]


@dataclass
class FleetSpec:
    tags: dict[str, str] = field(default_factory=dict)
    group_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    strict: bool = False
    vms: list[ExplicitVm] = field(default_factory=list)
    scale_sets: list[ScaleSet] = field(default_factory=list)


def _tags(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
        raise ValueError(f"{where}: tags are a mapping of names to values")
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def _int(value: Any, where: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"{where}: must be {low}-{high}, not {number}")
    return number


def parse_spec(section: dict[str, Any]) -> FleetSpec:
    """The ``fleet`` section as typed values. Raises ValueError naming the place and the problem."""
    unknown = set(section) - _FLEET_KEYS
    if unknown:
        raise ValueError(f"fleet.{sorted(unknown)[0]}: unknown field")
    spec = FleetSpec(tags=_tags(section.get("tags"), "fleet.tags"), strict=bool(section.get("strict", False)))
    for group, settings in (section.get("resourceGroups") or {}).items():
        if not isinstance(settings, dict) or set(settings) - {"tags"}:
            raise ValueError(f"fleet.resourceGroups.{group}: only 'tags' may be set here")
        spec.group_tags[str(group)] = _tags(settings.get("tags"), f"fleet.resourceGroups.{group}.tags")
    taken: list[tuple[int, int, str]] = []  # (first address, how many, whose)
    for i, item in enumerate(section.get("vms") or []):
        where = f"fleet.vms[{i}]"
        if not isinstance(item, dict) or set(item) - _VM_KEYS:
            raise ValueError(f"{where}: a VM has addresses, availabilitySet, compute and network")
        if not isinstance(item.get("compute"), dict) or not item["compute"].get("name"):
            raise ValueError(f"{where}.compute.name: every VM of a fleet needs its own name")
        addresses = item.get("addresses") or []
        for address in addresses:
            _claim(taken, _address(address, f"{where}.addresses"), 1, where)
        spec.vms.append(ExplicitVm([str(ipaddress.IPv4Address(str(a))) for a in addresses], item.get("availabilitySet"),
                                   {k: item[k] for k in ("compute", "network") if k in item}))
    names = set()
    for i, item in enumerate(section.get("scaleSets") or []):
        where = f"fleet.scaleSets[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: a scale set is a mapping")
        unknown = set(item) - _SET_KEYS
        if unknown:
            raise ValueError(f"{where}.{sorted(unknown)[0]}: unknown field")
        name = item.get("name")
        if not isinstance(name, str) or not name or name in names:
            raise ValueError(f"{where}.name: a scale set needs a unique name")
        names.add(name)
        capacity = _int(item.get("capacity", 2), f"{where}.capacity", 1, 1_000_000)
        first = _address(item.get("addresses"), f"{where}.addresses")
        _claim(taken, first, capacity, where)
        subnet = None
        if item.get("subnet") is not None:
            try:
                subnet = ipaddress.IPv4Network(str(item["subnet"]))
            except ValueError as exc:
                raise ValueError(f"{where}.subnet: {exc}") from None
            if subnet.num_addresses - 5 < capacity:  # Azure keeps the first four and the last address
                raise ValueError(f"{where}.subnet: {subnet} has room for {subnet.num_addresses - 5} VMs, not {capacity}")
        spec.scale_sets.append(ScaleSet(
            name, capacity, first, subnet, _int(item.get("faultDomains", 5), f"{where}.faultDomains", 1, 20),
            _int(item.get("updateDomains", 5), f"{where}.updateDomains", 1, 20), _tags(item.get("tags"), f"{where}.tags"),
            {k: item[k] for k in ("compute", "network") if k in item}, item.get("resourceGroupName")))
    return spec


def _address(value: Any, where: str) -> int:
    try:
        return int(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise ValueError(f"{where}: not an IPv4 address: {value!r}") from None


def _claim(taken: list[tuple[int, int, str]], first: int, count: int, where: str) -> None:
    """Addresses belong to one VM each: a new range must not overlap one claimed before."""
    for start, length, owner in taken:
        if first < start + length and start < first + count:
            raise ValueError(f"{where}: its addresses overlap {owner}'s")
    taken.append((first, count, where))


def _merge(base: Any, overlay: Any) -> Any:
    """A new tree: ``base`` with ``overlay`` laid over it, mappings merged key by key; neither is changed."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = deepcopy(base)
        for key, value in overlay.items():
            out[key] = _merge(base.get(key), value)
        return out
    return deepcopy(overlay)


def _own_tags(compute: dict[str, Any]) -> dict[str, str]:
    tags = compute.get("tags")
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    if "tagsList" in compute:
        return {t.get("name", ""): t.get("value", "") for t in compute["tagsList"]}
    return dict(_split_tags(tags)) if isinstance(tags, str) else {}


class Fleet:
    """The VMs of a fleet profile, found by source address or by name."""

    def __init__(self, first: Emulation, profile: Profile, identity_section: Any = None):
        self.first = first
        self.profile = profile
        self.spec = parse_spec(profile.fleet or {})
        if self.spec.tags or self.spec.group_tags:  # the first VM inherits too
            instance = deepcopy(profile.instance)
            self._set_tags(instance["compute"], self._inherited(profile.tree.get("compute", {})))
            profile.instance = instance
            first.vm.replace(instance, profile.loadbalancer)
        self._identity_section = identity_section
        self._lock = threading.Lock()
        self._by_address: dict[str, Emulation | None] = {}
        self._by_name: dict[str, Emulation] = {first.vm.instance["compute"]["name"]: first}
        self._set_books: dict[str, EventBook] = {}
        self._live: dict[tuple[str, int], Emulation] = {}
        for index, vm in enumerate(self.spec.vms):
            emulation = self._make(self._explicit_tree(vm), vm.availability_set)
            self._by_name[emulation.vm.instance["compute"]["name"]] = emulation
            for address in vm.addresses:
                self._by_address[address] = emulation
        for scale_set in self.spec.scale_sets:
            scale_set.events = self._book(f"vmss:{scale_set.name}")

    @property
    def strict(self) -> bool:
        return self.spec.strict

    def __len__(self) -> int:
        return 1 + len(self.spec.vms) + sum(s.capacity for s in self.spec.scale_sets)

    def for_peer(self, peer: str) -> Emulation | None:
        """The VM the address belongs to; None when no VM owns it."""
        emulation = self._by_address.get(peer, False)
        if emulation is not False:
            return emulation  # type: ignore[return-value]
        try:
            address = int(ipaddress.ip_address(peer))
        except ValueError:
            address = -1
        found = None
        for scale_set in self.spec.scale_sets:
            index = scale_set.index_of(address)
            if index is not None:
                found = self.member(scale_set, index)
                break
        with self._lock:
            if len(self._by_address) > 4 * MAX_LIVE:
                self._by_address.clear()
            self._by_address[peer] = found
        return found

    def by_name(self, name: str) -> Emulation | None:
        found = self._by_name.get(name)
        if found is not None:
            return found
        set_name, _, index = name.rpartition("_")
        for scale_set in self.spec.scale_sets:
            if scale_set.name == set_name and index.isdigit() and int(index) < scale_set.capacity:
                return self.member(scale_set, int(index))
        return None

    def members(self) -> Iterator[str]:
        """Every VM's name (scale-set instances without making them)."""
        yield from self._by_name
        for scale_set in self.spec.scale_sets:
            for index in range(scale_set.capacity):
                name = scale_set.member_name(index)
                if name not in self._by_name:
                    yield name

    def member(self, scale_set: ScaleSet, index: int) -> Emulation:
        key = (scale_set.name, index)
        emulation = self._live.get(key)
        if emulation is None:
            with self._lock:
                emulation = self._live.get(key)
                if emulation is None:
                    emulation = self._make(self._member_tree(scale_set, index), None, scale_set.events)
                    if len(self._live) >= MAX_LIVE:
                        old_key, old = next(iter(self._live.items()))
                        del self._live[old_key]
                        self._by_name.pop(old.vm.instance["compute"]["name"], None)
                        self._by_address = {k: v for k, v in self._by_address.items() if v is not old}
                    self._live[key] = emulation
                    self._by_name[scale_set.member_name(index)] = emulation
        return emulation

    def update_domain_groups(self, set_name: str) -> list[list[str]]:
        """The members' names of one scale set, grouped by update domain, for a walk through them."""
        for scale_set in self.spec.scale_sets:
            if scale_set.name == set_name:
                return [[scale_set.member_name(i) for i in range(ud, scale_set.capacity, scale_set.update_domains)]
                        for ud in range(min(scale_set.update_domains, scale_set.capacity))]
        raise KeyError(set_name)

    def book_of_set(self, set_name: str) -> EventBook | None:
        return self._set_books.get(f"vmss:{set_name}") or self._set_books.get(f"avset:{set_name}")

    # -- making VMs -----------------------------------------------------------------------------------
    def _book(self, key: str) -> EventBook:
        book = self._set_books.get(key)
        if book is None:
            book = self._set_books[key] = EventBook(self.first.clock.now)
        return book

    def _inherited(self, compute: dict[str, Any], set_tags: dict[str, str] | None = None) -> dict[str, str]:
        group = compute.get("resourceGroupName") or self.profile.tree.get("compute", {}).get("resourceGroupName")
        tags = dict(self.spec.tags)
        tags.update(self.spec.group_tags.get(str(group), {}))
        tags.update(set_tags or {})
        tags.update(_own_tags(compute))
        return tags

    def _explicit_tree(self, vm: ExplicitVm) -> dict[str, Any]:
        tree = _merge(self.profile.tree, vm.overlay)
        compute = tree.setdefault("compute", {})
        own = vm.overlay.get("compute", {})
        for key in ("vmId", "resourceId", "osProfile", "storageProfile", "tags", "tagsList"):  # per VM, not inherited
            if key not in own:
                compute.pop(key, None)
        if "network" not in vm.overlay:
            tree.pop("network", None)
        self._set_tags(compute, self._inherited(compute))
        return tree

    def _member_tree(self, scale_set: ScaleSet, index: int) -> dict[str, Any]:
        tree = _merge(self.profile.tree, scale_set.template)
        compute = tree.setdefault("compute", {})
        for key in ("vmId", "resourceId", "name", "osProfile", "storageProfile", "tags", "tagsList"):
            if key not in scale_set.template.get("compute", {}):
                compute.pop(key, None)
        if scale_set.resource_group:
            compute["resourceGroupName"] = scale_set.resource_group
        base = self.first.vm.instance["compute"]
        compute.setdefault("subscriptionId", base["subscriptionId"])
        compute.setdefault("resourceGroupName", base["resourceGroupName"])
        name = scale_set.member_name(index)
        compute["name"] = name
        compute["vmScaleSetName"] = scale_set.name
        compute["platformFaultDomain"] = str(index % scale_set.fault_domains)
        compute["platformUpdateDomain"] = str(index % scale_set.update_domains)
        compute["placementGroupId"] = _stable_uuid(f"{compute['subscriptionId']}/{scale_set.name}/placement")
        compute["resourceId"] = (f"/subscriptions/{compute['subscriptionId']}/resourceGroups/"
                                 f"{compute['resourceGroupName']}/providers/Microsoft.Compute/virtualMachineScaleSets/"
                                 f"{scale_set.name}/virtualMachines/{index}")
        compute["osProfile"] = {"computerName": f"{scale_set.name}{index:06X}"}
        self._set_tags(compute, self._inherited(compute, scale_set.tags))
        if scale_set.subnet is not None:
            address = scale_set.subnet.network_address + 4 + index
            tree["network"] = {"interface": [{"ipv4": {
                "ipAddress": [{"privateIpAddress": str(address), "publicIpAddress": ""}],
                "subnet": [{"address": str(scale_set.subnet.network_address),
                            "prefix": str(scale_set.subnet.prefixlen)}]}, "ipv6": {"ipAddress": []}}]}
        elif "network" not in scale_set.template:
            tree.pop("network", None)
        return tree

    @staticmethod
    def _set_tags(compute: dict[str, Any], tags: dict[str, str]) -> None:
        compute.pop("tagsList", None)
        compute["tags"] = ";".join(f"{k}:{v}" for k, v in tags.items())
        compute["tagsList"] = [{"name": k, "value": v} for k, v in tags.items()]

    def _make(self, tree: dict[str, Any], availability_set: str | None,
              book: EventBook | None = None) -> Emulation:
        problems: list[tuple[str, str]] = []
        instance = complete(tree, problems)
        identities = _identities(self._identity_section, instance["compute"], problems)
        if problems:
            raise ProfileError(self.profile.source, problems)
        profile = Profile(self.profile.source, instance, None, self.profile.settings, identities)
        if availability_set:
            book = self._book(f"avset:{availability_set}")
        return Emulation(profile, shared=self.first, events=book)


def check_fleet(profile: Profile, identity_section: Any) -> list[tuple[str, str]]:
    """Problems with a profile's fleet section; explicit VMs and one instance of each scale set are built."""
    try:
        spec = parse_spec(profile.fleet or {})
        overlays = [(f"fleet.vms[{i}]", vm.overlay) for i, vm in enumerate(spec.vms)]
        overlays += [(f"fleet.scaleSets[{i}]", s.template) for i, s in enumerate(spec.scale_sets)]
        for where, overlay in overlays:
            compute = overlay.get("compute")
            if isinstance(compute, dict) and isinstance(compute.get("tags"), dict):
                _tags(compute["tags"], f"{where}.compute.tags")
                overlay = {**overlay, "compute": {k: v for k, v in compute.items() if k != "tags"}}
            try:
                _validate(_merge(profile.tree, overlay), profile.source)
            except ProfileError as exc:
                return [(f"{where}.{place}" if place else where, problem) for place, problem in exc.problems]
        fleet = Fleet(Emulation(profile), profile, identity_section)
        for scale_set in fleet.spec.scale_sets:
            fleet.member(scale_set, scale_set.capacity - 1)
    except ValueError as exc:
        if isinstance(exc, ProfileError):
            return exc.problems
        where, _, problem = str(exc).partition(": ")
        return [(where, problem)]
    return []
