"""End to end: the cluster's state in the cluster. A kubeadm cluster of the stand-ins (a master
and a node) run by sealer from one state home leaves its Clusterfile, without secrets, in the
ConfigMap kube-system/sealer-clusterfile on master0 (through the stand-in kubectl, over SSH);
`sealer cluster import` into a second state home reads it through the API server with the
admin token of master0's admin.conf; from that second home a third host joins, status shows it,
the ConfigMap then names it, and the node is deleted again.

The import reaches master0's kube-apiserver (the stand-in's, tests/standins/core.make_api_proxy)
over real TLS, verified with the cluster CA of admin.conf, and the stand-in control plane
checks the bearer token (any other is refused with 401).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import ClusterError
from builder.runtime import actions
from builder.runtime.actions.import_state import import_cluster
from builder.runtime.cluster import HostSpec, Role
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.state import ClusterState
from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.component.runtime.e2e import _runtime_lab
from tests.hosts import HostLab, TestHost
from tests.standins import make_bin_dir

NAME = "import-e2e"
IMAGE = "sealer.test/kubernetes:v1.30.14"
STATE = "/var/lib/etcd/member/standin-state.json"
PASSWORD = "not-in-the-cluster-0"  # the registry's: must never reach master0's datastore


@dataclass
class Lab(_runtime_lab.Lab):
    second: Path  # the other machine's state home

    @property
    def node(self) -> TestHost:
        return self.hosts[1]

    @property
    def spare(self) -> TestHost:
        return self.hosts[2]


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("import-e2e")
    store = Store.open(base / "store")
    build_basefs(
        "kubernetes", make_bin_dir("kubernetes", base / "bin", "v1.30.14"), store, IMAGE, version="v1.30.14"
    )
    with _runtime_lab.open_lab(host_lab, store, base / "first", 3) as made:
        yield Lab(made.store, made.home, made.hosts, made.etc_hosts, base / "second")


def kubeconfig(lab: Lab, path: Path, token: str | None = None) -> Path:
    """master0's admin.conf as a user copies it to another machine: the server this machine
    reaches (master0's address, which the API server's certificate carries), the same CA and
    credentials."""
    config: dict[str, Any] = yaml.safe_load(lab.master0.path("/etc/kubernetes/admin.conf").read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://{lab.master0.address}:6443"
    if token is not None:
        config["users"][0]["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def saved_configmap(lab: Lab) -> dict[str, Any]:
    state = _runtime_lab.read_state(lab, STATE)
    found: dict[str, Any] = state["configmaps"]["kube-system/sealer-clusterfile"]
    return found


def test_run_saves_the_clusterfile_without_secrets_in_the_cluster(lab: Lab) -> None:
    text = _runtime_lab.make_clusterfile(NAME, IMAGE, [lab.master0], [lab.node], lab.hosts)
    doc = yaml.safe_load(text)
    doc["spec"]["registry"] = {"localRegistry": {"username": "admin", "password": PASSWORD}}
    actions.run(parse_clusterfile(yaml.safe_dump(doc)), lab.settings())
    data = saved_configmap(lab)["data"]
    assert sorted(data) == ["Clusterfile", "registry-ca.crt", "registry-server.crt", "state.json"]
    saved = yaml.safe_load(data["Clusterfile"])
    assert [g["ips"] for g in saved["spec"]["hosts"]] == [[lab.master0.address], [lab.node.address]]
    assert saved["spec"]["registry"]["localRegistry"]["username"] == "admin"
    assert PASSWORD not in lab.master0.path(STATE).read_text()  # nowhere in the datastore
    assert "BEGIN CERTIFICATE" in data["registry-ca.crt"] and "PRIVATE KEY" not in str(data)


def test_import_into_a_second_home_then_join_and_delete_from_there(lab: Lab, tmp_path: Path) -> None:
    ssh_only = tmp_path / "ssh.yaml"
    ssh = {
        "user": "root",
        "useAgent": False,
        "knownHosts": str(lab.hosts.known_hosts),
        "pk": str(lab.hosts.client_key),
    }
    spec = {"ssh": ssh, "registry": {"localRegistry": {"password": PASSWORD}}}
    ssh_only.write_text(yaml.safe_dump({"apiVersion": "sealer.io/v2", "kind": "Cluster", "spec": spec}))
    with pytest.raises(ClusterError, match=r"401 Unauthorized"):
        import_cluster(
            kubeconfig(lab, tmp_path / "bad", token="admin-" + "0" * 32),
            ssh_file=ssh_only,
            home=lab.second,
        )
    assert not lab.second.exists()

    import_cluster(kubeconfig(lab, tmp_path / "kubeconfig"), ssh_file=ssh_only, home=lab.second)
    status = actions.status(NAME, lab.second)
    assert [(h["ip"], h["role"], h["joined"]) for h in status["hosts"]] == [
        (lab.master0.address, "master0", True),
        (lab.node.address, "node", True),
    ]
    assert status["complete"] and status["runtime"] == "kubernetes"

    second = actions.Settings(store=lab.store, home=lab.second)
    imported = ClusterState(NAME, lab.second).load_cluster()
    assert imported is not None
    spare = HostSpec(lab.spare.address, (Role.NODE,), imported.ssh)  # as `sealer join` defaults it
    actions.join(NAME, [spare], second)
    status = actions.status(NAME, lab.second)
    assert [(h["ip"], h["joined"]) for h in status["hosts"]][-1] == (lab.spare.address, True)
    assert lab.spare.run("systemctl is-active kubelet").stdout.strip() == "active"
    nodes = {n["ip"] for n in _runtime_lab.read_state(lab, STATE)["nodes"].values()}
    assert lab.spare.address in nodes
    # the joined node trusts the registry with the CA the first machine made
    first_ca = (lab.home / NAME / "registry" / "ca.crt").read_text()
    assert lab.spare.path("/etc/containerd/certs.d/sea.hub:5000/ca.crt").read_text() == first_ca
    hosts = yaml.safe_load(saved_configmap(lab)["data"]["Clusterfile"])["spec"]["hosts"]
    assert lab.spare.address in [ip for g in hosts for ip in g["ips"]]

    actions.delete(NAME, second, nodes=[lab.spare.address])
    hosts = yaml.safe_load(saved_configmap(lab)["data"]["Clusterfile"])["spec"]["hosts"]
    assert lab.spare.address not in [ip for g in hosts for ip in g["ips"]]
    assert lab.spare.address not in {h["ip"] for h in actions.status(NAME, lab.second)["hosts"]}


def test_delete_all_from_the_second_home(lab: Lab) -> None:
    actions.delete(NAME, actions.Settings(store=lab.store, home=lab.second), all_=True)
    assert not (lab.second / NAME).exists()
    assert not lab.master0.path("/etc/kubernetes/admin.conf").exists()
