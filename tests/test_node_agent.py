"""The node agent as the DaemonSet runs it, on a node made of network namespaces: a "node" namespace with a bridge
(cni0, 10.244.0.1/24) and three "pod" namespaces on it (10.244.0.11-13, default route via the node), as a
bridge CNI plugin lays them out. The agent is `azimds serve` started in the node namespace with the DaemonSet's
own AZIMDS_* variables and the ConfigMap's own profile (a scale set with ``addresses: dynamic``), on a shared
PostgreSQL world; the control plane is a second `azimds serve` with the Deployment's variables on the same
database. Each pod reads http://169.254.169.254/metadata/instance with curl and gets a token with azure-identity
(ManagedIdentityCredential, no configuration), run inside the pod's namespace: each is its own instance, none
sees another's, a pod calling again keeps its persona, and the control plane lists who holds what.

Also --add-host-address on its own: added once, found there after, refused in one line without CAP_NET_ADMIN or
for an address it must not add. Needs root and iproute2 (scripts/sysdeps.sh installs it); every namespace is
deleted afterwards, also on failure.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from tests.support import ROOT, wait_until

IP = shutil.which("ip") or ("/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else None)
CURL = shutil.which("curl")
MANIFESTS = ROOT / "deploy" / "kubernetes"
IMDS = "http://169.254.169.254"
PODS = ["10.244.0.11", "10.244.0.12", "10.244.0.13"]
TOKEN = "node-agent-test-token"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it makes network namespaces and veth pairs"),
    pytest.mark.skipif(IP is None, reason="needs the ip command (iproute2; scripts/sysdeps.sh installs it)"),
    pytest.mark.skipif(CURL is None, reason="needs curl (scripts/sysdeps.sh installs it)"),
]


def ip(*args: str) -> None:
    assert IP is not None
    done = subprocess.run([IP, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def in_ns(namespace: str, *command: str, env: dict[str, str] | None = None,
          timeout: float = 30) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    return subprocess.run([IP, "netns", "exec", namespace, *command], capture_output=True, text=True, env=env,
                          timeout=timeout)


def host_has_imds_address() -> bool:
    assert IP is not None
    return "169.254.169.254" in subprocess.run([IP, "-4", "addr"], capture_output=True, text=True).stdout


@pytest.fixture
def node() -> Iterator[tuple[str, list[str]]]:
    """The node namespace and the pods' namespaces, wired as a bridge CNI plugin does; deleted afterwards."""
    tag = f"{os.getpid() % 100_000}"
    node_ns, pod_ns = f"azimds-node-{tag}", [f"azimds-pod-{tag}-{i}" for i in range(1, len(PODS) + 1)]
    made: list[str] = []
    try:
        try:
            ip("netns", "add", node_ns)
        except RuntimeError as exc:
            pytest.skip(f"cannot make a network namespace here: {exc}")
        made.append(node_ns)
        ip("-n", node_ns, "link", "set", "lo", "up")
        ip("-n", node_ns, "link", "add", "cni0", "type", "bridge")
        ip("-n", node_ns, "addr", "add", "10.244.0.1/24", "dev", "cni0")
        ip("-n", node_ns, "link", "set", "cni0", "up")
        for index, (namespace, address) in enumerate(zip(pod_ns, PODS, strict=True), 1):
            ip("netns", "add", namespace)
            made.append(namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
            ip("-n", node_ns, "link", "add", f"veth{index}", "type", "veth", "peer", "name", "eth0", "netns",
               namespace)
            ip("-n", node_ns, "link", "set", f"veth{index}", "master", "cni0", "up")
            ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "route", "add", "default", "via", "10.244.0.1")
        yield node_ns, pod_ns
    finally:
        for namespace in reversed(made):
            subprocess.run([IP or "ip", "netns", "del", namespace], capture_output=True)


def manifest(name: str) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]
    return doc


