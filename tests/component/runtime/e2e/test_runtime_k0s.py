"""End to end: the k0s basefs image (basefs/k0s, built from the stand-in upstream files of
tests/standins/k0s.py) run by sealer on fixture hosts with the k0s plugin, over SSH.

One cluster's life, test after test on one set of hosts and one state home: three controllers
and a worker, with a Clusterfile ClusterConfig merged over the image's etc/k0s.yaml; an
upgrade (master0, the controllers one by one, the worker drained and uncordoned) and a refused
downgrade; the worker deleted (drained, node deleted, stop, reset); wrong tokens refused; a
controller deleted (etcd leave first); then `delete --all` leaves every host as it was. Then a
second cluster whose joins die half-way (the stand-in's fault points: a controller after its
etcd member was added, a worker after the cluster accepted it), run again until it is whole.
What is checked is what the hosts hold afterwards - /etc/k0s, /var/lib/k0s, the units, master0's
"etcd" (members, nodes, tokens, ordered events) - read straight from the hosts.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import HostError, SealerError
from builder.runtime import actions
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.events import Notice, RunEvent
from builder.runtime.plugins.k0s import TOKEN_SCRUBBED
from builder.runtime.state import ClusterState
from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.component.runtime.e2e import _runtime_lab
from tests.component.runtime.e2e._runtime_lab import Lab
from tests.hosts import HostLab, TestHost
from tests.standins import core, make_bin_dir

NAME = "k0s-e2e"
BASEFS = Path(__file__).resolve().parents[4] / "basefs" / "k0s"
IMAGE = "sealer.test/k0s:v1.29.4-k0s.0"
IMAGE_NEXT = "sealer.test/k0s:v1.30.0-k0s.0"
STATE = "/var/lib/k0s/etcd/cluster.json"
USER_CONFIG = {
    "apiVersion": "k0s.k0sproject.io/v1beta1",
    "kind": "ClusterConfig",
    "metadata": {"name": "e2e"},
    "spec": {"network": {"podCIDR": "10.250.0.0/16"}, "api": {"sans": ["k0s.example.test"]}},
}

clusterfile = partial(_runtime_lab.make_clusterfile, NAME, documents=[USER_CONFIG])


def node_config(master: TestHost, worker: TestHost) -> dict[str, dict[str, Any]]:
    """The worker's labels and taint, put on its node by the node-config phase; a controller's
    label, which cannot be (with workers, k0s controllers are no nodes): a warning says so."""
    return {
        master.address: {"labels": {"zone": "a"}},
        worker.address: {"labels": {"disk": "ssd"}, "taints": ["dedicated=db:NoExecute"]},
    }


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Hosts 0-2 the controllers, 3 the worker."""
    base = tmp_path_factory.mktemp("k0s-e2e")
    store = Store.open(base / "store")
    _runtime_lab.build_releases("k0s", store, base, IMAGE, IMAGE_NEXT)
    with _runtime_lab.open_lab(host_lab, store, base / "state", 4) as made:
        yield made


# --- reading the hosts -----------------------------------------------------------------------------


def etcd(lab: Lab) -> dict[str, Any]:
    """master0's cluster state (the stand-in's etcd): members, nodes, tokens, events."""
    return _runtime_lab.read_state(lab, STATE)


def member_list(host: TestHost) -> dict[str, str]:
    """`k0s etcd member-list` on `host`: name -> peer URL."""
    members: dict[str, str] = json.loads(host.run("k0s etcd member-list").stdout)["members"]
    return members


def kubectl_nodes(host: TestHost) -> dict[str, list[str]]:
    out = host.run("k0s kubectl get nodes -o wide --no-headers").stdout
    return {line.split()[0]: line.split() for line in out.splitlines()}


def events(lab: Lab, reason: str | None = None) -> list[dict[str, Any]]:
    return [e for e in etcd(lab)["events"] if reason is None or e["reason"] == reason]


def decode(token: str) -> dict[str, Any]:
    """A k0s join token: base64 of a gzipped kubeconfig."""
    doc: dict[str, Any] = yaml.safe_load(gzip.decompress(base64.b64decode(token)))
    return doc


def token_used(lab: Lab, host: TestHost) -> str:
    """The minted token `host`'s last join used (the stand-in records its id on the node)."""
    token_id = etcd(lab)["nodes"][host.hostname]["token_id"]
    (secret,) = [str(t) for t in etcd(lab)["tokens"] if t.split(".")[0] == token_id]
    return secret


