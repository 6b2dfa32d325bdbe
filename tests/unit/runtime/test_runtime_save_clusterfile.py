"""save-clusterfile (pure: no hosts): the ConfigMap kube-system/sealer-clusterfile it sends to
master0 (secrets removed, what an import needs), the command each runtime's admin kubectl runs,
and where the phase sits in every sequence."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from builder.errors import ClusterError
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.runtime import cluster_mirror
from builder.runtime.cluster import RegistrySpec
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.facts import Facts
from builder.runtime.phases import ImageInfo, PlanState, install_phases, removal_phases, upgrade_phases
from builder.runtime.phases.save_clusterfile import SaveClusterfile
from builder.runtime.plugins import get_plugin

DIGEST = Digest("sha256", "ab" * 32)
IMAGE = ImageInfo(
    "sealer.test/kubernetes:v1.30.14", DIGEST, Platform("linux", "amd64"), kube_version="v1.30.14"
)
SECRETS = ("ssh-Pa55", "host-Pa55", "key-Phrase", "reg-Pa55", "abcdef.0123456789abcdef", "f" * 64)
CLUSTERFILE = f"""\
apiVersion: sealer.io/v2
kind: Cluster
metadata: {{name: c1}}
spec:
  image: sealer.test/kubernetes:v1.30.14
  env: [ZONE=a]
  ssh: {{user: root, passwd: {SECRETS[0]}, pk: /root/.ssh/id_ed25519, pkPasswd: {SECRETS[2]}}}
  hosts:
  - ips: [10.0.0.1, 10.0.0.2]
    roles: [master]
  - ips: [10.0.0.3]
    roles: [node]
    ssh: {{passwd: {SECRETS[1]}, port: "2222"}}
  registry:
    localRegistry: {{username: admin, password: {SECRETS[3]}}}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
