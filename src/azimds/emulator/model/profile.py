"""What a VM is, as a profile file says: read, validated against the catalogue and completed with defaults.

A profile mirrors the real response tree (``compute``, ``network``), so a document captured from a real VM is
a valid profile as it is. Optional parts: ``loadbalancer`` (the /metadata/loadbalancer document),
``extended`` (what ``extended=true`` adds), ``identity`` (the VM's managed identities), ``scenarios``
(events to publish), ``fleet`` (more VMs) and ``azimds`` (emulator options, read by ``config``). Every
problem is reported at once, each with its place in the file.
"""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field
from typing_extensions import TypedDict

from ...azure import format_tags, tags_list
from ...errors import ProfileError
from . import catalog, identities
from .defaults import complete
from .events import ScenarioEntry
from .fleet import FleetSpec, explicit_tree, inherited_tags, member_tree, parse_fleet, with_tags
from .identities import Identities
from .values import Flag, Whole, imds_string, nesting_depth, validate

__all__ = ["Profile", "VmModel", "from_tree", "load", "load_default", "load_scenarios", "parse", "public_ip_problems",
           "vm_model"]

DEFAULT_SOURCE = "<embedded default>"


@dataclass(frozen=True)
class VmModel:
    """One VM as it is when nothing has changed it: its completed documents and its identities."""

    instance: dict[str, Any]
    loadbalancer: dict[str, Any] | None
    identities: Identities

    @property
    def name(self) -> str:
        return str(self.instance["compute"]["name"])


@dataclass(frozen=True)
class Profile:
    """A loaded profile: its first VM, what it says about the emulator, and the fleet it describes."""

    source: str
    vm: VmModel
    settings: dict[str, Any] = field(default_factory=dict)  # the ``azimds:`` section as written (see config)
    scenarios: tuple[ScenarioEntry, ...] = ()
    tree: dict[str, Any] = field(default_factory=dict)  # validated, before defaults: what fleet members build on
    fleet: FleetSpec | None = None
    identity_section: dict[str, Any] | None = None  # as written: fleet members derive their identities from it

    @property
    def instance(self) -> dict[str, Any]:
        return self.vm.instance

    @property
    def loadbalancer(self) -> dict[str, Any] | None:
        return self.vm.loadbalancer

    @property
    def identity(self) -> Identities:
        return self.vm.identities


# -- loading ---------------------------------------------------------------------------------------------

def load(path: str | Path) -> Profile:
    """Read, validate and complete a profile file (JSON or YAML). Raises ProfileError."""
    source = str(path)
    return from_tree(parse(_read(path), source), source)


def load_default() -> Profile:
    """The embedded default VM: a realistic Linux VM with tags, userData, a data disk and an identity."""
    return _default()


@cache
def _default() -> Profile:
    text = resources.files("azimds.emulator").joinpath("profiles/default.yaml").read_text(encoding="utf-8")
    return from_tree(parse(text, DEFAULT_SOURCE), DEFAULT_SOURCE)