def manifest_env(workload: dict[str, Any], secrets: dict[str, str], fields: dict[str, str],
                 **overrides: str) -> dict[str, str]:
    """The container's variables as Kubernetes would give them: literal values, secrets, downward API fields."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    for item in workload["spec"]["template"]["spec"]["containers"][0]["env"]:
        source = item.get("valueFrom", {})
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in source:
            env[item["name"]] = secrets[source["secretKeyRef"]["key"]]
        else:
            env[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
    env.update(overrides)
    return env


class Serve:
    """`azimds serve` (the image's entry point) in a namespace, or on the host with ``namespace`` None; its
    output read as it comes by threads of its own."""

    def __init__(self, env: dict[str, str], namespace: str | None = None):
        command = [sys.executable, "-m", "azimds", "serve"]
        if namespace is not None:
            assert IP is not None
            command = [IP, "netns", "exec", namespace, *command]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()
        try:
            wait_until(lambda: any(line.startswith("azimds: serving") for line in self.out)
                       or self.proc.poll() is not None, timeout=30, interval=0.02)
        finally:
            if not any(line.startswith("azimds: serving") for line in self.out):
                self.stop()
                raise AssertionError(f"serve did not get ready: {self.stderr}")

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def control_url(self) -> str:
        """The control plane's address, from the line serve writes on stderr before it is ready."""
        for line in self.err:
            match = re.match(r"azimds: control plane (http://\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError(f"the control plane did not say where it listens: {self.stderr}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        return code


def curl_instance(pod: str) -> dict[str, Any]:
    assert CURL is not None
    done = in_ns(pod, CURL, "-sS", "--max-time", "10", "-H", "Metadata:true",
                 f"{IMDS}/metadata/instance?api-version=2021-02-01")
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


GET_TOKEN = ("from azure.identity import ManagedIdentityCredential as C; "
             "print(C().get_token('https://management.azure.com/.default').token)")


def sdk_token_claims(pod: str) -> dict[str, Any]:
    """azure-identity with no configuration at all, in the pod: it finds IMDS at 169.254.169.254."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    done = in_ns(pod, sys.executable, "-c", GET_TOKEN, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    claims: dict[str, Any] = jwt.decode(done.stdout.strip(), options={"verify_signature": False})
    return claims


def control_get(url: str, path: str) -> Any:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        conn.close()


def test_each_pod_reads_its_own_instance_and_token_through_the_node_agent(node, postgres_cluster, postgres_url,
                                                                          tmp_path: Path):
    node_ns, pods = node
    database = postgres_url.rsplit("/", 1)[1]
    # a unix socket reaches the database from the node's namespace, as the cluster network would
    state = f"postgresql://postgres@/{database}?host={postgres_cluster.sockets}&port={postgres_cluster.port}"
    profile = tmp_path / "profile.yaml"  # the ConfigMap, mounted
    profile.write_text(manifest("10-configmap.yaml")["data"]["profile.yaml"])
    secrets = {"state": state, "control-token": TOKEN}
    mounts = {"AZIMDS_PROFILE": str(profile)}

    (tmp_path / "control").mkdir()
    control_env = manifest_env(manifest("20-deployment.yaml"), secrets, {"metadata.name": "azimds-control-0"},
                               **mounts, AZIMDS_STATE_DIR=str(tmp_path / "control"),
                               AZIMDS_CONTROL_HOST="127.0.0.1", AZIMDS_CONTROL_PORT="0", AZIMDS_PORT="0")
    agent_env = manifest_env(manifest("40-daemonset.yaml"), secrets, {"spec.nodeName": "node-1"}, **mounts,
                             AZIMDS_STATE_DIR=str(tmp_path / "agent"))
    assert agent_env["AZIMDS_ADD_HOST_ADDRESS"] == "true" and agent_env["AZIMDS_PORT"] == "80"
    assert not host_has_imds_address()

    control = Serve(control_env)
    agent = Serve(agent_env, node_ns)
    try:
        control_url = control.control_url
        first = {pod: curl_instance(pod)["compute"] for pod in pods}
        names = [first[pod]["name"] for pod in pods]
        assert sorted(names) == ["pods_0", "pods_1", "pods_2"]  # one instance each, claimed in turn
        assert len({first[pod]["vmId"] for pod in pods}) == 3
        assert all(first[pod]["vmScaleSetName"] == "pods" for pod in pods)

        claims = {pod: sdk_token_claims(pod) for pod in pods}
        for pod in pods:  # the token is the pod's own instance's, and no other's
            assert claims[pod]["xms_mirid"] == first[pod]["resourceId"].replace("/resourceGroups/",
                                                                                 "/resourcegroups/")
        assert len({c["oid"] for c in claims.values()}) == 3

        again = curl_instance(pods[0])["compute"]  # the same pod again: the same persona
        assert (again["name"], again["vmId"]) == (first[pods[0]]["name"], first[pods[0]]["vmId"])

        def listed() -> dict[str, str]:
            (pods_set,) = [s for s in control_get(control_url, "/v1/fleet")["sets"] if s["name"] == "pods"]
            return {c["address"]: c["vm"] for c in pods_set["claims"]}

        expected = {address: first[pod]["name"] for address, pod in zip(PODS, pods, strict=True)}
        wait_until(lambda: listed() == expected, timeout=10, interval=0.05)  # the shared world, seen elsewhere
        assert not host_has_imds_address()
    finally:
        codes = (agent.stop(), control.stop())
    assert codes == (0, 0), agent.stderr + control.stderr
    assert "azimds: added 169.254.169.254/32 to lo" in agent.stderr



# -- --add-host-address on its own ------------------------------------------------------------------------------

@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"azimds-addr-{os.getpid() % 100_000}"
    try:
        ip("netns", "add", name)
    except RuntimeError as exc:
        pytest.skip(f"cannot make a network namespace here: {exc}")
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run([IP or "ip", "netns", "del", name], capture_output=True)


ADD = ("from azimds.emulator.hostaddr import add_address; "
       "print(add_address('169.254.169.254'), add_address('169.254.169.254'))")


def test_the_address_is_added_once_and_found_there_after(namespace: str):
    done = in_ns(namespace, sys.executable, "-c", ADD)
    assert (done.returncode, done.stdout, done.stderr) == (0, "True False\n", "")
    shown = in_ns(namespace, IP or "ip", "-4", "addr", "show", "dev", "lo").stdout
    assert "inet 169.254.169.254/32 scope global lo" in shown


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_without_net_admin_serve_stops_in_one_line_saying_so(namespace: str):
    serve = [sys.executable, "-m", "azimds", "serve", "--add-host-address", "--host", "169.254.169.254", "--port",
             "80", "--state-dir", "", "--control-port", "0"]
    done = in_ns(namespace, "setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", *serve)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("azimds: cannot add 169.254.169.254/32 to lo: not allowed (the agent needs "
                           "CAP_NET_ADMIN)\n")
    assert "169.254.169.254" not in in_ns(namespace, IP or "ip", "-4", "addr").stdout


@pytest.mark.parametrize(("host", "message"), [
    ("127.0.0.1", "azimds: --add-host-address adds one address, such as 169.254.169.254, not 127.0.0.1\n"),
    ("0.0.0.0", "azimds: --add-host-address adds one address, such as 169.254.169.254, not 0.0.0.0\n"),
    ("localhost", "azimds: --add-host-address needs --host to be an IPv4 address, not 'localhost'\n"),
])
def test_an_address_that_cannot_be_added_is_refused_before_anything_changes(namespace: str, host: str,
                                                                             message: str):
    done = in_ns(namespace, sys.executable, "-m", "azimds", "serve", "--add-host-address", "--host", host,
                 "--port", "0", "--state-dir", "", "--control-port", "0")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)