def minted_for(lab: Lab, host: TestHost, since: float) -> str:
    """The token `host`'s last join used, checked to be minted (for 1h) at or after `since`."""
    secret = token_used(lab, host)
    expires = etcd(lab)["tokens"][secret]["expires"]
    assert since + 3600 <= expires <= time.time() + 3600, (host.hostname, since, expires)
    return secret


def expire_tokens(lab: Lab) -> None:
    """An hour passes, as far as join tokens go: every token minted so far has expired."""
    with core.StateFile(lab.master0.path(STATE)).edit() as state:
        for token in state["tokens"].values():
            token["expires"] = time.time() - 1


def k0s_pids(host: TestHost) -> list[int]:
    return _runtime_lab.find_pids(host, "/usr/local/bin/k0s")


def assert_reset(lab: Lab, host: TestHost) -> None:
    for path in ("/usr/local/bin/k0s", "/etc/k0s", "/etc/systemd/system/k0scontroller.service",
                 "/etc/systemd/system/k0sworker.service", "/run/k0s", f"/var/lib/sealer/data/{NAME}"):  # fmt: skip
        assert not host.path(path).exists(), f"{host.hostname}: {path} is left"
    assert list(host.path("/var/lib/k0s").iterdir()) == []  # k0s reset emptied the data dir
    assert k0s_pids(host) == []
    assert host.run("ss -Hltn 'sport = :10250'").stdout.strip() == ""
    assert host.path("/etc/hosts").read_text() == lab.etc_hosts[host.address]  # clean.sh undid init.sh


# --- the cluster's life ----------------------------------------------------------------------------


