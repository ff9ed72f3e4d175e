"""The Kubernetes manifests (deploy/kubernetes/): valid for a recent Kubernetes, offline (kubernetes-validate's
schemas, strict: an unknown or misspelt field fails), and right where it matters: the node agent's capabilities
are exactly the two the README names, nothing runs privileged, every AZIMDS_* variable is an option of serve
with a value it accepts, probes never make an HTTP request (one would claim an instance), and the ConfigMap's
profile is one azimds loads, with a dynamic scale set."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from azimds.emulator.config import OPTIONS, Config
from azimds.emulator.model import profile as profiles
from tests.support import ROOT

MANIFESTS = ROOT / "deploy" / "kubernetes"
FILES = sorted(MANIFESTS.glob("*.yaml"))
#: What the README says the agent needs, and why: NET_ADMIN adds 169.254.169.254/32, NET_BIND_SERVICE binds :80.
AGENT_CAPABILITIES = {"add": ["NET_ADMIN", "NET_BIND_SERVICE"], "drop": ["ALL"]}


def documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in FILES for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in by_kind(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"one {kind} {name}"
    return found[0]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(workload: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(workload)["env"]}


AGENT = ("DaemonSet", "azimds-node-agent")
CONTROL = ("Deployment", "azimds-control")


def test_the_manifests_are_the_parts_the_readme_describes():
    assert [p.name for p in FILES] == ["00-namespace.yaml", "10-configmap.yaml", "20-deployment.yaml",
                                       "30-service.yaml", "40-daemonset.yaml"]  # applied in this order
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for _, doc in documents())
    assert kinds == [("ConfigMap", "azimds-profile"), ("DaemonSet", "azimds-node-agent"),
                     ("Deployment", "azimds-control"), ("Namespace", "azimds"), ("Service", "azimds-control")]
    assert all(doc["metadata"].get("namespace") == "azimds" for _, doc in documents() if doc["kind"] != "Namespace")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_manifest_is_valid_for_the_newest_kubernetes_strictly(path: Path):
    version = latest_version()
    for doc in yaml.safe_load_all(path.read_text()):
        assert kubernetes_validate.validate(doc, version, strict=True) == ".".join(version.split(".")[:2])


def test_strict_validation_would_catch_a_misspelt_field():
    agent = one(*AGENT)
    agent["spec"]["template"]["spec"]["hostNetwrk"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="hostNetwrk"):
        kubernetes_validate.validate(agent, latest_version(), strict=True)


def test_the_agent_is_on_the_nodes_network_with_exactly_its_two_capabilities():
    agent = one(*AGENT)
    pod = agent["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["automountServiceAccountToken"] is False
    context = container(agent)["securityContext"]
    assert {k: sorted(v) for k, v in context["capabilities"].items()} == AGENT_CAPABILITIES
    assert context["privileged"] is False and context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True and context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "securityContext" not in pod or "sysctls" not in pod["securityContext"]
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    env = env_of(agent)
    assert (env["AZIMDS_HOST"], env["AZIMDS_PORT"], env["AZIMDS_ADD_HOST_ADDRESS"]) == ("169.254.169.254", "80",
                                                                                         "true")
    assert env["AZIMDS_NODE"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["AZIMDS_CONTROL_HOST"] == "127.0.0.1"  # the agent's own control plane stays on the node


def test_the_control_plane_runs_unprivileged_and_its_service_reaches_it():
    control = one(*CONTROL)
    pod = control["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and not pod.get("hostNetwork")
    context = container(control)["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]} and context["allowPrivilegeEscalation"] is False
    env = env_of(control)
    assert env["AZIMDS_CONTROL_HOST"] == "0.0.0.0" and "secretKeyRef" in env["AZIMDS_CONTROL_TOKEN"]
    service = one("Service", "azimds-control")
    labels = control["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container(control)["ports"]}
    assert [(p["port"], ports[p["targetPort"]]) for p in service["spec"]["ports"]] == [(8170, 8170)]
    assert control["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("workload", [AGENT, CONTROL], ids=lambda w: w[1])
def test_probes_are_present_and_never_an_http_request(workload):
    main = container(one(*workload))
    for probe in ("readinessProbe", "livenessProbe"):
        assert set(main[probe]) & {"tcpSocket", "httpGet", "exec", "grpc"} == {"tcpSocket"}, probe


@pytest.mark.parametrize("workload", [AGENT, CONTROL], ids=lambda w: w[1])
def test_every_variable_is_an_option_of_serve_with_a_value_it_accepts(workload):
    doc = one(*workload)
    env = env_of(doc)
    known = {option.env for option in OPTIONS}
    assert set(env) <= known, set(env) - known
    literal = {name: value for name, value in env.items() if isinstance(value, str)}
    config = Config.build(env={**literal, "AZIMDS_CONTROL_TOKEN": "a-secret"})  # raises naming a bad value
    assert config.state_dir == "/var/lib/azimds" and config.profile == "/etc/azimds/profile.yaml"
    secrets = {name: value["secretKeyRef"] for name, value in env.items()
               if isinstance(value, dict) and "secretKeyRef" in value}
    assert secrets == {"AZIMDS_STATE": {"name": "azimds", "key": "state"},
                       "AZIMDS_CONTROL_TOKEN": {"name": "azimds", "key": "control-token"}}
    # what serve reads and writes is mounted: the profile from the ConfigMap, the state directory (the root
    # filesystem is read-only)
    mounts = {m["mountPath"]: m["name"] for m in container(doc)["volumeMounts"]}
    volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/etc/azimds"]]["configMap"] == {"name": "azimds-profile"}
    assert volumes[mounts["/var/lib/azimds"]] == {"name": mounts["/var/lib/azimds"], "emptyDir": {}}


def test_the_configmaps_profile_is_one_azimds_loads_with_a_dynamic_scale_set(tmp_path: Path):
    text = one("ConfigMap", "azimds-profile")["data"]["profile.yaml"]
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    loaded = profiles.load(path)  # the loader serve uses; a bad profile raises ProfileError naming the place
    assert loaded.fleet is not None
    (pods,) = loaded.fleet.dynamic_sets
    assert (pods.name, pods.capacity, pods.idle_release) == ("pods", 250, 600.0)


def test_the_readme_names_the_agents_capabilities_as_the_manifest_does():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Kubernetes"):]
    section = section[:section.index("\n## ", 1)]
    for capability in AGENT_CAPABILITIES["add"]:
        assert re.search(rf"`{capability}`", section), capability
    assert "addresses: dynamic" in section and "idleRelease" in section
