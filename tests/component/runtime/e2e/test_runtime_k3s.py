"""End to end: the k3s basefs image (basefs/k3s, built from the stand-in upstream files of
tests/standins/k3s.py) run by sealer on fixture hosts with the k3s plugin, over SSH.

One cluster's life, test after test on one set of hosts and one state home: three masters and
a worker, whose `sealer run` is broken three times by crashes (master0's init, a master's join,
the worker's join) and finished by running it again each time; a wrong token refused; a
worker joined (its first attempt crashing half-way, the same apply again finishing it), then
deleted (drained, node deleted, uninstalled); an upgrade (master0, masters, the worker drained
and uncordoned) and a refused downgrade; a master deleted (its etcd member goes); then
`delete --all` leaves every host as it was. The crashes are the k3s stand-in's fault points
(tests/standins/k3s.py), armed by a marker file the stand-in removes as it dies. What is
checked is what the hosts hold afterwards - the files k3s keeps, the datastore on master0
(nodes, etcd members, the ordered events), the service units and the env files install.sh
wrote - read straight from the hosts, never what sealer says it did.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from builder.errors import HostError, SealerError
from builder.runtime import actions
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.state import ClusterState
from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.component.runtime.e2e import _runtime_lab
from tests.component.runtime.e2e._runtime_lab import Lab
from tests.hosts import HostLab, TestHost
from tests.standins import make_bin_dir

NAME = "k3s-e2e"
BASEFS = Path(__file__).resolve().parents[4] / "basefs" / "k3s"
IMAGE = "sealer.test/k3s:v1.29.4-k3s1"
IMAGE_NEXT = "sealer.test/k3s:v1.30.0-k3s1"
TAG = "# sealer-managed k3s"
SERVER = "/var/lib/rancher/k3s/server"
DB = f"{SERVER}/db/state.json"
FAULTS = "/run/standin-fault"  # the stand-ins' fault markers (tests/standins/k3s.py)

clusterfile = partial(_runtime_lab.make_clusterfile, NAME)


def worker_config(worker: TestHost) -> dict[str, dict[str, Any]]:
    """The worker's Clusterfile labels and taint, put on its node by the node-config phase."""
    return {worker.address: {"labels": {"disk": "ssd"}, "taints": ["dedicated=gpu:NoSchedule"]}}


WORKER_LABELS = {"sealer.io/runtime": "k3s", "disk": "ssd"}  # config.yaml's node-label, then ours
WORKER_TAINTS = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Hosts 0-2 the masters, 3 the worker, 4 the worker that joins and leaves."""
    base = tmp_path_factory.mktemp("k3s-e2e")
    store = Store.open(base / "store")
    _runtime_lab.build_releases("k3s", store, base, IMAGE, IMAGE_NEXT)
    with _runtime_lab.open_lab(host_lab, store, base / "state", 5) as made:
        yield made


# --- reading the hosts -----------------------------------------------------------------------------


def datastore(lab: Lab) -> dict[str, Any]:
    """master0's k3s datastore (the stand-in's etcd): nodes, members, events."""
    return _runtime_lab.read_state(lab, DB)


def member_names(lab: Lab) -> list[str]:
    return [m["name"] for m in sorted(datastore(lab)["members"].values(), key=lambda m: m["seq"])]


def kubectl_nodes(host: TestHost) -> dict[str, list[str]]:
    """`k3s kubectl get nodes -o wide --no-headers` on `host`: name -> columns."""
    out = host.run("k3s kubectl get nodes -o wide --no-headers").stdout
    return {line.split()[0]: line.split() for line in out.splitlines()}


def events_of(lab: Lab, name: str) -> list[dict[str, Any]]:
    return [e for e in datastore(lab)["events"] if e["name"] == name]


def env_file(host: TestHost, service: str) -> dict[str, str]:
    """install.sh's /etc/systemd/system/<service>.service.env, as systemd reads it."""
    text = host.path(f"/etc/systemd/system/{service}.service.env").read_text()
    return {k: v.strip("'") for k, _, v in (line.partition("=") for line in text.splitlines() if line)}


def k3s_pids(host: TestHost) -> list[int]:
    """Processes of /usr/local/bin/k3s running inside `host` (its network namespace)."""
    return _runtime_lab.find_pids(host, "/usr/local/bin/k3s")