def _read(path: str | Path) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ProfileError(str(path), [("", f"cannot read the file: {exc.strerror or exc}")]) from None
    if len(data) > MAX_BYTES:
        raise ProfileError(str(path), [("", f"larger than {MAX_BYTES // 1024 // 1024} MiB: not a profile")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(str(path), [("", f"cannot read the file: not UTF-8 ({exc.reason} at byte "
                                            f"{exc.start})")]) from None


#: Bounds on what a profile may be, checked while it is read: its size, how deep it nests, and how many
#: values it stands for once YAML aliases are expanded (a "billion laughs" file is refused, not expanded).
MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 1_000_000


def parse(text: str, source: str) -> Any:
    """JSON when it looks like JSON, else YAML with every plain scalar kept as the string it is. Raises
    ProfileError for malformed text, duplicate keys, NaN or infinities, and anything past the bounds."""
    if len(text) > MAX_BYTES:
        raise ProfileError(source, [("", f"larger than {MAX_BYTES // 1024 // 1024} MiB: not a profile")])
    if text.lstrip().startswith(("{", "[")):
        if nesting_depth(text) > MAX_DEPTH:
            raise ProfileError(source, [("", f"nested deeper than {MAX_DEPTH} levels")])
        try:
            return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise ProfileError(source, [(f"line {exc.lineno} column {exc.colno}",
                                         f"malformed JSON: {exc.msg}")]) from None
        except _Refused as exc:
            raise ProfileError(source, [("", str(exc))]) from None
    import yaml

    loader = _string_loader()(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded(node, {}) > MAX_VALUES:
            raise ProfileError(source, [("", f"its aliases expand to more than {MAX_VALUES:,} values")])
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError(source, [(where, f"malformed YAML: {problem}")]) from None
    finally:
        loader.dispose()


class _Refused(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the key {key!r} is given twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a value IMDS can serve")


def _expanded(node: Any, seen: dict[int, int]) -> int:
    """How many values ``node`` stands for with every alias expanded (memoised: shared nodes count each time)."""
    known = seen.get(id(node))
    if known is not None:
        return known
    seen[id(node)] = 1  # a node that refers to itself counts once, and stops here
    value = node.value
    total = 1
    if isinstance(value, list):
        for item in value:
            total += sum(_expanded(part, seen) for part in item) if isinstance(item, tuple) else _expanded(item, seen)
            if total > MAX_VALUES:
                break
    seen[id(node)] = total
    return total


@cache
def _string_loader() -> type:
    """A SafeLoader that reads ``sku: 7.10`` as "7.10", not 7.1 (IMDS values are strings), refuses a key
    given twice, and stops composing past ``MAX_DEPTH`` levels of nesting."""
    import yaml

    class StringLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                    raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            keys = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in keys
                except TypeError:  # an unhashable key: the base class says so
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                            key_node.start_mark)
                keys.add(key)
            return super().construct_mapping(node, deep)

    StringLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return StringLoader


def from_tree(data: Any, source: str) -> Profile:
    """Validate a parsed profile and fill in what it leaves out. Raises ProfileError naming every problem."""
    if not isinstance(data, dict):
        raise ProfileError(source, [("", f"a profile is a mapping with 'compute' and 'network', not {_kind(data)}")])
    data = dict(data)
    compute = data.get("compute")
    if isinstance(compute, dict) and isinstance(compute.get("tags"), dict):
        data["compute"] = compute = dict(compute)
        _tags_from_mapping(compute, source)
    validated: dict[str, Any] = validate(_profile_adapter(), data, source, lax=True)
    settings = validated.pop("azimds", None) or {}
    loadbalancer = validated.pop("loadbalancer", None)
    identity = validated.pop("identity", None)
    scenarios = tuple(validated.pop("scenarios", None) or ())
    fleet_section = validated.pop("fleet", None)
    fleet = parse_fleet(fleet_section, source) if fleet_section is not None else None
    tree = deepcopy(validated)
    if fleet is not None and (fleet.tags or fleet.group_tags):  # the first VM inherits too
        compute = tree.setdefault("compute", {})
        with_tags(compute, inherited_tags(fleet, compute, None))
    vm = vm_model(tree, identity, source, loadbalancer)
    profile = Profile(source, vm, settings, scenarios, tree, fleet, identity)
    if fleet is not None:
        _check_fleet(profile)
    return profile


def vm_model(tree: dict[str, Any], identity_section: dict[str, Any] | None, source: str,
             loadbalancer: dict[str, Any] | None = None, where: str = "") -> VmModel:
    """A validated tree completed with defaults, and the identities it has. Raises ProfileError."""
    problems = public_ip_problems(tree, loadbalancer)
    instance = complete(tree, problems)
    found = identities.derive(identity_section, instance["compute"], problems)
    if problems:
        raise ProfileError(source, [(f"{where}.{p}" if where and p else where or p, what) for p, what in problems])
    return VmModel(instance, loadbalancer, found)


def public_ip_problems(tree: dict[str, Any], loadbalancer: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A VM in a Standard load balancer's backend pool answers "" for its NICs' publicIpAddress (every public IP
    is Standard since Basic's retirement on 2025-09-30; docs and captures: the address is only in
    /metadata/loadbalancer). A profile giving both says two things at once: it is refused, naming the fix."""
    if loadbalancer is None:
        return []
    problems = []
    network = tree.get("network") or {}
    for n, nic in enumerate(network.get("interface") or []):
        for family in ("ipv4", "ipv6"):
            for i, address in enumerate((nic.get(family) or {}).get("ipAddress") or []):
                if address.get("publicIpAddress"):
                    problems.append((f"network.interface[{n}].{family}.ipAddress[{i}].publicIpAddress",
                                     "a VM behind a Standard load balancer answers \"\" here: put the address in "
                                     "loadbalancer.publicIpAddresses, or drop the loadbalancer section for an "
                                     "instance-level public IP"))
    return problems


def _check_fleet(profile: Profile) -> None:
    """Every explicit VM, and the last instance of every scale set, must be a valid VM."""
    fleet = profile.fleet
    assert fleet is not None
    trees = [(f"fleet.vms[{i}]", explicit_tree(fleet, profile.tree, vm)) for i, vm in enumerate(fleet.vms)]
    trees += [(f"fleet.scaleSets[{i}]", member_tree(fleet, profile.tree, profile.instance["compute"], s,
                                                     s.capacity - 1)) for i, s in enumerate(fleet.scale_sets)]
    for where, tree in trees:
        checked = validate(_profile_adapter(), tree, profile.source, lax=True, where=where)
        vm_model(checked, profile.identity_section, profile.source, where=where)


def load_scenarios(path: str | Path) -> tuple[ScenarioEntry, ...]:
    """A scenario file: a list of entries, or a mapping with a ``scenarios`` list. Raises ProfileError."""
    from .events import scenario_entries

    source = str(path)
    data = parse(_read(path), source)
    entries = data.get("scenarios") if isinstance(data, dict) else data
    return tuple(scenario_entries(entries, source))


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _tags_from_mapping(compute: dict[str, Any], source: str) -> None:
    """Convenience: ``tags: {k: v}`` in a profile becomes the real ``tags`` string and ``tagsList``."""
    mapping = compute.pop("tags")
    problems = []
    pairs = []
    for key, value in mapping.items():
        if isinstance(value, (dict, list)):
            problems.append((f"compute.tags.{key}", "a tag value is a string, not a mapping or a list"))
            continue
        pairs.append((str(key), imds_string(value)))
    if problems:
        raise ProfileError(source, problems)
    compute["tags"] = format_tags(pairs)
    compute.setdefault("tagsList", tags_list(pairs))


# -- validation --------------------------------------------------------------------------------------------

def validate_tree(tree: dict[str, Any], source: str) -> dict[str, Any]:
    """Validate a metadata tree (``compute``, ``network``, ``loadbalancer``, ``extended``) as a profile's."""
    result: dict[str, Any] = validate(_profile_adapter(), tree, source, lax=True)
    return result


@cache
def _profile_adapter() -> pydantic.TypeAdapter[Any]:
    """A pydantic TypeAdapter for the whole profile, generated from the catalogue's field table."""
    forbid = ConfigDict(extra="forbid")
    string = Annotated[str, BeforeValidator(imds_string)]
    make: Any = TypedDict  # called with members known only at run time
    list_of: Any = list

    def typed_dict(name: str, members: dict[str, Any]) -> Any:
        """A TypedDict closed to unknown keys (every member optional)."""
        made = make(name, members, total=False)
        made.__pydantic_config__ = forbid
        return made

    def typed(node: catalog.Node, name: str, leaf: Any) -> Any:
        """A TypedDict (closed to unknown keys) per object node, a list per array, ``leaf(node)`` per leaf."""
        if node.children is None:
            return leaf(node)
        if node.is_array:
            return list_of[typed(node.children["*"], name + "Item", leaf)]
        members = {key: typed(child, name + key[:1].upper() + key[1:], leaf) for key, child in node.children.items()}
        return typed_dict(name, members)

    def lb_leaf(node: catalog.Node) -> Any:
        if node.path.endswith("/protocol"):
            return Annotated[str, BeforeValidator(imds_string), AfterValidator(catalog.lb_protocol)]
        integer = catalog.LOADBALANCER_FIELDS[node.path] == "integer"
        return Annotated[Whole, Field(ge=0, le=65535)] if integer else string

    lb_schema = catalog.build_schema(dict.fromkeys(catalog.LOADBALANCER_FIELDS, ""))

    guid = Annotated[str, BeforeValidator(imds_string), AfterValidator(identities.guid)]
    system = typed_dict("SystemAssignedIdentity", {
        "enabled": Flag, "clientId": guid, "objectId": guid, "principalId": guid,
    })
    user = typed_dict("UserAssignedIdentity", {
        "name": Annotated[str, AfterValidator(identities.identity_name)],
        "resourceId": Annotated[str, AfterValidator(identities.uami_resource_id)],
        "clientId": guid, "objectId": guid, "principalId": guid,
    })
    identity = typed_dict("IdentitySection", {
        "tenantId": guid,
        "tenantName": Annotated[str, BeforeValidator(imds_string), Field(min_length=1, max_length=256)],
        "resources": list_of[Annotated[str, BeforeValidator(imds_string), Field(min_length=1, max_length=2048)]],
        "systemAssigned": Annotated[system, BeforeValidator(identities.switch)],
        "userAssigned": list_of[user],
    })

    root = catalog.instance_schema()
    assert root.children is not None
    pps = Annotated[str, BeforeValidator(imds_string), AfterValidator(catalog.pps_type)]
    members = {key: typed(child, "Profile" + key[:1].upper() + key[1:],
                          lambda node: pps if node.path == "extended/compute/ppsType" else string)
               for key, child in root.children.items()}
    members["loadbalancer"] = typed(lb_schema, "Loadbalancer", lb_leaf)
    members["identity"] = identity
    members["azimds"] = dict[str, Any]  # emulator options: validated by config, which names the problem
    members["scenarios"] = list[ScenarioEntry]
    members["fleet"] = dict[str, Any]  # validated by fleet.parse_fleet, which names the problem
    return pydantic.TypeAdapter(typed_dict("Profile", members))