def test_run_three_controllers_and_a_worker(lab: Lab) -> None:
    h = lab.hosts
    masters, worker = h[0:3], h[3]
    m0 = lab.master0.address
    said: list[RunEvent] = []
    wanted = parse_clusterfile(clusterfile(IMAGE, masters, [worker], h, node_config(masters[1], worker)))
    outcome = actions.run(wanted, replace(lab.settings(), on_event=said.append))
    assert {s.host for s in outcome.hosts} == {x.address for x in h}

    # /etc/k0s/k0s.yaml on each controller: the image's defaults with the Clusterfile's
    # ClusterConfig merged over them, the host's address, the required SANs; 0600
    for m in masters:
        path = m.path("/etc/k0s/k0s.yaml")
        assert path.stat().st_mode & 0o777 == 0o600
        config = yaml.safe_load(path.read_text())
        assert config["metadata"] == {"name": "e2e"}
        assert config["spec"]["network"] == {
            "provider": "kuberouter",
            "podCIDR": "10.250.0.0/16",
            "serviceCIDR": "10.96.0.0/12",
            # three controllers: each worker's k0s balances over all of them
            "nodeLocalLoadBalancing": {"enabled": True, "type": "EnvoyProxy"},
        }
        assert config["spec"]["images"] == {"default_pull_policy": "Never"}
        assert config["spec"]["api"] == {
            "sans": [
                "k0s.example.test",
                "apiserver.cluster.local",
                *(x.address for x in masters),
                "127.0.0.1",
            ],
            "address": m.address,
            # the image ships statics/audit-policy.yml: k0s's kube-apiserver audits with it
            "extraArgs": {
                "audit-policy-file": "/etc/k0s/audit-policy.yml",
                "audit-log-path": "/var/log/kubernetes/audit.log",
                "audit-log-maxage": "7",
                "audit-log-maxbackup": "10",
                "audit-log-maxsize": "100",
            },
        }
        policy = m.path("/etc/k0s/audit-policy.yml")  # the stand-in controller refuses to start without it
        assert policy.read_text() == (BASEFS / "statics" / "audit-policy.yml").read_text()
        assert policy.stat().st_mode & 0o777 == 0o600
        sans = m.path("/var/lib/k0s/pki/server.crt").read_text()
        assert "DNS:apiserver.cluster.local" in sans and "DNS:k0s.example.test" in sans
    assert not worker.path("/etc/k0s/k0s.yaml").exists()  # a worker takes its config from the API

    # the binary and the image bundle on every host
    for x in h:
        assert x.run("/usr/local/bin/k0s version").stdout.strip() == "v1.29.4+k0s.0"
        assert [p.name for p in x.path("/var/lib/k0s/images").iterdir()] == [
            f"k0s-airgap-bundle-v1.29.4+k0s.0-{os.uname().machine.replace('x86_64', 'amd64')}"
        ]

    # the units k0s install wrote: master0 without a token, with workers present no --enable-worker
    unit = lab.master0.path("/etc/systemd/system/k0scontroller.service").read_text()
    assert (
        "ExecStart=/usr/local/bin/k0s controller --data-dir=/var/lib/k0s --config=/etc/k0s/k0s.yaml\n" in unit
    )
    for m in masters[1:]:
        unit = m.path("/etc/systemd/system/k0scontroller.service").read_text()
        assert "--token-file=/etc/k0s/controller-token" in unit and "--enable-worker" not in unit
    unit = worker.path("/etc/systemd/system/k0sworker.service").read_text()
    assert f"ExecStart=/usr/local/bin/k0s worker --data-dir=/var/lib/k0s --token-file=/etc/k0s/worker-token --kubelet-extra-args=--node-ip={worker.address}\n" in unit  # fmt: skip

    # the tokens used: minted on master0 just before each join, one per controller, of the
    # joining role, expiring (--expiry=1h), naming master0's join API (controllers) or API server
    # (the worker); the stand-in's node table says which token each join used. On the joining
    # host the unit's 0600 token file holds no token after the join.
    used = []
    for x, role, port in [
        (masters[1], "controller", 9443),
        (masters[2], "controller", 9443),
        (worker, "worker", 6443),
    ]:
        path = x.path(f"/etc/k0s/{role}-token")
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_text() == TOKEN_SCRUBBED + "\n"
        secret = token_used(lab, x)
        assert etcd(lab)["tokens"][secret]["allows"] == [role]
        assert etcd(lab)["tokens"][secret]["expires"] is not None
        assert etcd(lab)["nodes"][x.hostname]["joined_via"] == f"https://{m0}:{port}"
        used.append(secret)
    assert len(set(used)) == 3
    # in order: a token, then the join it was minted for
    order = [(e["reason"], e["name"]) for e in events(lab) if e["reason"] in ("TokenCreated", "Joined")]
    assert order == [
        ("TokenCreated", "controller"),
        ("Joined", masters[1].hostname),
        ("TokenCreated", "controller"),
        ("Joined", masters[2].hostname),
        ("TokenCreated", "worker"),
        ("Joined", worker.hostname),
    ]

    # the etcd member list (from any controller), the nodes (controllers are none: workers exist)
    expected = {m.hostname: f"https://{m.address}:2380" for m in masters}
    assert member_list(lab.master0) == expected and member_list(masters[2]) == expected
    nodes = kubectl_nodes(lab.master0)
    assert list(nodes) == [worker.hostname]
    _, status, roles, _, version, ip, *_ = nodes[worker.hostname]
    assert (status, roles, version, ip) == ("Ready", "<none>", "v1.29.4+k0s", worker.address)
    for m in masters:
        assert "Role: controller\nWorkloads: false\n" in m.run("k0s status").stdout
        assert m.run("systemctl is-active k0scontroller").stdout.strip() == "active"
    assert "Role: worker\n" in worker.run("k0s status").stdout

    # the worker's Clusterfile labels and taint are on its node; the controller's label is not
    # (it has no node: no step), and the run warned about it
    state = etcd(lab)["nodes"]
    assert state[worker.hostname]["labels"] == {"disk": "ssd"}
    assert state[worker.hostname]["taints"] == [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]
    assert all("labels" not in state[m.hostname] and "taints" not in state[m.hostname] for m in masters)
    assert (
        Notice(
            f"warning: masters {masters[1].address} have labels or taints, but k0s controllers are no "
            "Kubernetes nodes in a cluster with workers: they are not applied"
        )
        in said
    )
    # the stand-in's kubectl: a controller is no node to label; a taint needs a known effect
    proc = lab.master0.run(f"k0s kubectl label node {masters[1].hostname} zone=a", check=False)
    assert proc.returncode == 1 and f'nodes "{masters[1].hostname}" not found' in proc.stderr
    proc = lab.master0.run(f"k0s kubectl taint node {worker.hostname} dedicated=db", check=False)
    assert proc.returncode == 1 and "invalid taint spec: dedicated=db" in proc.stderr

    # init.sh's tagged /etc/hosts block: a controller resolves the endpoint to itself, a node to master0
    for x in h:
        target = x.address if x in masters else m0
        assert f"\n{target} apiserver.cluster.local\n" in x.path("/etc/hosts").read_text()

    # the saved kubeconfig names the stable endpoint
    kubeconfig = ClusterState(NAME, lab.home).kubeconfig_path
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    text = kubeconfig.read_text()
    assert "server: https://apiserver.cluster.local:6443" in text and m0 not in text


