"""/metadata/reprovisiondata: the OVF environment a pre-provisioned VM waits for (cloud-init polls it).

Azure keeps pools of VMs booted ahead of demand (``extended.compute.ppsType`` Running, Savable or
PreprovisionedOSDisk); when one is handed to a customer, this endpoint answers the customer's ovf-env.xml and
``ppsType`` reads ``None`` again. Until then it answers 404, which cloud-init has treated as "not yet" since its
first pre-provisioning support (it polls ``?api-version=2019-06-01`` forever, retrying 404 and 410). A VM is
assigned through the control plane (``POST /v1/reprovision``): the answer is built from its documents then.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from ....azure import ENDPOINT_INTRODUCED
from .. import choices, responses
from ..http import Response
from ..ports import VmView
from .base import Endpoint, Outcome

__all__ = ["ReprovisionEndpoint", "assigned", "ovf_environment"]


class ReprovisionEndpoint(Endpoint):
    name = "reprovisiondata"
    introduced = ENDPOINT_INTRODUCED["reprovisiondata"]

    def resolve(self, vm: VmView, keys: list[str], query: dict[str, str], version: str | None) -> Outcome:
        if keys or not assigned(vm):
            return responses.REPROVISION_NOT_YET
        return Response(200, ovf_environment(vm.instance).encode("utf-8"), choices.OVF_CONTENT_TYPE)


def assigned(vm: VmView) -> bool:
    """Whether the VM was pre-provisioned (its profile says so) and has been handed over (it reads ``None`` now)."""
    return _pps_type(vm.model_instance) != "None" and _pps_type(vm.instance) == "None"


def _pps_type(instance: dict[str, Any]) -> str:
    return str(instance.get("extended", {}).get("compute", {}).get("ppsType", "None"))


def ovf_environment(instance: dict[str, Any]) -> str:
    """The ovf-env.xml Azure gives a Linux VM, built from its instance document: host name, admin user, whether
    passwords are refused, its SSH keys and its customData (as Azure writes the document; no password)."""
    compute = instance["compute"]
    os_profile = compute.get("osProfile", {})
    keys = "".join(f"<PublicKey><Fingerprint></Fingerprint><Path>{escape(key.get('path', ''))}</Path>"
                   f"<Value>{escape(key.get('keyData', ''))}</Value></PublicKey>"
                   for key in compute.get("publicKeys", []))
    no_password = "false" if os_profile.get("disablePasswordAuthentication") == "false" else "true"
    custom = compute.get("customData", "")
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" '
        'xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure" '
        'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<wa:ProvisioningSection><wa:Version>1.0</wa:Version>"
        '<LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure" '
        'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>"
        f"<HostName>{escape(os_profile.get('computerName') or compute.get('name', ''))}</HostName>"
        f"<UserName>{escape(os_profile.get('adminUsername', ''))}</UserName>"
        f"<DisableSshPasswordAuthentication>{no_password}</DisableSshPasswordAuthentication>"
        + (f"<SSH><PublicKeys>{keys}</PublicKeys></SSH>" if keys else "")
        + (f"<CustomData>{escape(custom)}</CustomData>" if custom else "")
        + "</LinuxProvisioningConfigurationSet></wa:ProvisioningSection>"
        "<wa:PlatformSettingsSection><wa:Version>1.0</wa:Version>"
        '<PlatformSettings xmlns="http://schemas.microsoft.com/windowsazure" '
        'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<KmsServerHostname>kms.core.windows.net</KmsServerHostname><ProvisionGuestAgent>true</ProvisionGuestAgent>"
        '<GuestAgentPackageName i:nil="true" /><PreprovisionedVm>false</PreprovisionedVm>'
        '<PreprovisionedVMType i:nil="true" /></PlatformSettings></wa:PlatformSettingsSection></Environment>'
    )
