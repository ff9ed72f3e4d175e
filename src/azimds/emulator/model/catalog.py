"""The shape of the documents the emulator serves: every field, the api-version that introduced it, as data.

The api-version lists themselves are facts shared with the client (``azimds.azure``); this module says which
version introduced each field of the instance document and which fields the load balancer document has.
Versions are ISO dates, so ``"2019-06-01" < "2021-02-01"`` compares them correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

# The instance document's fields. A path names a field by its keys from the document root; "*" stands for
# every item of an array. A field whose children are listed is an object (an array when its child is "*");
# any other field is a string leaf. Every field is listed with the api-version that introduced it; a child
# is never older than its parent. Sources: the IMDS docs' compute, storageProfile and network tables and
# real payloads (spec §5.2-5.4, §5.6).
_C = "compute/"
_SP = "compute/storageProfile/"
_OS = _SP + "osDisk/"
_DD = _SP + "dataDisks/*/"
_NIC = "network/interface/*/"

INSTANCE_FIELDS: dict[str, str] = {
    "compute": "2017-04-02",
    _C + "additionalCapabilities": "2021-11-01",
    _C + "additionalCapabilities/hibernationEnabled": "2021-11-01",
    _C + "azEnvironment": "2018-10-01",
    _C + "customData": "2019-02-01",
    _C + "evictionPolicy": "2020-12-01",
    _C + "extendedLocation": "2021-03-01",
    _C + "extendedLocation/name": "2021-03-01",
    _C + "extendedLocation/type": "2021-03-01",
    _C + "host": "2021-11-15",
    _C + "host/id": "2021-11-15",
    _C + "hostGroup": "2021-11-15",
    _C + "hostGroup/id": "2021-11-15",
    _C + "isHostCompatibilityLayerVm": "2020-06-01",
    _C + "licenseType": "2020-09-01",
    _C + "location": "2017-04-02",
    _C + "name": "2017-04-02",
    _C + "offer": "2017-04-02",
    _C + "osProfile": "2020-07-15",
    _C + "osProfile/adminUsername": "2020-07-15",
    _C + "osProfile/computerName": "2020-07-15",
    _C + "osProfile/disablePasswordAuthentication": "2020-10-01",
    _C + "osType": "2017-04-02",
    _C + "physicalZone": "2023-11-15",
    _C + "placementGroupId": "2017-08-01",
    _C + "plan": "2018-04-02",
    _C + "plan/name": "2018-04-02",
    _C + "plan/product": "2018-04-02",
    _C + "plan/publisher": "2018-04-02",
    _C + "platformFaultDomain": "2017-04-02",
    _C + "platformSubFaultDomain": "2021-10-01",
    _C + "platformUpdateDomain": "2017-04-02",
    _C + "priority": "2020-12-01",
    _C + "provider": "2018-10-01",
    _C + "publicKeys": "2018-04-02",
    _C + "publicKeys/*": "2018-04-02",
    _C + "publicKeys/*/keyData": "2018-04-02",
    _C + "publicKeys/*/path": "2018-04-02",
    _C + "publisher": "2017-04-02",
    _C + "resourceGroupName": "2017-08-01",
    _C + "resourceId": "2019-03-11",
    _C + "securityProfile": "2020-06-01",
    _C + "securityProfile/encryptionAtHost": "2021-11-01",
    _C + "securityProfile/secureBootEnabled": "2020-06-01",
    _C + "securityProfile/securityType": "2021-12-13",
    _C + "securityProfile/virtualTpmEnabled": "2020-06-01",
    _C + "sku": "2017-04-02",
    _SP[:-1]: "2019-06-01",
    _SP + "dataDisks": "2019-06-01",
    _SP + "dataDisks/*": "2019-06-01",
    _DD + "bytesPerSecondThrottle": "2021-05-01",
    _DD + "caching": "2019-06-01",
    _DD + "createOption": "2019-06-01",
    _DD + "diskCapacityBytes": "2021-05-01",
    _DD + "diffDiskSettings": "2019-06-01",
    _DD + "diffDiskSettings/option": "2019-06-01",
    _DD + "diskSizeGB": "2019-06-01",
    _DD + "encryptionSettings": "2019-06-01",
    _DD + "encryptionSettings/enabled": "2019-06-01",
    _DD + "image": "2019-06-01",
    _DD + "image/uri": "2019-06-01",
    _DD + "isSharedDisk": "2021-05-01",
    _DD + "isUltraDisk": "2021-05-01",
    _DD + "lun": "2019-06-01",
    _DD + "managedDisk": "2019-06-01",
    _DD + "managedDisk/id": "2019-06-01",
    _DD + "managedDisk/storageAccountType": "2019-06-01",
    _DD + "name": "2019-06-01",
    _DD + "opsPerSecondThrottle": "2021-05-01",
    _DD + "osType": "2019-06-01",
    _DD + "vhd": "2019-06-01",
    _DD + "vhd/uri": "2019-06-01",
    _DD + "writeAcceleratorEnabled": "2019-06-01",
    _SP + "imageReference": "2019-06-01",
    _SP + "imageReference/communityGalleryImageId": "2023-07-01",
    _SP + "imageReference/exactVersion": "2023-07-01",
    _SP + "imageReference/id": "2019-06-01",
    _SP + "imageReference/offer": "2019-06-01",
    _SP + "imageReference/publisher": "2019-06-01",
    _SP + "imageReference/sharedGalleryImageId": "2023-07-01",
    _SP + "imageReference/sku": "2019-06-01",
    _SP + "imageReference/version": "2019-06-01",
    _OS[:-1]: "2019-06-01",
    _OS + "caching": "2019-06-01",
    _OS + "createOption": "2019-06-01",
    _OS + "diffDiskSettings": "2019-06-01",
    _OS + "diffDiskSettings/option": "2019-06-01",
    _OS + "diskSizeGB": "2019-06-01",
    _OS + "encryptionSettings": "2019-06-01",
    _OS + "encryptionSettings/diskEncryptionKey": "2021-11-01",
    _OS + "encryptionSettings/diskEncryptionKey/secretUrl": "2021-11-01",
    _OS + "encryptionSettings/diskEncryptionKey/sourceVault": "2021-11-01",
    _OS + "encryptionSettings/diskEncryptionKey/sourceVault/id": "2021-11-01",
    _OS + "encryptionSettings/enabled": "2019-06-01",
    _OS + "encryptionSettings/keyEncryptionKey": "2021-11-01",
    _OS + "encryptionSettings/keyEncryptionKey/keyUrl": "2021-11-01",
    _OS + "encryptionSettings/keyEncryptionKey/sourceVault": "2021-11-01",
    _OS + "encryptionSettings/keyEncryptionKey/sourceVault/id": "2021-11-01",
    _OS + "image": "2019-06-01",
    _OS + "image/uri": "2019-06-01",
    _OS + "managedDisk": "2019-06-01",
    _OS + "managedDisk/id": "2019-06-01",
    _OS + "managedDisk/storageAccountType": "2019-06-01",
    _OS + "name": "2019-06-01",
    _OS + "osType": "2019-06-01",
    _OS + "vhd": "2019-06-01",
    _OS + "vhd/uri": "2019-06-01",
    _OS + "writeAcceleratorEnabled": "2019-06-01",
    _SP + "resourceDisk": "2021-02-01",
    _SP + "resourceDisk/size": "2021-02-01",
    _C + "subscriptionId": "2017-08-01",
    _C + "tags": "2017-08-01",
    _C + "tagsList": "2019-06-04",
    _C + "tagsList/*": "2019-06-04",
    _C + "tagsList/*/name": "2019-06-04",
    _C + "tagsList/*/value": "2019-06-04",
    _C + "userData": "2021-01-01",
    _C + "version": "2017-04-02",
    _C + "virtualMachineScaleSet": "2021-03-01",
    _C + "virtualMachineScaleSet/id": "2021-03-01",
    _C + "vmId": "2017-04-02",
    _C + "vmScaleSetName": "2017-12-01",
    _C + "vmSize": "2017-04-02",
    _C + "zone": "2017-12-01",
    "network": "2017-04-02",
    "network/interface": "2017-04-02",
    "network/interface/*": "2017-04-02",
    _NIC + "ipv4": "2017-04-02",
    _NIC + "ipv4/ipAddress": "2017-04-02",
    _NIC + "ipv4/ipAddress/*": "2017-04-02",
    _NIC + "ipv4/ipAddress/*/privateIpAddress": "2017-04-02",
    _NIC + "ipv4/ipAddress/*/publicIpAddress": "2017-04-02",
    _NIC + "ipv4/subnet": "2017-04-02",
    _NIC + "ipv4/subnet/*": "2017-04-02",
    _NIC + "ipv4/subnet/*/address": "2017-04-02",
    _NIC + "ipv4/subnet/*/prefix": "2017-04-02",
    _NIC + "ipv6": "2017-04-02",
    _NIC + "ipv6/ipAddress": "2017-04-02",
    _NIC + "ipv6/ipAddress/*": "2017-04-02",
    _NIC + "ipv6/ipAddress/*/privateIpAddress": "2017-04-02",
    _NIC + "ipv6/ipAddress/*/publicIpAddress": "2017-04-02",
    _NIC + "macAddress": "2017-04-02",
    # Only with extended=true (spec §5.7); the flag, not the version, gates it.
    "extended": "2017-04-02",
    "extended/compute": "2017-04-02",
    "extended/compute/ppsType": "2017-04-02",
}

#: Fields no real payload is known to carry although a table or an agent names them: a profile may set
#: them and they are served as given, but defaults never add them, so captured documents stay exact.
#: (The docs' dataDisks table lists these three, its samples and real payloads don't; Swagger has no ipv6
#: publicIpAddress, but agents probe for it.)
OPTIONAL_FIELDS: frozenset[str] = frozenset({
    _NIC + "ipv6/ipAddress/*/publicIpAddress",
    _DD + "diffDiskSettings",
    _DD + "encryptionSettings",
    _DD + "osType",
})

#: The load balancer document (spec §9); introduced with the endpoint, 2020-10-01.
LOADBALANCER_FIELDS: dict[str, str] = {  # in the service's own order (cloud-provider-azure #535, 2021)
    "publicIpAddresses/*/frontendIpAddress": "string",
    "publicIpAddresses/*/privateIpAddress": "string",
    "inboundRules/*/frontendIpAddress": "string",
    "inboundRules/*/protocol": "string",
    "inboundRules/*/frontendPort": "integer",
    "inboundRules/*/backendPort": "integer",
    "inboundRules/*/privateIpAddress": "string",
    "outboundRules/*/frontendIpAddress": "string",
    "outboundRules/*/privateIpAddress": "string",
}

#: What a rule member a profile leaves out reads as ("" for other strings): ARM's transport protocol default.
LOADBALANCER_DEFAULTS: dict[str, str] = {"protocol": "Tcp"}

#: A rule's protocol as the service spells it (ARM's TransportProtocol: ``"Tcp"`` in the 2021 capture, where the
#: docs' sample has ``tcp``); a profile may write any case.
LOADBALANCER_PROTOCOLS = ("Tcp", "Udp", "All")


#: ``extended.compute.ppsType``: whether the VM waits in a pre-provisioning pool, and how (cloud-init's PPSType).
PPS_TYPES = ("None", "Running", "Savable", "PreprovisionedOSDisk")


def pps_type(value: str) -> str:
    """A ppsType as Azure spells it; ValueError for anything else."""
    for name in PPS_TYPES:
        if value.lower() == name.lower():
            return name
    raise ValueError(f"ppsType is one of {', '.join(PPS_TYPES)}, not {value!r}")


def lb_protocol(value: str) -> str:
    """A load balancer rule's protocol in the service's spelling; ValueError for anything else."""
    for name in LOADBALANCER_PROTOCOLS:
        if value.lower() == name.lower():
            return name
    raise ValueError(f"a protocol is one of {', '.join(LOADBALANCER_PROTOCOLS)}, not {value!r}")


@dataclass(frozen=True, slots=True)
class Node:
    """The shape of one field: a leaf, an object with named children, or an array of one item shape."""

    path: str
    since: str
    children: dict[str, Node] | None = None  # object members, or {"*": item} for an array

    @property
    def is_leaf(self) -> bool:
        return self.children is None

    @property
    def is_array(self) -> bool:
        return self.children is not None and "*" in self.children


@cache
def instance_schema() -> Node:
    """The instance document's shape as a tree of Nodes, built once from INSTANCE_FIELDS."""
    return build_schema(INSTANCE_FIELDS)