def test_upgrade_then_a_downgrade_is_refused(lab: Lab, tmp_path: Path) -> None:
    h = lab.hosts
    worker = h[3]
    before = len(events(lab))
    actions.upgrade(NAME, IMAGE_NEXT, lab.settings())
    for x in h:
        assert x.run("/usr/local/bin/k0s version").stdout.strip() == "v1.30.0+k0s.0"
        assert "Version: v1.30.0+k0s.0\n" in x.run("k0s status").stdout
        bundles = [p.name for p in x.path("/var/lib/k0s/images").iterdir()]
        assert len(bundles) == 1 and "v1.30.0+k0s.0" in bundles[0]  # the old bundle went
    nodes = kubectl_nodes(lab.master0)
    assert nodes[worker.hostname][1:5:3] == ["Ready", "v1.30.0+k0s"]  # uncordoned, new version
    # the worker was drained before its restart and uncordoned after it
    mine = [(e["reason"], e.get("unschedulable"), e.get("version")) for e in events(lab)[before:] if e["name"] == worker.hostname]  # fmt: skip
    assert mine == [
        ("Patched", True, None),
        ("Patched", None, None),  # evicted
        ("Patched", None, "v1.30.0+k0s"),
        ("Patched", False, None),
    ]
    assert list(member_list(lab.master0)) == [m.hostname for m in h[0:3]]

    # a downgrade is refused on this machine, from the images' KUBEVERSIONs: nothing changes
    meta = ClusterState(NAME, lab.home).load_meta()
    with pytest.raises(SealerError) as info:
        actions.upgrade(NAME, IMAGE, lab.settings())
    assert str(info.value) == (
        "the cluster runs v1.30.0, the image is v1.29.4: a downgrade or a major change is not supported"
    )
    assert ClusterState(NAME, lab.home).load_meta() == meta
    # an image that says v1.30.1 but carries the v1.29.4 binary: the hosts' own check refuses
    mislabelled = "sealer.test/k0s:v1.30.1-mislabelled"
    build_basefs(
        "k0s", make_bin_dir("k0s", tmp_path / "bin", "v1.29.4"), lab.store, mislabelled, version="v1.30.1"
    )
    with pytest.raises(SealerError):
        actions.upgrade(NAME, mislabelled, lab.settings())
    log = (ClusterState(NAME, lab.home).logs_dir / f"{lab.master0.address}.log").read_text()
    assert "k0s 1.30.0 -> 1.29.4: a downgrade or a major change is not supported" in log
    assert lab.master0.run("/usr/local/bin/k0s version").stdout.strip() == "v1.30.0+k0s.0"
    # the failed upgrade goes back to the image the cluster ran whole; the state is whole again
    actions.upgrade(NAME, IMAGE_NEXT, lab.settings())
    meta = ClusterState(NAME, lab.home).load_meta()
    assert meta is not None and meta.complete and meta.image == IMAGE_NEXT


def test_delete_the_worker(lab: Lab) -> None:
    worker = lab.hosts[3]
    actions.delete(NAME, lab.settings(), nodes=[worker.address])
    mine = [(e["reason"], e.get("unschedulable")) for e in events(lab) if e["name"] == worker.hostname]
    assert mine[-3:] == [("Patched", True), ("Patched", None), ("Deleted", None)]
    assert kubectl_nodes(lab.master0) == {}
    assert_reset(lab, worker)
    saved = ClusterState(NAME, lab.home).load_cluster()
    assert saved is not None and worker.address not in saved.ips