def inject(host: TestHost, point: str) -> Path:
    """Leave a fault marker: the stand-in reaching `point` on `host` removes it and dies there."""
    marker = host.path(f"{FAULTS}/{point}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return marker


def service_state(host: TestHost, service: str) -> str:
    return host.run(f"systemctl is-active {service}", check=False).stdout.strip()


def log_entries(lab: Lab, host: TestHost, phase_step: str) -> list[str]:
    """The exit status of every run of `phase/step` in sealer's log of `host`, in order."""
    log = (ClusterState(NAME, lab.home).logs_dir / f"{host.address}.log").read_text()
    return re.findall(rf"^--- \S+ {re.escape(phase_step)} \([0-9.]+s\) exit (\S+)$", log, re.MULTILINE)


def assert_uninstalled(lab: Lab, host: TestHost) -> None:
    for path in ("/usr/local/bin/k3s", "/usr/local/bin/k3s-killall.sh", "/usr/local/bin/k3s-uninstall.sh",
                 "/usr/local/bin/k3s-agent-uninstall.sh", "/usr/local/bin/crictl", "/usr/local/bin/ctr",
                 "/var/lib/rancher/k3s", "/etc/rancher/k3s",
                 "/etc/systemd/system/k3s.service", "/etc/systemd/system/k3s-agent.service",
                 "/etc/systemd/system/k3s.service.env", "/etc/systemd/system/k3s-agent.service.env",
                 f"/var/lib/sealer/data/{NAME}"):  # fmt: skip
        assert not host.path(path).exists(), f"{host.hostname}: {path} is left"
    assert k3s_pids(host) == []
    for service in ("k3s", "k3s-agent"):
        assert host.run(f"systemctl is-active {service}", check=False).stdout.strip() != "active"
        assert host.run(f"systemctl is-enabled {service}", check=False).returncode != 0
    assert host.path("/etc/hosts").read_text() == lab.etc_hosts[host.address]  # clean.sh undid init.sh


# --- the cluster's life ----------------------------------------------------------------------------


def test_a_broken_run_goes_further_each_time_it_is_run_again(lab: Lab) -> None:
    """Three crashes in the first `sealer run`, one per attempt, each at a point where the
    host holds what upstream has written by then. Each re-run of the same command gets past it:
    install.sh runs again and (re)starts k3s even though it writes the same unit and env file
    (without INSTALL_K3S_FORCE_RESTART it would say "No change detected" and start nothing).
    The fourth attempt, in the next test, finishes the cluster."""
    h = lab.hosts
    masters, worker = h[0:3], h[3]
    wanted = parse_clusterfile(clusterfile(IMAGE, masters, [worker], h, worker_config(worker)))
    markers = [
        inject(lab.master0, "server-datastore-created"),
        inject(h[2], "server-member-added"),
        inject(worker, "install-unit-written"),
    ]

    # 1: master0's first k3s start died with the datastore made, before server/token and k3s.yaml
    with pytest.raises(HostError) as info:
        actions.run(wanted, lab.settings())
    assert (info.value.host, info.value.step) == (lab.master0.address, "k3s-install")
    assert not markers[0].exists() and markers[1].exists()
    assert lab.master0.path(DB).is_file() and lab.master0.path(f"{SERVER}/cred/passwd").is_file()
    assert not lab.master0.path(f"{SERVER}/token").exists()
    assert not lab.master0.path("/etc/rancher/k3s/k3s.yaml").exists()
    assert service_state(lab.master0, "k3s") == "failed" and k3s_pids(lab.master0) == []

    # 2: master0 restarted on its datastore; the second master joined; the third died right
    # after the cluster added it as an etcd member
    with pytest.raises(HostError) as info:
        actions.run(wanted, lab.settings())
    assert (info.value.host, info.value.step) == (h[2].address, "k3s-install")
    assert not markers[1].exists()
    assert member_names(lab) == [m.hostname for m in masters]
    assert service_state(h[1], "k3s") == "active"
    assert service_state(h[2], "k3s") == "failed" and k3s_pids(h[2]) == []
    assert not h[2].path(f"{SERVER}/token").exists()

    # 3: the third master is up; the worker's install.sh died after writing the unit and its env
    # file (with the agent token), before starting anything
    with pytest.raises(HostError) as info:
        actions.run(wanted, lab.settings())
    assert (info.value.host, info.value.step) == (worker.address, "k3s-install")
    assert not markers[2].exists()
    assert service_state(h[2], "k3s") == "active"
    agent_token = lab.master0.path(f"{SERVER}/agent-token").read_text().strip()
    assert env_file(worker, "k3s-agent")["K3S_TOKEN"] == agent_token
    assert service_state(worker, "k3s-agent") != "active" and k3s_pids(worker) == []
    assert worker.hostname not in datastore(lab)["nodes"]


def test_run_three_masters_and_a_worker(lab: Lab) -> None:
    """The same run a fourth time: it finishes, and the cluster is whole."""
    h = lab.hosts
    masters, worker = h[0:3], h[3]
    wanted = parse_clusterfile(clusterfile(IMAGE, masters, [worker], h, worker_config(worker)))
    outcome = actions.run(wanted, lab.settings())
    assert {s.host for s in outcome.hosts} == {x.address for x in h[0:4]}
    kubeconfig = ClusterState(NAME, lab.home).kubeconfig_path
    assert outcome.message == f"cluster {NAME}: 4 host(s) done; kubeconfig: {kubeconfig}"

    # master0's tokens as k3s writes them: K10<sha256 of the cluster CA>::server|node:<secret>
    ca = lab.master0.path(f"{SERVER}/tls/server-ca.crt").read_text()
    ca_hash = hashlib.sha256(ca.encode()).hexdigest()
    token = lab.master0.path(f"{SERVER}/token").read_text().strip()
    agent_token = lab.master0.path(f"{SERVER}/agent-token").read_text().strip()
    assert re.fullmatch(rf"K10{ca_hash}::server:[0-9a-f]{{32}}", token)
    assert re.fullmatch(rf"K10{ca_hash}::node:[0-9a-f]{{32}}", agent_token)
    assert token.rsplit(":", 1)[1] != agent_token.rsplit(":", 1)[1]
    for m in masters[1:]:  # the joined servers hold the same cluster tokens
        assert m.path(f"{SERVER}/token").read_text().strip() == token
        assert not m.path(DB).exists()  # one datastore: master0's

    # master0 initialised with --cluster-init; the others joined it with the server token; the
    # worker with the agent token (env files written by install.sh, as systemd passes them on)
    unit = lab.master0.path("/etc/systemd/system/k3s.service").read_text()
    assert "'--cluster-init'" in unit and "'--tls-san'" in unit and "'apiserver.cluster.local'" in unit
    # every server audits with the image's policy (the stand-in server refuses to start when the
    # file the flag names is missing); the agent runs no API server
    policy = (BASEFS / "statics" / "audit-policy.yml").read_text()
    for m in masters:
        unit = m.path("/etc/systemd/system/k3s.service").read_text()
        assert "'audit-policy-file=/var/lib/rancher/k3s/server/audit.yaml'" in unit
        assert m.path(f"{SERVER}/audit.yaml").read_text() == policy
    assert not worker.path(f"{SERVER}/audit.yaml").exists()
    unit = lab.master0.path("/etc/systemd/system/k3s.service").read_text()
    assert "K3S_TOKEN" not in env_file(lab.master0, "k3s")
    for m in masters[1:]:
        unit = m.path("/etc/systemd/system/k3s.service").read_text()
        assert f"'--server' \\\n\t'https://{lab.master0.address}:6443'" in unit
        assert env_file(m, "k3s")["K3S_TOKEN"] == token
    assert env_file(worker, "k3s-agent") == {
        "K3S_TOKEN": agent_token,
        "K3S_URL": "https://apiserver.cluster.local:6443",  # the stable endpoint, not master0
    }

    # the etcd member list holds the three servers, in join order; every node is Ready
    assert member_names(lab) == [m.hostname for m in masters]
    nodes = kubectl_nodes(lab.master0)
    assert set(nodes) == {x.hostname for x in h[0:4]}
    for x in h[0:4]:
        _, status, roles, _, version, ip, *_ = nodes[x.hostname]
        assert (status, version, ip) == ("Ready", "v1.29.4+k3s1", x.address)
        assert roles == ("<none>" if x is worker else "control-plane,etcd,master")
    # each host joined once, the third master twice: its crashed attempt, then the re-run
    # (the same name, the same member); the tokens were made once, on master0's first start
    joins = [e for e in datastore(lab)["events"] if e["reason"] == "Joined"]
    assert [(e["name"], e["role"]) for e in joins] == [
        *((m.hostname, "server") for m in (*masters, masters[2])),
        (worker.hostname, "agent"),
    ]
    created = [e["name"] for e in datastore(lab)["events"] if e["reason"] == "TokenCreated"]
    assert created == ["server", "agent"]
    # the tokens were read on master0 again for each attempt of a join that needed them (the
    # third master's in runs 2 and 3, the agent's in runs 3 and 4), and never logged
    m2 = masters[2].address
    assert log_entries(lab, lab.master0, f"join-masters/{m2}/k3s-server-token") == ["0", "0"]
    assert log_entries(lab, lab.master0, "join-nodes/k3s-agent-token") == ["0", "0"]
    assert log_entries(lab, worker, "join-nodes/k3s-install") == ["137", "0"]  # killed, then done
    logs = ClusterState(NAME, lab.home).logs_dir
    assert not any(token in p.read_text() or agent_token in p.read_text() for p in logs.iterdir())
    # one k3s process per host: nothing left over from the crashed attempts
    assert all(len(k3s_pids(x)) == 1 for x in h[0:4])
    # config.yaml from the image reached every node (its node-label); the Clusterfile's labels
    # and taint reached the worker's node, put there from master0 once (the earlier runs failed
    # before node-config), after every join
    nodes_state = datastore(lab)["nodes"]
    for x in h[0:3]:
        assert nodes_state[x.hostname]["labels"] == {"sealer.io/runtime": "k3s"}
        assert "taints" not in nodes_state[x.hostname]
    assert nodes_state[worker.hostname]["labels"] == WORKER_LABELS
    assert nodes_state[worker.hostname]["taints"] == WORKER_TAINTS
    assert log_entries(lab, lab.master0, f"node-config/{worker.address}/k3s-node-labels") == ["0"]
    assert log_entries(lab, lab.master0, f"node-config/{worker.address}/k3s-node-taints") == ["0"]
    patched = [e for e in datastore(lab)["events"] if e["reason"] == "Patched" and "labels" in e]
    assert [e["name"] for e in patched] == [worker.hostname]
    # the stand-in's kubectl is as strict as kubectl: another value needs --overwrite, an effect
    # must be one of the three
    kubectl = f"k3s kubectl label node {worker.hostname} disk=hdd"
    proc = lab.master0.run(kubectl, check=False)
    assert (
        proc.returncode == 1 and "'disk' already has a value (ssd), and --overwrite is false" in proc.stderr
    )
    proc = lab.master0.run(f"k3s kubectl taint node {worker.hostname} dedicated=gpu:Sometimes", check=False)
    assert proc.returncode == 1 and "invalid taint effect: Sometimes" in proc.stderr
    assert datastore(lab)["nodes"][worker.hostname]["labels"] == WORKER_LABELS

    # services up under the systemctl stand-in; API and kubelet ports held
    for m in masters:
        assert m.run("systemctl is-active k3s").stdout.strip() == "active"
        assert m.run("ss -Hltn 'sport = :6443'").stdout.strip()
    assert worker.run("systemctl is-active k3s-agent").stdout.strip() == "active"
    assert worker.run("ss -Hltn 'sport = :10250'").stdout.strip()

    # init.sh's tagged /etc/hosts line; the API certificate has the stable endpoint in its SANs
    for x in h[0:4]:
        assert f"{lab.master0.address} apiserver.cluster.local {TAG}" in x.path("/etc/hosts").read_text()
    sans = lab.master0.path(f"{SERVER}/tls/serving-kube-apiserver.crt").read_text().splitlines()[0]
    assert "DNS:apiserver.cluster.local" in sans

    # the saved kubeconfig names the stable endpoint and works from any host
    kubeconfig = ClusterState(NAME, lab.home).kubeconfig_path
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    text = kubeconfig.read_text()
    assert "server: https://apiserver.cluster.local:6443" in text and "127.0.0.1" not in text
    worker.path("/root/admin.kubeconfig").write_text(text)
    out = worker.run("k3s kubectl --kubeconfig /root/admin.kubeconfig get nodes --no-headers").stdout
    assert len(out.splitlines()) == 4


def test_wrong_tokens_are_refused(lab: Lab) -> None:
    worker, m0 = lab.hosts[3], lab.master0.address
    token = lab.master0.path(f"{SERVER}/token").read_text().strip()
    agent_token = lab.master0.path(f"{SERVER}/agent-token").read_text().strip()
    prefix, _, secret = agent_token.rpartition(":")
    join = f"--server https://{m0}:6443 --node-name intruder --node-ip {worker.address}"
    cases = {
        f"{prefix}:{'0' * 32}": "token is not valid (unknown token)",  # right CA, wrong secret
        f"K10{'0' * 64}::node:{secret}": "token CA hash does not match",  # right secret, wrong CA
    }
    for bad, message in cases.items():
        proc = worker.run(f"K3S_TOKEN='{bad}' k3s agent {join}", check=False)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    # the agent token cannot make a server; the server token can make an agent (as upstream)
    proc = worker.run(f"k3s server {join} --token '{agent_token}'", check=False)
    assert proc.returncode == 1 and "token is not valid for a server join" in proc.stderr, proc.stderr
    assert "intruder" not in datastore(lab)["nodes"]
    assert token != agent_token


def test_join_then_delete_a_worker(lab: Lab) -> None:
    """The join's first attempt dies in the k3s agent after the node joined (the cluster has its
    name and password) and before it is up; the same apply again finishes it."""
    h = lab.hosts
    new = h[4]
    wanted = parse_clusterfile(clusterfile(IMAGE, h[0:3], [h[3], new], h, worker_config(h[3])))
    marker = inject(new, "agent-joined")
    with pytest.raises(HostError) as info:
        actions.apply(wanted, lab.settings())
    assert (info.value.host, info.value.step) == (new.address, "k3s-install")
    assert not marker.exists()
    assert new.hostname in datastore(lab)["nodes"]
    assert new.path("/var/lib/rancher/k3s/agent/server-ca.crt").is_file()
    assert not new.path("/var/lib/rancher/k3s/agent/kubelet.kubeconfig").exists()
    assert service_state(new, "k3s-agent") == "failed" and k3s_pids(new) == []

    outcome = actions.apply(wanted, lab.settings())
    assert [s.host for s in outcome.hosts] == [new.address]  # only the new host did anything
    assert kubectl_nodes(lab.master0)[new.hostname][1] == "Ready"
    assert service_state(new, "k3s-agent") == "active" and len(k3s_pids(new)) == 1
    assert new.path("/var/lib/rancher/k3s/agent/kubelet.kubeconfig").is_file()
    assert (
        env_file(new, "k3s-agent")["K3S_TOKEN"]
        == lab.master0.path(f"{SERVER}/agent-token").read_text().strip()
    )
    assert log_entries(lab, new, "join-nodes/k3s-install") == ["1", "0"]

    actions.delete(NAME, lab.settings(), nodes=[new.address])
    # on master0: drained (cordoned, evicted), then the node deleted - in that order
    assert [(e["reason"], {k: e[k] for k in ("unschedulable", "evicted") if k in e})
            for e in events_of(lab, new.hostname)] == [
        ("Joined", {}),  # the crashed attempt
        ("Joined", {}),  # the re-run: the same name, its password accepted again
        ("Patched", {"unschedulable": True}),
        ("Patched", {"evicted": True}),
        ("Deleted", {}),
    ]  # fmt: skip
    assert new.hostname not in kubectl_nodes(lab.master0)
    assert member_names(lab) == [m.hostname for m in h[0:3]]  # an agent was never a member
    assert_uninstalled(lab, new)  # k3s-agent-uninstall.sh ran and removed itself; clean.sh ran
    saved = ClusterState(NAME, lab.home).load_cluster()
    assert saved is not None and new.address not in saved.ips


def test_upgrade_then_a_downgrade_is_refused(lab: Lab, tmp_path: Path) -> None:
    h = lab.hosts
    worker = h[3]
    before = len(datastore(lab)["events"])
    actions.upgrade(NAME, IMAGE_NEXT, lab.settings())
    nodes = kubectl_nodes(lab.master0)
    assert {n[4] for n in nodes.values()} == {"v1.30.0+k3s1"}
    assert all(n[1] == "Ready" for n in nodes.values())  # the worker is uncordoned again
    for x in h[0:4]:
        assert x.run("k3s --version").stdout.startswith("k3s version v1.30.0+k3s1 ")
    # order: each host restarted (re-joined) master0 first, masters one by one, the worker
    # last, drained before its restart and uncordoned after it
    new_events = datastore(lab)["events"][before:]
    rejoins = [e["name"] for e in new_events if e["reason"] == "Joined"]
    assert rejoins == [x.hostname for x in h[0:4]]
    mine = [(e["reason"], e.get("unschedulable")) for e in new_events if e["name"] == worker.hostname]
    assert mine == [("Patched", True), ("Patched", None), ("Joined", None), ("Patched", False)]
    # the worker's restart kept the labels and taint put on its node through the API
    node = datastore(lab)["nodes"][worker.hostname]
    assert (node["labels"], node["taints"]) == (WORKER_LABELS, WORKER_TAINTS)
    assert member_names(lab) == [m.hostname for m in h[0:3]]

    # a downgrade is refused on this machine, from the images' KUBEVERSIONs: nothing changes
    meta = ClusterState(NAME, lab.home).load_meta()
    with pytest.raises(SealerError) as info:
        actions.upgrade(NAME, IMAGE, lab.settings())
    assert str(info.value) == (
        "the cluster runs v1.30.0, the image is v1.29.4: a downgrade or a major change is not supported"
    )
    assert ClusterState(NAME, lab.home).load_meta() == meta
    # an image that says v1.30.1 but carries the v1.29.4 binary: the hosts' own check refuses
    mislabelled = "sealer.test/k3s:v1.30.1-mislabelled"
    build_basefs(
        "k3s", make_bin_dir("k3s", tmp_path / "bin", "v1.29.4"), lab.store, mislabelled, version="v1.30.1"
    )
    with pytest.raises(SealerError):
        actions.upgrade(NAME, mislabelled, lab.settings())
    log = (ClusterState(NAME, lab.home).logs_dir / f"{lab.master0.address}.log").read_text()
    assert "k3s 1.30.0 -> 1.29.4: a downgrade or a major change is not supported" in log
    assert {n[4] for n in kubectl_nodes(lab.master0).values()} == {"v1.30.0+k3s1"}  # nothing changed
    # the failed upgrade goes back to the image the cluster ran whole; the state is whole again
    actions.upgrade(NAME, IMAGE_NEXT, lab.settings())
    meta = ClusterState(NAME, lab.home).load_meta()
    assert meta is not None and meta.complete and meta.image == IMAGE_NEXT


def test_delete_a_master_removes_its_etcd_member(lab: Lab) -> None:
    h = lab.hosts
    leaving = h[2]
    actions.delete(NAME, lab.settings(), masters=[leaving.address])
    reasons = [e["reason"] for e in events_of(lab, leaving.hostname)]
    assert reasons[-4:] == ["Patched", "Patched", "Deleted", "MemberRemoved"]  # drain, delete
    assert member_names(lab) == [h[0].hostname, h[1].hostname]
    assert set(kubectl_nodes(lab.master0)) == {x.hostname for x in (h[0], h[1], h[3])}
    assert_uninstalled(lab, leaving)  # k3s-uninstall.sh ran on it
    # a remaining server's kubectl (its 6443 forwards to master0) sees the same three nodes
    lines = h[1].run("k3s kubectl get nodes --no-headers").stdout.splitlines()
    assert sorted((line.split()[0], line.split()[1]) for line in lines) == sorted(
        (x.hostname, "Ready") for x in (h[0], h[1], h[3])
    )


def test_delete_all_leaves_every_host_as_it_was(lab: Lab) -> None:
    outcome = actions.delete(NAME, lab.settings(), all_=True)
    assert outcome.message == f"cluster {NAME} deleted"
    for host in lab.hosts:
        assert_uninstalled(lab, host)
    assert not ClusterState(NAME, lab.home).dir.exists()