def build_schema(fields: dict[str, str]) -> Node:
    """Turn a path -> version table into a Node tree; a path with children is a container.

    Containers a table leaves out take their first child's version.
    """
    table = dict(fields)
    for path, since in fields.items():
        while "/" in path:
            path = path.rpartition("/")[0]
            table.setdefault(path, since)
    parents = {path.rpartition("/")[0] for path in table}
    root = Node("", "", {})
    nodes = {"": root}
    for path in sorted(table, key=lambda p: p.count("/")):
        parent, _, name = path.rpartition("/")
        node = Node(path, table[path], {} if path in parents else None)
        nodes[parent].children[name] = node  # type: ignore[index]
        nodes[path] = node
    return root


class Versions:
    """The api-versions one family accepts, cut at a configurable newest version."""

    __slots__ = ("_set", "accepted", "family", "newest")

    def __init__(self, family: tuple[str, ...], newest: str | None = None, oldest: str | None = None):
        cut = [v for v in family if (newest is None or v <= newest) and (oldest is None or v >= oldest)]
        self.family = family
        self.accepted: tuple[str, ...] = tuple(cut)
        self.newest: tuple[str, ...] = tuple(reversed(cut[-3:]))  # the three newest, newest first
        self._set = frozenset(cut)

    def __contains__(self, version: object) -> bool:
        return version in self._set