- token: {SECRETS[4]}
certificateKey: {SECRETS[5]}
nodeRegistration: {{criSocket: unix:///run/containerd/containerd.sock}}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
discovery:
  bootstrapToken: {{token: {SECRETS[4]}, apiServerEndpoint: "10.0.0.1:6443", unsafeSkipCAVerification: true}}
  tlsBootstrapToken: {SECRETS[4]}
controlPlane: {{certificateKey: {SECRETS[5]}}}
"""
CLUSTER = parse_clusterfile(CLUSTERFILE)
ALL = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
FACTS = cluster_mirror.MirrorFacts(("api.example.com",), "-----CA-----\n", "-----SERVER-----\n")

# The admin kubectl of each runtime on master0, as its docs spell it.
KUBECTL = {
    "kubernetes": "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf",
    "k3s": "/usr/local/bin/k3s kubectl",
    "k0s": "/usr/local/bin/k0s kubectl",
}


def command(kubectl: str) -> str:
    return (
        'f=$(mktemp) || exit 1; trap \'rm -f "$f"\' EXIT; cat >"$f" || exit 1; '
        f"if {kubectl} -n kube-system get configmap sealer-clusterfile >/dev/null 2>&1; "
        f'then {kubectl} replace -f "$f"; else {kubectl} create -f "$f"; fi'
    )


def state(runtime: str, targets: tuple[str, ...] = ALL, **kw: object) -> PlanState:
    return PlanState(IMAGE, get_plugin(runtime), targets, {"TOKEN_TTL": "1h"}, mirror=FACTS, **kw)  # type: ignore[arg-type]


def test_the_saved_clusterfile_keeps_no_secret_and_every_other_field() -> None:
    text = cluster_mirror.public_clusterfile(CLUSTER)
    for secret in SECRETS:
        assert secret not in text
    docs = list(yaml.safe_load_all(text))
    spec = docs[0]["spec"]
    assert spec["ssh"] == {"user": "root", "pk": "/root/.ssh/id_ed25519"}  # the key's path stays
    assert spec["hosts"][1]["ssh"] == {"port": "2222"}
    assert spec["registry"]["localRegistry"]["username"] == "admin"
    assert "password" not in spec["registry"]["localRegistry"]
    assert spec["env"] == ["ZONE=a"]
    assert docs[1] == {
        "apiVersion": "kubeadm.k8s.io/v1beta3",
        "kind": "InitConfiguration",
        "nodeRegistration": {"criSocket": "unix:///run/containerd/containerd.sock"},
    }
    assert docs[2]["discovery"] == {
        "bootstrapToken": {"apiServerEndpoint": "10.0.0.1:6443", "unsafeSkipCAVerification": True}
    }
    assert "controlPlane" not in docs[2]
    # with the password given again, it is the same cluster
    back = parse_clusterfile(
        text.replace("username: admin", f"username: admin\n      password: {SECRETS[3]}")
    )
    assert back == replace(
        CLUSTER,
        ssh=replace(CLUSTER.ssh, password=None, passphrase=None),
        hosts=tuple(replace(h, ssh=replace(h.ssh, password=None, passphrase=None)) for h in CLUSTER.hosts),
        documents=back.documents,
    )


@pytest.mark.parametrize("runtime", ["kubernetes", "k3s", "k0s"])
def test_master0_saves_the_configmap_with_its_runtimes_admin_kubectl(runtime: str) -> None:
    steps = SaveClusterfile().plan(CLUSTER, Facts(), state(runtime))
    assert [(s.host, s.id, s.command, s.journal) for s in steps] == [
        ("10.0.0.1", "configmap", command(KUBECTL[runtime]), False)
    ]
    assert steps[0].description == (
        "save the Clusterfile (no secrets) and state to ConfigMap kube-system/sealer-clusterfile"
    )
    sent = steps[0].stdin or b""
    for secret in SECRETS:
        assert secret.encode() not in sent
    obj = json.loads(sent)
    assert obj["metadata"] == {
        "name": "sealer-clusterfile",
        "namespace": "kube-system",
        "labels": {"app.kubernetes.io/managed-by": "sealer"},
    }
    data = obj["data"]
    assert sorted(data) == ["Clusterfile", "registry-ca.crt", "registry-server.crt", "state.json"]
    assert data["Clusterfile"] == cluster_mirror.public_clusterfile(CLUSTER)
    assert (data["registry-ca.crt"], data["registry-server.crt"]) == ("-----CA-----\n", "-----SERVER-----\n")
    assert json.loads(data["state.json"]) == {
        "version": 1,
        "image": "sealer.test/kubernetes:v1.30.14",
        "digest": str(DIGEST),
        "platform": "linux/amd64",
        "runtime": runtime,
        "kube_version": "v1.30.14",
        "cert_sans": ["api.example.com"],
        "cli_env": {"TOKEN_TTL": "1h"},
        "image_env": {},
        "image_hooks": [],
    }
    state_back = cluster_mirror.MirroredState.from_json(json.loads(data["state.json"]))
    assert (state_back.digest, state_back.runtime, state_back.cert_sans) == (
        DIGEST,
        runtime,
        ("api.example.com",),
    )


def test_after_some_hosts_leave_the_cluster_without_them_is_saved_and_nothing_after_delete_all() -> None:
    leaving = ("10.0.0.3",)
    steps = SaveClusterfile(after_removal=True).plan(CLUSTER, Facts(), state("k3s", leaving))
    saved = json.loads(steps[0].stdin or b"")["data"]["Clusterfile"]
    assert "10.0.0.3" not in saved and "10.0.0.2" in saved
    assert steps[0].host == "10.0.0.1"
    assert (
        SaveClusterfile(after_removal=True).plan(CLUSTER, Facts(), state("k3s", ALL, delete_all=True)) == []
    )


def test_the_none_runtime_has_no_api_server_so_nothing_is_saved_there() -> None:
    assert SaveClusterfile().plan(CLUSTER, Facts(), state("none")) == []


def test_an_external_registry_sends_no_local_certificates() -> None:
    external = replace(CLUSTER, registry=RegistrySpec(domain="reg.example.com", port=443, external=True))
    steps = SaveClusterfile().plan(external, Facts(), state("kubernetes"))
    assert sorted(json.loads(steps[0].stdin or b"")["data"]) == ["Clusterfile", "state.json"]


def test_a_state_over_a_configmaps_1_mib_is_refused_in_the_plan() -> None:
    big = replace(CLUSTER, env={"BLOB": "x" * (1 << 20)})
    with pytest.raises(ClusterError, match=r"more than the 1048576 a ConfigMap may hold"):
        SaveClusterfile().plan(big, Facts(), state("kubernetes"))


def test_save_clusterfile_is_last_of_install_upgrade_and_removal() -> None:
    for phases in (install_phases(), upgrade_phases(), removal_phases()):
        assert phases[-1].name == "save-clusterfile"
    assert next(p for p in removal_phases() if isinstance(p, SaveClusterfile)).after_removal


def test_imported_registry_material_serves_pulling_hosts_and_refuses_registry_hosts(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    assert cluster_mirror.imported_registry_material(tmp_path, CLUSTER, ALL) is None  # nothing kept: made
    reg.mkdir()
    (reg / "ca.crt").write_text("-----CA-----\n")
    (reg / "server.crt").write_text("-----SERVER-----\n")
    material = cluster_mirror.imported_registry_material(tmp_path, CLUSTER, ("10.0.0.3",))
    assert material is not None
    assert (material.ca_pem, material.cert_pem, material.key_pem, material.changed) == (
        "-----CA-----\n",
        "-----SERVER-----\n",
        "",
        False,
    )
    with pytest.raises(ClusterError, match=r"10\.0\.0\.2 would serve its registry"):
        cluster_mirror.imported_registry_material(tmp_path, CLUSTER, ("10.0.0.2",))
    (reg / "ca.key").write_text("key")  # the controller that ran it: registry_pki's own
    assert cluster_mirror.imported_registry_material(tmp_path, CLUSTER, ("10.0.0.2",)) is None
