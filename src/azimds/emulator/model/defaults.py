"""Realistic, consistent defaults: what a profile leaves out, filled the way Azure would have filled it.

Values a tree gives are never changed (but for MAC addresses, normalised to the real form), so a captured
document renders back as it was. Identifiers the tree leaves out are derived from what it has (``vmId``
from the resource id, disk names from the VM name), so the same profile gives the same VM on every start.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from copy import deepcopy
from typing import Any

from ...azure import format_tags, split_tags, tags_list
from . import catalog

__all__ = ["TEMP_DISK_GIB", "complete", "stable_hex", "stable_uuid", "temp_disk_size"]

_DEFAULT_SUBSCRIPTION = "8d10da13-8125-4ba9-a717-bf7490507b3d"
_AZURE_OUI = "000D3A"  # Microsoft's MAC prefix, as on every Azure NIC

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
    c.setdefault("vmId", stable_uuid(c["resourceId"].lower()))
    c.setdefault("azEnvironment", "AzurePublicCloud")
    c.setdefault("provider", "Microsoft.Compute")
    c.setdefault("vmSize", "Standard_D2s_v3")
    c.setdefault("platformFaultDomain", "0")
    c.setdefault("platformUpdateDomain", "0")
    c.setdefault("priority", "")  # non-Spot VMs answer "" (every capture since 2022)
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
        c["tagsList"] = tags_list(split_tags(c["tags"]))
    elif "tagsList" in c and "tags" not in c:
        c["tags"] = format_tags([(t.get("name", ""), t.get("value", "")) for t in c["tagsList"]])
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


def _complete_storage(storage: dict[str, Any], c: dict[str, Any], rg_path: str, linux: bool) -> None:
    disk_path = f"{rg_path}/providers/Microsoft.Compute/disks"
    os_disk = storage.setdefault("osDisk", {})
    os_disk.setdefault("name", f"{c['name']}_OsDisk_1_{stable_hex(c['resourceId'] + '/osDisk', 32)}")
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
    storage.setdefault("resourceDisk", {}).setdefault("size", temp_disk_size(c["vmSize"]))


#: Temporary disk of each VM size, GiB (Microsoft's size pages). ``resourceDisk.size`` is this in MiB, as a string:
#: the docs say kB, but real VMs answer MiB (Standard_DS2_v2 "14336", Standard_D8s_v3 "65536"). Real B-series VMs
#: answered 30 GiB more than their pages say (B1s "34816", B4ms "63488"); the pages' figures are used here, and
#: a profile that wants the real quirk gives ``resourceDisk.size`` itself.
TEMP_DISK_GIB: dict[str, int] = {
    **{f"Standard_B{n}": g for n, g in (("1ls", 4), ("1s", 4), ("1ms", 4), ("2s", 8), ("2ms", 16), ("4ms", 32),
                                       ("8ms", 64), ("12ms", 96), ("16ms", 128), ("20ms", 160))},
    **{f"Standard_DS{n}_v2": g for n, g in ((1, 7), (2, 14), (3, 28), (4, 56), (5, 112))},
    **{f"Standard_D{n}_v2": g for n, g in ((1, 50), (2, 100), (3, 200), (4, 400), (5, 800))},
    **{f"Standard_D{n}s_v3": n * 8 for n in (2, 4, 8, 16, 32, 48, 64)},
    **{f"Standard_D{n}_v3": n * 25 for n in (2, 4, 8, 16, 32, 48, 64)},
    **{f"Standard_D{n}{f}_v4": n * 75 // 2 for n in (2, 4, 8, 16, 32, 48, 64) for f in ("d", "ds")},
    **{f"Standard_D{n}{f}_v5": n * 75 // 2 for n in (2, 4, 8, 16, 32, 48, 64, 96) for f in ("d", "ds", "ads")},
    **{f"Standard_E{n}s_v3": g for n, g in ((2, 32), (4, 64), (8, 128), (16, 256), (20, 320), (32, 512),
                                            (48, 768), (64, 864))},
    **{f"Standard_E{n}_v3": n * 25 for n in (2, 4, 8, 16, 20, 32, 48, 64)},
    **{f"Standard_E{n}{f}_v5": n * 75 // 2 for n in (2, 4, 8, 16, 20, 32, 48, 64, 96) for f in ("d", "ds", "ads")},
    **{f"Standard_F{n}s_v2": n * 8 for n in (2, 4, 8, 16, 32, 48, 64, 72)},
    **{f"Standard_A{n}_v2": n * 10 for n in (1, 2, 4, 8)},
}


def temp_disk_size(vm_size: str) -> str:
    """``resourceDisk.size`` for a VM size: its temporary disk in MiB; "0" for the sizes without one (v4 and
    later without a ``d`` among the letters after the vCPU count: Dsv5, Dasv5, Esv5…); "" for a size the table
    does not know (the docs: inapplicable values are served as "")."""
    key = next((name for name in TEMP_DISK_GIB if name.lower() == vm_size.lower()), None)
    if key is not None:
        return str(TEMP_DISK_GIB[key] * 1024)
    shape = _SIZE_NAME.match(vm_size.lower())
    if shape is not None and int(shape.group(2)) >= 4 and "d" not in shape.group(1):
        return "0"
    return ""


_SIZE_NAME = re.compile(r"^standard_[a-z]+\d+(?:-\d+)?([a-z]*)_v(\d+)$")  # family, vCPUs, letters, generation


def _default_nic() -> dict[str, Any]:
    return {"ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4", "publicIpAddress": ""}],
                     "subnet": [{"address": "10.0.0.0", "prefix": "24"}]},
            "ipv6": {"ipAddress": []}}


def _complete_nic(nic: dict[str, Any], index: int, resource_id: str, problems: list[tuple[str, str]]) -> None:
    mac = nic.get("macAddress")
    if mac is None:
        nic["macAddress"] = _AZURE_OUI + stable_hex(f"{resource_id}/nic/{index}", 6).upper()
        return
    normal = mac.replace(":", "").replace("-", "").upper()
    if len(normal) != 12 or any(ch not in "0123456789ABCDEF" for ch in normal):
        problems.append((f"network.interface[{index}].macAddress", f"not a MAC address: {mac!r}"))
    nic["macAddress"] = normal


def stable_uuid(seed: str) -> str:
    """A random-looking (version 4) lower-case GUID that is the same every time for the same seed."""
    return str(uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16], version=4))


def stable_hex(seed: str, length: int) -> str:
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
