"""The resources a managed identity can get a token for: Azure's well-known audiences in each cloud, the
per-account hosts its SDKs ask for, and whatever a profile adds (``identity.resources``).

Entra ID refuses a token for a resource principal the tenant does not have (400 ``invalid_resource``,
AADSTS500011); the emulator refuses the same ones, so a typo in a resource fails here as it fails on Azure.
Sources: Microsoft's "services that support managed identities" table (2019), azure-cli's cloud endpoints,
the SDKs' default scopes (Managed HSM, Cosmos DB, Azure Monitor, Cognitive Services, Service Bus, Event Hubs),
the AKS and Azure DevOps application ids. Matching ignores case and one trailing slash (Entra's STS accepts
either form) and a trailing ``/.default`` (a v2 scope written as a v1 resource).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ACCOUNT_SUFFIXES", "ANY_RESOURCE", "CLOUD_RESOURCES", "COMMON_RESOURCES", "Audiences"]

#: A profile's ``identity.resources`` entry that accepts every resource (a test rig that wants no catalogue).
ANY_RESOURCE = "*"

#: Resource principals every tenant has, whatever its cloud: application ids and URNs.
COMMON_RESOURCES: tuple[str, ...] = (
    "6dae42f8-4368-4678-94ff-3960e28e3630",  # Azure Kubernetes Service AAD server (kubelogin, Azure PowerShell)
    "499b84ac-1321-427f-aa17-267ca6975798",  # Azure DevOps
    "urn:ms-drs:enterpriseregistration.windows.net",  # device registration (Entra ID login to VMs)
    "https://storage.azure.com/",  # Storage: the same audience in every cloud
)

#: Well-known audiences by ``compute.azEnvironment``.
CLOUD_RESOURCES: dict[str, tuple[str, ...]] = {
    "AzurePublicCloud": (
        "https://management.azure.com/", "https://management.core.windows.net/", "https://vault.azure.net",
        "https://managedhsm.azure.net", "https://graph.microsoft.com/", "https://graph.windows.net/",
        "https://database.windows.net/", "https://ossrdbms-aad.database.windows.net", "https://servicebus.azure.net",
        "https://eventhubs.azure.net", "https://cosmos.azure.com", "https://datalake.azure.net/",
        "https://batch.core.windows.net/", "https://api.loganalytics.io", "https://api.applicationinsights.io",
        "https://monitor.azure.com/", "https://cognitiveservices.azure.com", "https://rest.media.azure.net",
        "https://kusto.kusto.windows.net", "https://dev.azuresynapse.net", "https://azconfig.io",
        "https://digitaltwins.azure.net", "https://eventgrid.azure.net", "https://search.azure.com",
        "https://attest.azure.net", "https://redis.azure.com", "https://ml.azure.com",
        "https://analysis.windows.net/powerbi/api",
    ),
    "AzureUSGovernmentCloud": (
        "https://management.usgovcloudapi.net/", "https://management.core.usgovcloudapi.net/",
        "https://vault.usgovcloudapi.net", "https://managedhsm.usgovcloudapi.net", "https://graph.microsoft.us/",
        "https://graph.windows.net/", "https://database.usgovcloudapi.net/",
        "https://ossrdbms-aad.database.usgovcloudapi.net", "https://servicebus.usgovcloudapi.net",
        "https://batch.core.usgovcloudapi.net/", "https://api.loganalytics.us", "https://api.applicationinsights.us",
        "https://monitor.azure.us/", "https://cognitiveservices.azure.us", "https://rest.media.usgovcloudapi.net",
    ),
    "AzureChinaCloud": (
        "https://management.chinacloudapi.cn/", "https://management.core.chinacloudapi.cn/",
        "https://vault.azure.cn", "https://managedhsm.azure.cn", "https://microsoftgraph.chinacloudapi.cn/",
        "https://graph.chinacloudapi.cn/", "https://database.chinacloudapi.cn/",
        "https://ossrdbms-aad.database.chinacloudapi.cn", "https://servicebus.chinacloudapi.cn",
        "https://batch.chinacloudapi.cn/", "https://api.loganalytics.azure.cn",
        "https://api.applicationinsights.azure.cn", "https://monitor.azure.cn/", "https://cognitiveservices.azure.cn",
        "https://rest.media.chinacloudapi.cn",
    ),
    "AzureGermanCloud": (
        "https://management.microsoftazure.de/", "https://management.core.cloudapi.de/",
        "https://vault.microsoftazure.de", "https://graph.cloudapi.de/", "https://database.cloudapi.de/",
    ),
}

#: Hosts of per-account resources (``https://<account><suffix>``) the SDKs ask tokens for, by cloud: Cosmos DB
#: accounts, vaults, storage services, Service Bus namespaces, Data Explorer clusters, App Configuration
#: stores, Analysis Services servers.
ACCOUNT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "AzurePublicCloud": (
        ".documents.azure.com", ".vault.azure.net", ".managedhsm.azure.net", ".blob.core.windows.net",
        ".queue.core.windows.net", ".table.core.windows.net", ".file.core.windows.net", ".dfs.core.windows.net",
        ".servicebus.windows.net", ".kusto.windows.net", ".azconfig.io", ".asazure.windows.net",
    ),
    "AzureUSGovernmentCloud": (
        ".documents.azure.us", ".vault.usgovcloudapi.net", ".blob.core.usgovcloudapi.net",
        ".queue.core.usgovcloudapi.net", ".table.core.usgovcloudapi.net", ".file.core.usgovcloudapi.net",
        ".dfs.core.usgovcloudapi.net", ".servicebus.usgovcloudapi.net", ".kusto.usgovcloudapi.net",
        ".asazure.usgovcloudapi.net",
    ),
    "AzureChinaCloud": (
        ".documents.azure.cn", ".vault.azure.cn", ".blob.core.chinacloudapi.cn", ".queue.core.chinacloudapi.cn",
        ".table.core.chinacloudapi.cn", ".file.core.chinacloudapi.cn", ".dfs.core.chinacloudapi.cn",
        ".servicebus.chinacloudapi.cn", ".kusto.chinacloudapi.cn", ".asazure.chinacloudapi.cn",
    ),
    "AzureGermanCloud": (
        ".documents.microsoftazure.de", ".vault.microsoftazure.de", ".blob.core.cloudapi.de",
        ".queue.core.cloudapi.de", ".table.core.cloudapi.de", ".servicebus.cloudapi.de", ".asazure.cloudapi.de",
    ),
}

_LABEL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def _key(resource: str) -> str:
    """How a resource is compared: lower case, without ``/.default`` and without one trailing slash."""
    key = resource.strip().lower()
    key = key.removesuffix("/.default")
    return key[:-1] if key.endswith("/") else key


class Audiences:
    """The resources one VM's identities may get tokens for."""

    __slots__ = ("_any", "_known", "_suffixes")

    def __init__(self, environment: str, extra: Iterable[str] = ()) -> None:
        extra = tuple(extra)
        cloud = next((name for name in CLOUD_RESOURCES if name.lower() == environment.lower()), "AzurePublicCloud")
        self._any = ANY_RESOURCE in extra
        self._known = frozenset(_key(r) for r in COMMON_RESOURCES + CLOUD_RESOURCES[cloud] + extra)
        self._suffixes = ACCOUNT_SUFFIXES[cloud]

    def known(self, resource: str) -> bool:
        """Whether Entra ID has a resource principal for ``resource`` in this VM's tenant."""
        if self._any:
            return True
        key = _key(resource)
        if key in self._known:
            return True
        host = key.removeprefix("https://")
        if host == key or "/" in host:
            return False
        for suffix in self._suffixes:
            account = host.removesuffix(suffix)
            if account != host and account and set(account) <= _LABEL and not account.startswith("-"):
                return True
        return False