def test_wrong_tokens_are_refused(lab: Lab) -> None:
    """The stand-in checks a join token against master0's API over the network: on the deleted
    worker (a clean host again), a worker daemon started by hand with bad tokens never joins."""
    worker, m0 = lab.hosts[3], lab.master0
    (bundle,) = m0.path("/var/lib/k0s/images").iterdir()
    images = worker.path("/var/lib/k0s/images")
    images.mkdir()
    (images / bundle.name).write_bytes(bundle.read_bytes())
    binary = worker.path("/root/k0s")  # the reset removed the worker's own
    binary.write_bytes(m0.path("/usr/local/bin/k0s").read_bytes())
    binary.chmod(0o755)
    good = m0.run("k0s token create --role=worker --expiry=1h").stdout.strip()
    doc = decode(good)
    doc["users"][0]["user"]["token"] = "abcdef.0123456789abcdef"
    forged = base64.b64encode(gzip.compress(yaml.safe_dump(doc).encode())).decode()
    expired = m0.run("k0s token create --role=worker --expiry=1ms").stdout.strip()
    controller = m0.run("k0s token create --role=controller --expiry=1h").stdout.strip()
    doc = decode(controller)
    doc["users"][0]["name"] = "kubelet-bootstrap"  # a controller token dressed as a worker's
    relabelled = base64.b64encode(gzip.compress(yaml.safe_dump(doc).encode())).decode()
    cases = {
        forged: "token is not valid (unknown token)",
        expired: "token is not valid (expired)",
        controller: "is a controller-bootstrap token, not a worker token",
        relabelled: "token is not valid for a worker join",
        "not-a-token": "not a k0s token",
    }
    try:
        for token, message in cases.items():
            worker.path("/root/bad-token").write_text(token + "\n")
            proc = worker.run("/root/k0s worker --token-file /root/bad-token", check=False, timeout_s=20)
            assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert kubectl_nodes(m0) == {}  # nothing joined
        assert list(worker.path("/var/lib/k0s").iterdir()) == [images]  # nothing written
    finally:
        worker.path("/root/bad-token").unlink(missing_ok=True)
        binary.unlink()
        (images / bundle.name).unlink()
        images.rmdir()
    assert_reset(lab, worker)


def test_delete_a_controller_leaves_etcd_first(lab: Lab) -> None:
    leaving = lab.hosts[2]
    actions.delete(NAME, lab.settings(), masters=[leaving.address])
    assert list(member_list(lab.master0)) == [m.hostname for m in lab.hosts[0:2]]
    assert events(lab, "MemberRemoved")[-1]["name"] == leaving.hostname
    assert (
        json.loads(lab.master0.path(STATE).read_text())["secrets"][f"controlnode/{leaving.hostname}"]["value"]
        == "deleted"
    )
    assert_reset(lab, leaving)


def test_delete_all_leaves_every_host_as_it_was(lab: Lab) -> None:
    outcome = actions.delete(NAME, lab.settings(), all_=True)
    assert outcome.message == f"cluster {NAME} deleted"
    for host in lab.hosts:
        assert_reset(lab, host)
    assert not ClusterState(NAME, lab.home).dir.exists()


def test_joins_that_died_half_way_finish_on_the_next_runs(lab: Lab) -> None:
    """A fresh cluster whose joins die for real (the stand-in's fault points): the third
    controller's daemon dies after the join API added its etcd member, and, on the next run, the
    worker's after the cluster accepted it. Between runs every token expires (an hour passes).
    Each re-run of the same `sealer run` finishes what is left: master0 removes the member that
    never started and mints a new token, the host replaces the unit the dead attempt left and
    joins with that token; the last run leaves the cluster whole."""
    h = lab.hosts
    masters, worker = h[0:3], h[3]
    m0 = lab.master0
    cluster = parse_clusterfile(
        clusterfile(IMAGE, masters, [worker], h).replace(f"name: {NAME}", "name: k0s-resume")
    )
    url = {m.hostname: f"https://{m.address}:2380" for m in masters}
    faults = [(masters[2], "controller-member-added"), (worker, "worker-joined")]
    try:
        for host, point in faults:
            host.path("/run/standin-fault").mkdir(exist_ok=True)
            host.path(f"/run/standin-fault/{point}").touch()

        # 1: the third controller dies half-way; its etcd member was added and never started
        with pytest.raises(HostError) as failed:
            actions.run(cluster, lab.settings())
        assert (failed.value.host, failed.value.step) == (masters[2].address, "k0s-join")
        assert (
            "fault injected at controller-member-added"
            in masters[2].path("/run/standin-systemd/k0scontroller.service.log").read_text()
        )
        assert member_list(m0) == {
            **{m.hostname: url[m.hostname] for m in masters[:2]},
            "": url[masters[2].hostname],
        }
        assert masters[2].path("/etc/systemd/system/k0scontroller.service").exists()  # what `install` refuses
        assert masters[2].path("/etc/k0s/controller-token").read_text() == TOKEN_SCRUBBED + "\n"
        dead = {masters[2].hostname: token_used(lab, masters[2])}
        expire_tokens(lab)

        # 2: the third controller finishes; the worker dies after the cluster accepted it
        second = time.time()
        with pytest.raises(HostError) as failed:
            actions.run(cluster, lab.settings())
        assert (failed.value.host, failed.value.step) == (worker.address, "k0s-join")
        assert member_list(m0) == url
        assert (
            worker.path("/var/lib/k0s/pki/ca.crt").exists()
            and not worker.path("/var/lib/k0s/kubelet.conf").exists()
        )
        assert worker.path("/etc/k0s/worker-token").read_text() == TOKEN_SCRUBBED + "\n"
        dead[worker.hostname] = token_used(lab, worker)
        joined = {masters[2].hostname: minted_for(lab, masters[2], since=second)}
        expire_tokens(lab)

        # 3: the worker finishes, and the cluster is whole
        third = time.time()
        actions.run(cluster, lab.settings())
    finally:
        for host, _ in faults:
            for marker in host.path("/run/standin-fault").glob("*"):
                marker.unlink()
            host.path("/run/standin-fault").rmdir()
    assert list(member_list(m0)) == [m.hostname for m in masters]
    nodes = kubectl_nodes(m0)
    assert list(nodes) == [worker.hostname] and nodes[worker.hostname][1] == "Ready"
    for m in masters:
        assert m.run("systemctl is-active k0scontroller").stdout.strip() == "active"
    assert "Role: worker\n" in worker.run("k0s status").stdout
    # each finished join used a token minted in its own run, not the one its dead join used
    joined[worker.hostname] = minted_for(lab, worker, since=third)
    assert all(joined[name] != dead[name] for name in dead)
    # in order: the dead join, the removal of its member, the join that finished
    order = [(e["reason"], e["name"]) for e in events(lab) if e["name"] == masters[2].hostname]
    assert order[:3] == [
        ("Joined", masters[2].hostname),
        ("MemberRemoved", masters[2].hostname),
        ("Joined", masters[2].hostname),
    ]
    assert [e["reason"] for e in events(lab) if e["name"] == worker.hostname][:2] == ["Joined", "Joined"]
    for x, role in ((masters[1], "controller"), (masters[2], "controller"), (worker, "worker")):
        assert x.path(f"/etc/k0s/{role}-token").read_text() == TOKEN_SCRUBBED + "\n"

    actions.delete("k0s-resume", lab.settings(), all_=True)
    for host in h:
        assert_reset(lab, host)


def test_a_lone_controller_runs_the_workloads(lab: Lab) -> None:
    """A cluster without nodes: the controller is installed with --enable-worker --no-taints,
    so it is a node that can schedule; the image bundle is imported there."""
    solo = lab.hosts[3]
    text = clusterfile(IMAGE, [solo], [], lab.hosts).replace(f"name: {NAME}", "name: k0s-solo")
    actions.run(parse_clusterfile(text), lab.settings())
    unit = solo.path("/etc/systemd/system/k0scontroller.service").read_text()
    assert f"--enable-worker=true --no-taints=true --kubelet-extra-args=--node-ip={solo.address}\n" in unit
    assert "Role: controller+worker\nWorkloads: true\n" in solo.run("k0s status").stdout
    _, status, roles, _, version, ip, *_ = kubectl_nodes(solo)[solo.hostname]
    assert (status, roles, version, ip) == ("Ready", "control-plane", "v1.29.4+k0s", solo.address)
    assert solo.run("ss -Hltn 'sport = :10250'").stdout.strip()  # its kubelet
    assert (
        "server: https://apiserver.cluster.local:6443"
        in ClusterState("k0s-solo", lab.home).kubeconfig_path.read_text()
    )
    actions.delete("k0s-solo", lab.settings(), all_=True)
    assert_reset(lab, solo)
