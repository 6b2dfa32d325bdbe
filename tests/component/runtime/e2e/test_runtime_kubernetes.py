"""End to end: the kubeadm basefs image (basefs/kubernetes, built from the stand-in upstream
files of tests/standins/kubernetes.py) run by sealer on fixture hosts with the kubernetes
plugin, over SSH.

One cluster's life, test after test on one set of hosts and one state home: two masters and a
worker; the worker deleted (drained, reset, node deleted); an upgrade of what is left; the second
master deleted (its etcd member removed by its own `kubeadm reset`); then `delete --all` leaves
every host as it was. Then a new cluster whose `sealer run` is broken half-way again and again
(kubeadm killed during init and during joins, by the stand-in's fault points) and finished each
time by running it again. What is checked is what the hosts hold afterwards - kubeadm's files,
the cluster state on master0 (nodes, etcd members, bootstrap tokens, uploaded certificates), the
static pods and services, /etc/hosts - read straight from the hosts, never what sealer says.
"""

from __future__ import annotations

import csv
import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import HostError, SealerError
from builder.runtime import actions
from builder.runtime.actions import cert
from builder.runtime.cluster import Cluster
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.runner import RunOptions
from builder.runtime.state import ClusterState
from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.component.runtime.e2e import _runtime_lab
from tests.hosts import HostLab, HostSet, TestHost
from tests.standins import kubernetes as standin
from tests.standins import make_bin_dir
from tests.validate import validate_image

BASEFS = Path(__file__).resolve().parents[4] / "basefs" / "kubernetes"

NAME = "kubeadm-e2e"
IMAGE = "sealer.test/kubernetes:v1.30.14"
IMAGE_NEXT = "sealer.test/kubernetes:v1.31.6"
STATE = "/var/lib/etcd/member/standin-state.json"
ENDPOINT = "https://apiserver.cluster.local:6443"
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
# a Clusterfile kubeadm document, merged over the image's etc/kubeadm.yaml
KUBEADM_CONFIG = {
    "apiVersion": "kubeadm.k8s.io/v1beta3",
    "kind": "ClusterConfiguration",
    "networking": {"podSubnet": "10.244.0.0/16"},
}

# the kubelet notices static pod manifests come and go within 1s (`sealer cert` waits that long)
KUBELET_CONFIG = {
    "apiVersion": "kubelet.config.k8s.io/v1beta1",
    "kind": "KubeletConfiguration",
    "fileCheckFrequency": "1s",
}

clusterfile = partial(_runtime_lab.make_clusterfile, NAME, documents=[KUBEADM_CONFIG, KUBELET_CONFIG])


@dataclass
class Lab(_runtime_lab.Lab):
    """hosts: 0 master0, 1 the second master, 2 the worker."""

    spare: TestHost  # a second worker, for the last test only
    ip_forward: dict[str, str]  # each host's net.ipv4.ip_forward before sealer touched it


def node_config(m1: TestHost, w1: TestHost) -> dict[str, dict[str, Any]]:
    """The second master gives up kubeadm's control-plane taint; the worker gets labels and a
    taint: put on their nodes by the node-config phase, from master0, after the joins."""
    return {
        m1.address: {"taints": ["node-role.kubernetes.io/control-plane:NoSchedule-"]},
        w1.address: {
            "labels": {"disk": "ssd", "sealer.io/tier": "db"},
            "taints": ["dedicated=db:NoSchedule"],
        },
    }


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("kubeadm-e2e")
    store = Store.open(base / "store")
    bin_dir = make_bin_dir("kubernetes", base / "bin", "v1.30.14")
    build_basefs("kubernetes", bin_dir, store, IMAGE, version="v1.30.14")
    validate_image(store, IMAGE)
    with _runtime_lab.open_lab(host_lab, store, base / "state", 4) as made:
        forward = {h.address: h.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() for h in made.hosts}
        hosts = HostSet(made.hosts.hosts[:3], made.hosts.client_key, made.hosts.known_hosts)
        yield Lab(made.store, made.home, hosts, made.etc_hosts, made.hosts[3], forward)


# --- reading the hosts -----------------------------------------------------------------------------

LB_CONFIG = "/etc/sealer/apiserver-lb/haproxy.cfg"
LB_SOCKET = "/run/sealer-apiserver-lb/admin.sock"


def lb_servers(host: TestHost) -> dict[str, str]:
    """What the running haproxy on `host` balances over, asked through its runtime API (`show
    stat`): backend server address -> its health-check status (UP, DOWN, ...)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(host.path(LB_SOCKET)))
        sock.sendall(b"show stat\n")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    rows = list(csv.reader(out.decode().lstrip("# ").splitlines()))
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    return {
        r[col["addr"]].rsplit(":", 1)[0]: r[col["status"]]
        for r in body
        if r and r[col["pxname"]] == "apiserver" and r[col["svname"]] not in ("FRONTEND", "BACKEND")
    }


def lb_pid(host: TestHost) -> int | None:
    """The main process of the worker's haproxy unit, as the systemctl stand-in recorded it."""
    record = json.loads(host.path("/run/standin-systemd/sealer-apiserver-lb.service.json").read_text())
    pid = record.get("pid")
    return int(pid) if pid else None


def two_up(a: TestHost, b: TestHost) -> dict[str, str]:
    return {a.address: "UP", b.address: "UP"}


def configured_backends(host: TestHost) -> list[str]:
    """The masters the worker's haproxy.cfg names."""
    text = host.path(LB_CONFIG).read_text()
    return re.findall(r"^\s+server \S+ ([\d.]+):6443$", text, re.M)


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout_s:g}s: {what}"
        time.sleep(0.2)


def cluster_state(lab: Lab) -> dict[str, Any]:
    """The stand-in etcd on master0: nodes, members, tokens, secrets, events."""
    return _runtime_lab.read_state(lab, STATE)


def members(lab: Lab) -> list[str]:
    return [m["name"] for m in sorted(cluster_state(lab)["members"].values(), key=lambda m: m["seq"])]


def kubectl_nodes(host: TestHost) -> dict[str, list[str]]:
    """`kubectl get nodes -o wide --no-headers` on `host`, with its admin kubeconfig: name -> columns."""
    out = host.run(f"{KUBECTL} get nodes -o wide --no-headers").stdout
    return {line.split()[0]: line.split() for line in out.splitlines()}


def sans(host: TestHost) -> str:
    cert = host.path("/etc/kubernetes/pki/apiserver.crt")
    return subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def pods(host: TestHost) -> dict[str, str]:
    """The static pods the kubelet runs on `host`: name -> image."""
    out = {}
    for path in host.path("/run/standin-kubelet/pods").glob("*.json"):
        record = json.loads(path.read_text())
        if standin.pod_alive(record):
            out[record["name"]] = record["image"]
    return out


def assert_clean(lab: Lab, host: TestHost) -> None:
    for path in ("/usr/local/bin/kubeadm", "/usr/local/bin/kubelet", "/usr/local/bin/kubectl",
                 "/usr/local/bin/containerd", "/usr/local/bin/ctr", "/usr/local/bin/crictl", "/usr/local/bin/runc",
                 "/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf", "/etc/kubernetes/pki",
                 "/etc/kubernetes/kubeadm.yaml", "/etc/kubernetes/kubeadm-join.yaml",
                 "/etc/systemd/system/kubelet.service", "/etc/systemd/system/kubelet.service.d",
                 "/etc/systemd/system/containerd.service", "/etc/containerd", "/etc/crictl.yaml",
                 "/etc/sysctl.d/99-sealer-kubernetes.conf", "/etc/modules-load.d/sealer-kubernetes.conf",
                 "/var/lib/sealer/kubernetes-host", "/var/lib/sealer/kubernetes-registry",
                 "/var/lib/kubelet/config.yaml", "/root/.kube/config", f"/var/lib/sealer/data/{NAME}",
                 "/etc/systemd/system/sealer-apiserver-lb.service", "/etc/sealer", "/run/sealer-apiserver-lb"):  # fmt: skip
        assert not host.path(path).exists(), f"{host.hostname}: {path} is left"
    assert list(host.path("/var/lib/etcd").iterdir()) == []
    assert pods(host) == {}
    for service in ("kubelet", "containerd", "sealer-apiserver-lb"):
        assert host.run(f"systemctl is-active {service}", check=False).stdout.strip() != "active"
    assert host.path("/etc/hosts").read_text() == lab.etc_hosts[host.address]  # clean.sh undid init.sh
    assert host.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == lab.ip_forward[host.address]


# --- the cluster's life ----------------------------------------------------------------------------


def test_run_two_masters_and_a_worker(lab: Lab) -> None:
    m0, m1, w1 = lab.hosts
    cluster = parse_clusterfile(clusterfile(IMAGE, [m0, m1], [w1], lab.hosts, node_config(m1, w1)))
    started = time.monotonic()
    actions.run(cluster, lab.settings())
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"run took {elapsed:.1f}s"

    # the stable endpoint, through init.sh's tagged block: each master its own API server (the
    # second one re-pointed at itself once joined), the worker its local haproxy on 127.0.0.1
    for host, target in ((m0, m0.address), (m1, m1.address), (w1, "127.0.0.1")):
        hosts_file = host.path("/etc/hosts").read_text()
        assert (
            f"# BEGIN sealer kubernetes: apiserver.cluster.local\n{target} apiserver.cluster.local\n"
            in hosts_file
        ), host.hostname
    assert w1.run("systemctl is-active sealer-apiserver-lb").stdout.strip() == "active"
    assert configured_backends(w1) == [m0.address, m1.address]
    wait_for(
        "both masters UP in the worker's haproxy",
        lambda: lb_servers(w1) == two_up(m0, m1),
    )
    assert not m0.path(LB_CONFIG).exists() and not m1.path(LB_CONFIG).exists()  # workers only
    # only haproxy's master (binds, reloads) is root; the process that proxies is nobody, chrooted
    master = lb_pid(w1)
    assert master is not None
    proxies = w1.run(f"ps -o pid=,uid= --ppid {master}").stdout.split("\n")
    rows = [line.split() for line in proxies if line.strip()]
    assert rows and {uid for _, uid in rows} == {"65534"}, rows
    assert w1.run(f"readlink /proc/{rows[0][0]}/root").stdout.strip() == "/run/sealer-apiserver-lb/empty"
    for host in lab.hosts:
        assert host.run("systemctl is-active kubelet").stdout.strip() == "active"
        assert not host.path("/etc/kubernetes/kubeadm-join.yaml").exists()  # secrets gone after the join
        assert "registry.k8s.io/kube-proxy" in host.run("crictl images").stdout  # imported on every host

    # master0's kubeadm config: the image defaults, the Clusterfile's document, the host's address
    docs = {d["kind"]: d for d in yaml.safe_load_all(m0.path("/etc/kubernetes/kubeadm.yaml").read_text())}
    assert docs["InitConfiguration"]["localAPIEndpoint"]["advertiseAddress"] == m0.address
    assert docs["ClusterConfiguration"]["networking"]["podSubnet"] == "10.244.0.0/16"
    assert docs["ClusterConfiguration"]["networking"]["serviceSubnet"] == "10.96.0.0/22"
    assert docs["ClusterConfiguration"]["kubernetesVersion"] == "v1.30.14"
    # the stable endpoint and both masters are in each apiserver's certificate
    for host in (m0, m1):
        text = sans(host)
        for name in ("DNS:apiserver.cluster.local", "IP Address:127.0.0.1", f"IP Address:{m0.address}",
                     f"IP Address:{m1.address}"):  # fmt: skip
            assert name in text, f"{host.hostname}: {name} not in {text}"

    # admin.conf names the stable endpoint; the saved kubeconfig too (0600)
    assert f"server: {ENDPOINT}\n" in m0.path("/etc/kubernetes/admin.conf").read_text()
    saved = ClusterState(NAME, lab.home).kubeconfig_path
    assert saved.stat().st_mode & 0o777 == 0o600
    assert f"server: {ENDPOINT}\n" in saved.read_text()

    # the cluster: both masters are etcd members, every host a node, found by its address
    assert members(lab) == [m0.hostname, m1.hostname]
    nodes = kubectl_nodes(m0)
    assert {n: (cols[2], cols[4], cols[5]) for n, cols in nodes.items()} == {
        m0.hostname: ("control-plane", "v1.30.14", m0.address),
        m1.hostname: ("control-plane", "v1.30.14", m1.address),
        w1.hostname: ("<none>", "v1.30.14", w1.address),
    }
    assert kubectl_nodes(m1).keys() == nodes.keys()  # kubectl works on the second master too
    # the Clusterfile's labels and taints, on the nodes in the cluster state: master0 keeps
    # kubeadm's control-plane taint, the second master gave it up, the worker has its own
    state = cluster_state(lab)["nodes"]
    control_plane = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert (state[m0.hostname].get("labels"), state[m0.hostname]["taints"]) == (None, [control_plane])
    assert (state[m1.hostname].get("labels"), state[m1.hostname]["taints"]) == (None, [])
    assert state[w1.hostname]["labels"] == {"disk": "ssd", "sealer.io/tier": "db"}
    assert state[w1.hostname]["taints"] == [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
    # the stand-in's kubectl refuses what kubectl refuses: another value without --overwrite,
    # removing a taint the node does not have
    proc = m0.run(f"{KUBECTL} label node {w1.hostname} sealer.io/tier=web", check=False)
    assert proc.returncode == 1 and "'sealer.io/tier' already has a value (db)" in proc.stderr
    proc = m0.run(
        f"{KUBECTL} taint node {m1.hostname} node-role.kubernetes.io/control-plane:NoSchedule-", check=False
    )
    assert (
        proc.returncode == 1
        and 'taint "node-role.kubernetes.io/control-plane:NoSchedule" not found' in proc.stderr
    )
    assert (
        set(pods(m0))
        == set(pods(m1))
        == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    )
    assert pods(w1) == {}
    # the image's audit policy: on each master where the apiserver's volume mounts it (the
    # stand-in apiserver, like the real one, does not start without it), not on the worker
    policy = (BASEFS / "statics" / "audit-policy.yml").read_text()
    for host in (m0, m1):
        assert host.path("/etc/kubernetes/audit-policy.yml").read_text() == policy
        manifest = host.path("/etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
        assert "--audit-policy-file=/etc/kubernetes/audit-policy.yml" in manifest
    assert not w1.path("/etc/kubernetes/audit-policy.yml").exists()

    # each joined node used a token minted just before it (one hour), not init's 24 h one;
    # the second master used the certificate key of the last upload
    state = cluster_state(lab)
    tokens = {value.split(".")[0]: t for value, t in state["tokens"].items() if "." in value}
    for host in (m1, w1):
        node = state["nodes"][host.hostname]
        token = tokens[node["bootstrap_token_id"]]
        assert 0 < token["expires"] - node["joined_at"] <= 60 * 60, host.hostname
    certs = json.loads(state["secrets"]["kubeadm-certs"]["value"])
    assert state["nodes"][m1.hostname]["certificate_key_id"] == certs["key_id"]
    # the second master holds the cluster's CA (downloaded), the worker its certificate
    ca = m0.path("/etc/kubernetes/pki/ca.crt").read_text()
    assert (
        m1.path("/etc/kubernetes/pki/ca.crt").read_text()
        == ca
        == w1.path("/etc/kubernetes/pki/ca.crt").read_text()
    )
    assert (
        m1.path("/etc/kubernetes/pki/ca.key").read_text() == m0.path("/etc/kubernetes/pki/ca.key").read_text()
    )
    assert not w1.path("/etc/kubernetes/pki/ca.key").exists()


def test_cert_alt_names_on_every_master_kept_by_a_master_joined_after(lab: Lab) -> None:
    """`sealer cert --alt-names`: every master's apiserver.crt (read with openssl) gains the new
    names and keeps the old ones, the API server restarted with it; the SANs are saved, so a
    third master joined afterwards gets them too (from kubeadm-config). It stays for the next
    test, which makes it leave."""
    m0, m1, w1 = lab.hosts
    spare = lab.spare
    names = re.compile(r"(?:DNS|IP Address):[^,\s]+")
    before = {h.address: names.findall(sans(h)) for h in (m0, m1)}
    cert.cert(NAME, lab.settings(), alt_names=("api.example.com", "10.9.8.7"))
    for h in (m0, m1):
        now = names.findall(sans(h))
        assert {"DNS:api.example.com", "IP Address:10.9.8.7"} <= set(now), h.hostname
        assert set(before[h.address]) <= set(now), h.hostname
        assert h.path("/etc/kubernetes/pki/apiserver.crt.old").exists()
        assert set(pods(h)) >= {"kube-apiserver", "etcd"}  # the manifest is back, the pod runs
    meta = ClusterState(NAME, lab.home).load_meta()
    assert meta is not None and meta.cert_sans == ("api.example.com", "10.9.8.7")
    wanted = parse_clusterfile(clusterfile(IMAGE, [m0, m1, spare], [w1], lab.hosts, node_config(m1, w1)))
    actions.apply(wanted, lab.settings())
    assert {"DNS:api.example.com", "IP Address:10.9.8.7"} <= set(names.findall(sans(spare)))


def heartbeat(lab: Lab, host: TestHost) -> float:
    """When `host`'s kubelet last reported its node (the stand-in's NodeStatus heartbeat, every 5 s)."""
    return float(cluster_state(lab)["nodes"][host.hostname]["last_seen"])


def test_the_worker_reaches_the_api_through_its_haproxy_while_master0s_api_server_is_down(lab: Lab) -> None:
    """The HA endpoint, with Debian's haproxy on the worker in front of three masters' API
    servers: the master joined by the last test was added to the worker's backends (config and
    the running haproxy); with master0's kube-apiserver stopped (its manifest moved out, so its
    kubelet stops it), haproxy's HTTPS health check marks it DOWN and the worker's kubelet goes on
    reporting through 127.0.0.1:6443, as kubectl with the kubelet's own kubeconfig does; then the
    third master leaves and the worker's backends no longer name it."""
    m0, m1, w1 = lab.hosts
    spare = lab.spare
    assert configured_backends(w1) == [m0.address, m1.address, spare.address]
    three = {m0.address: "UP", m1.address: "UP", spare.address: "UP"}
    wait_for("three masters UP in the worker's haproxy", lambda: lb_servers(w1) == three)
    manifest, parked = (
        "/etc/kubernetes/manifests/kube-apiserver.yaml",
        "/etc/kubernetes/kube-apiserver.yaml.parked",
    )
    kubelet_log = w1.path("/run/standin-systemd/kubelet.service.log")
    logged = len(kubelet_log.read_text())
    m0.run(f"mv {manifest} {parked}")
    try:
        wait_for("master0's API server stopped", lambda: "kube-apiserver" not in pods(m0))
        stopped = time.time()
        assert m0.run(
            f"{KUBECTL} --server https://{m0.address}:6443 get --raw /readyz", check=False
        ).returncode
        wait_for(
            "master0 DOWN in the worker's haproxy", lambda: lb_servers(w1)[m0.address].startswith("DOWN")
        )
        wait_for("the worker's kubelet reports after master0's API server stopped",
                 lambda: heartbeat(lab, w1) > stopped + 1, timeout_s=20)  # fmt: skip
        for _ in range(6):  # round robin over three backends, twice
            out = w1.run("kubectl --kubeconfig /etc/kubernetes/kubelet.conf get nodes --no-headers").stdout
            assert w1.hostname in out
        assert "Error updating node status" not in kubelet_log.read_text()[logged:]
    finally:
        m0.run(f"mv {parked} {manifest}")
    wait_for("master0 UP again in the worker's haproxy", lambda: lb_servers(w1).get(m0.address) == "UP")

    before = lb_pid(w1)
    actions.delete(NAME, lab.settings(), masters=[spare.address])
    assert_clean(lab, spare)
    assert members(lab) == [m0.hostname, m1.hostname]
    assert configured_backends(w1) == [m0.address, m1.address]
    assert set(lb_servers(w1)) == {m0.address, m1.address}  # the running haproxy forgot it
    assert lb_pid(w1) == before  # reloaded (SIGUSR2 to its master process), not restarted

    # Restart=always: haproxy killed outright comes back under its unit, with the same backends
    w1.run(f"kill -KILL {before}")
    wait_for("haproxy started again under its unit", lambda: lb_pid(w1) not in (None, before), timeout_s=20)
    wait_for("both masters UP in the restarted haproxy", lambda: lb_servers(w1) == two_up(m0, m1))


def serial(host: TestHost) -> str:
    cert = host.path("/etc/kubernetes/pki/apiserver.crt")
    return subprocess.run(
        ["openssl", "x509", "-noout", "-serial", "-in", str(cert)], capture_output=True, text=True, check=True
    ).stdout


def test_cert_check_expiration_then_renew_keeps_the_sans(lab: Lab) -> None:
    """`--check-expiration` lists every master's certificates (kubeadm certs check-expiration);
    `--renew` signs them again (a new serial) with the same SANs, and the pods come back."""
    m0, m1, _ = lab.hosts
    report = "\n".join(cert.cert(NAME, lab.settings()).plan)
    for h in (m0, m1):
        assert f"== {h.address}" in report
    assert report.count("\napiserver ") == 2, report
    before = {h.address: (serial(h), sans(h)) for h in (m0, m1)}
    cert.cert(NAME, lab.settings(), renew=True)
    for h in (m0, m1):
        assert serial(h) != before[h.address][0] and sans(h) == before[h.address][1]
        assert set(pods(h)) >= {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"}


def test_delete_the_worker(lab: Lab) -> None:
    m0, m1, w1 = lab.hosts
    actions.delete(NAME, lab.settings(), nodes=[w1.address])
    assert w1.hostname not in kubectl_nodes(m0)  # kubectl delete node, after the reset
    events = [e for e in cluster_state(lab)["events"] if e["name"] == w1.hostname]
    # on master0: drained (cordoned, then its pods evicted: a cordon alone would not do), then
    # the node deleted - in that order
    assert [(e["reason"], {k: e[k] for k in ("unschedulable", "evicted") if k in e})
            for e in events][-3:] == [
        ("Patched", {"unschedulable": True}),
        ("Patched", {"evicted": True}),
        ("Deleted", {}),
    ]  # fmt: skip
    assert_clean(lab, w1)
    assert members(lab) == [m0.hostname, m1.hostname]


def test_an_unknown_token_and_a_wrong_ca_hash_are_refused(lab: Lab) -> None:
    """What a join's credentials are checked against, on the worker just removed: its kubeadm
    and containerd are gone, so the stand-ins run from /tmp (containerd started here, ended by
    its pid), and it dials master0 by address (in the apiserver's SANs)."""
    m0, _, w1 = lab.hosts
    for program in ("kubeadm", "containerd"):
        standin.core.write_zipapp("standins.kubernetes:main", w1.path(f"/tmp/bin/{program}"))
    pid = int(w1.run("setsid /tmp/bin/containerd >/tmp/containerd.log 2>&1 </dev/null & echo $!").stdout)
    real_hash = m0.run(
        "openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der"
        " | openssl dgst -sha256 -hex | sed 's/^.* /sha256:/'"
    ).stdout.strip()
    minted = m0.run("kubeadm token create --ttl 1m").stdout.strip()
    w1.run("sysctl -q -w net.ipv4.ip_forward=1")  # kubeadm's preflight; clean.sh had put it back
    try:
        w1.run(
            "i=0; until [ -S /run/containerd/containerd.sock ]; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.05; done"
        )
        for token, ca_hash, error in (
            (
                "abcdef.0123456789abcdef",
                real_hash,
                'token id "abcdef" is invalid for this cluster or it has expired',
            ),
            (minted, "sha256:" + "0" * 64, f'none of the public keys "{real_hash}" are pinned'),
            ("not-a-token", real_hash, 'the bootstrap token "not-a-token" was not of the form'),
        ):
            doc = {
                "apiVersion": "kubeadm.k8s.io/v1beta3",
                "kind": "JoinConfiguration",
                "discovery": {
                    "bootstrapToken": {
                        "apiServerEndpoint": f"{m0.address}:6443",
                        "token": token,
                        "caCertHashes": [ca_hash],
                    }
                },
            }
            w1.path("/tmp/join.yaml").write_text(yaml.safe_dump(doc))
            proc = w1.run("/tmp/bin/kubeadm join --config /tmp/join.yaml", check=False)
            assert proc.returncode != 0 and error in proc.stderr, proc.stderr
    finally:
        w1.run(f"sysctl -q -w net.ipv4.ip_forward={lab.ip_forward[w1.address]}")
        w1.run(f"kill {pid}; rm -f /tmp/join.yaml; rm -rf /tmp/bin /run/containerd", check=False)
    assert not w1.path("/etc/kubernetes/kubelet.conf").exists()


def test_upgrade_one_minor_version(lab: Lab, tmp_path: Path) -> None:
    m0, m1, _ = lab.hosts
    bin_dir = make_bin_dir("kubernetes", tmp_path / "bin", "v1.31.6")
    build_basefs("kubernetes", bin_dir, lab.store, IMAGE_NEXT, version="v1.31.6")
    actions.upgrade(NAME, IMAGE_NEXT, lab.settings())
    for host in (m0, m1):
        assert set(pods(host).values()) == {
            "registry.k8s.io/etcd:3.5.15-0",
            "registry.k8s.io/kube-apiserver:v1.31.6",
            "registry.k8s.io/kube-controller-manager:v1.31.6",
            "registry.k8s.io/kube-scheduler:v1.31.6",
        }
        assert host.run("kubeadm version -o short").stdout.strip() == "v1.31.6"
    nodes = kubectl_nodes(m0)
    assert [(cols[1], cols[4]) for cols in nodes.values()] == [("Ready", "v1.31.6")] * 2  # uncordoned
    cluster = json.loads(cluster_state(lab)["secrets"]["kubeadm-config"]["value"])
    assert cluster["kubernetesVersion"] == "v1.31.6"
    # drained before the kubelet was replaced, uncordoned after: master0 first, then the other
    reasons = [(e["name"], e.get("unschedulable"), e.get("evicted")) for e in cluster_state(lab)["events"]
               if e["reason"] == "Patched" and ("unschedulable" in e or "evicted" in e)]  # fmt: skip
    assert reasons[-6:] == [
        (m0.hostname, True, None),  # drained: cordoned, then its pods evicted
        (m0.hostname, None, True),
        (m0.hostname, False, False),  # uncordoned
        (m1.hostname, True, None),
        (m1.hostname, None, True),
        (m1.hostname, False, False),
    ]
    # no downgrade
    with pytest.raises(SealerError) as info:
        actions.upgrade(NAME, IMAGE, lab.settings())
    assert "a downgrade or a major change is not supported" in str(info.value)


def test_delete_the_second_master(lab: Lab) -> None:
    m0, m1, _ = lab.hosts
    actions.delete(NAME, lab.settings(), masters=[m1.address])
    assert members(lab) == [m0.hostname]  # its own kubeadm reset removed it from etcd
    assert list(kubectl_nodes(m0)) == [m0.hostname]
    assert_clean(lab, m1)


def test_delete_all_leaves_every_host_as_it_was(lab: Lab) -> None:
    actions.delete(NAME, lab.settings(), all_=True)
    for host in lab.hosts:
        assert_clean(lab, host)
    assert not ClusterState(NAME, lab.home).dir.exists()


def test_a_fresh_install_of_the_newer_release_uses_its_own_pause_image(lab: Lab) -> None:
    """kubeadm 1.31 lists pause 3.10 (1.30: 3.9): init.sh makes containerd's sandbox image the
    one the image's own kubeadm lists, or no pod could start on an air-gapped host."""
    m0 = lab.master0
    actions.run(parse_clusterfile(clusterfile(IMAGE_NEXT, [m0], [], lab.hosts)), lab.settings())
    config = m0.path("/etc/containerd/config.toml").read_text()
    assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in config
    assert [(cols[1], cols[4]) for cols in kubectl_nodes(m0).values()] == [("Ready", "v1.31.6")]
    assert "registry.k8s.io/kube-apiserver:v1.31.6" in pods(m0).values()
    actions.delete(NAME, lab.settings(), all_=True)
    assert_clean(lab, m0)


# --- a run broken half-way, and run again -----------------------------------------------------------


def break_at(host: TestHost, point: str) -> None:
    """Arm a fault point of the kubeadm stand-in on `host` (its docstring lists them)."""
    marker = host.path(f"/run/standin-fault/{point}")
    marker.parent.mkdir(exist_ok=True)
    marker.touch()


def run_dies(lab: Lab, cluster: Cluster, options: RunOptions, host: TestHost, point: str) -> None:
    """`sealer run` fails on `host`, where kubeadm was killed at `point` (the marker is used up)."""
    with pytest.raises(HostError) as info:
        actions.run(cluster, lab.settings(options))
    assert info.value.host == host.address, str(info.value)
    assert "exited 137" in str(info.value)  # the shell's status for a SIGKILLed kubeadm
    assert not host.path(f"/run/standin-fault/{point}").exists()


def token_ids(lab: Lab) -> set[str]:
    return {value.split(".")[0] for value in cluster_state(lab)["tokens"] if "." in value}


def test_a_run_killed_in_init_and_in_joins_is_finished_by_running_it_again(lab: Lab) -> None:
    """kubeadm killed (SIGKILL, no cleanup; the kubelet and static pods it started run on) during
    init with the control plane up; during the second master's join once its kubelet registered,
    the etcd member added; during a worker's join after it wrote its first files (the token in
    bootstrap-kubelet.conf); during another's after its kubelet registered. After each, the same
    `sealer run` again goes on: init and the master reset what their attempt left (the master
    deleting its still Ready Node first, which kubeadm join would refuse), the first worker
    resets too, the second is found joined. Each join uses credentials minted for its own last
    attempt. One host at a time (max_parallel 1), so which host dies in which run is fixed."""
    m0, m1, w1 = lab.hosts
    w2 = lab.spare
    cluster = parse_clusterfile(clusterfile(IMAGE, [m0, m1], [w1, w2], lab.hosts))
    serial = RunOptions(max_parallel=1)
    break_at(m0, "kubeadm-init-control-plane-up")
    break_at(m1, "kubeadm-join-registered")
    break_at(w1, "kubeadm-join-kubelet-config")

    # 1: init killed with the control plane up (what kubeadm init's preflight refuses is there)
    run_dies(lab, cluster, serial, m0, "kubeadm-init-control-plane-up")
    assert m0.path("/etc/kubernetes/admin.conf").exists() and "kube-apiserver" in pods(m0)
    first_ca = m0.path("/etc/kubernetes/pki/ca.crt").read_text()

    # 2: init reset and done again; the second master killed after its etcd member was added
    run_dies(lab, cluster, serial, m1, "kubeadm-join-registered")
    assert m0.path("/etc/kubernetes/pki/ca.crt").read_text() != first_ca  # a new cluster
    assert members(lab) == [m0.hostname, m1.hostname]
    assert kubectl_nodes(m0)[m1.hostname][1] == "Ready"  # kubeadm join refuses this name now
    before_master = token_ids(lab)
    key_before = json.loads(cluster_state(lab)["secrets"]["kubeadm-certs"]["value"])["key_id"]

    # 3: the master deletes its Node, resets (its member removed) and joins afresh; the first
    # worker killed once its CA, bootstrap kubeconfig and kubelet config were written
    run_dies(lab, cluster, serial, w1, "kubeadm-join-kubelet-config")
    state = cluster_state(lab)
    m1_events = [e["reason"] for e in state["events"] if e["name"] == m1.hostname]
    assert [r for r in m1_events if r in ("Joined", "Deleted", "MemberRemoved")] == [
        "Joined",
        "Deleted",
        "MemberRemoved",
        "Joined",
    ]
    assert members(lab) == [m0.hostname, m1.hostname]
    assert state["nodes"][m1.hostname]["bootstrap_token_id"] not in before_master
    certs = json.loads(state["secrets"]["kubeadm-certs"]["value"])
    assert state["nodes"][m1.hostname]["certificate_key_id"] == certs["key_id"] != key_before
    assert w1.path("/etc/kubernetes/bootstrap-kubelet.conf").exists()
    assert w1.hostname not in state["nodes"]
    before_worker = token_ids(lab)
    break_at(w2, "kubeadm-join-registered")  # armed now: with one host at a time, w2 did not start

    # 4: the first worker resets and joins with a new token; the second killed once registered
    run_dies(lab, cluster, serial, w2, "kubeadm-join-registered")
    state = cluster_state(lab)
    assert state["nodes"][w1.hostname]["bootstrap_token_id"] not in before_worker
    assert w2.path("/etc/kubernetes/bootstrap-kubelet.conf").exists()  # kubeadm died before removing it
    registered = state["nodes"][w2.hostname]

    # 5: the second worker is joined already: nothing but kubeadm's own clean-up
    actions.run(cluster, lab.settings(serial))
    state = cluster_state(lab)
    assert [e["reason"] for e in state["events"] if e["name"] == w2.hostname].count("Joined") == 1
    assert state["nodes"][w2.hostname]["joined_at"] == registered["joined_at"]
    assert members(lab) == [m0.hostname, m1.hostname]
    nodes = kubectl_nodes(m0)
    assert {n: (cols[1], cols[2]) for n, cols in nodes.items()} == {
        m0.hostname: ("Ready", "control-plane"),
        m1.hostname: ("Ready", "control-plane"),
        w1.hostname: ("Ready", "<none>"),
        w2.hostname: ("Ready", "<none>"),
    }
    assert set(pods(m1)) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    ca = m0.path("/etc/kubernetes/pki/ca.crt").read_text()
    for host in (m0, m1, w1, w2):
        assert host.path("/etc/kubernetes/pki/ca.crt").read_text() == ca, host.hostname
        assert host.run("systemctl is-active kubelet").stdout.strip() == "active"
        for leftover in ("/etc/kubernetes/kubeadm-join.yaml", "/etc/kubernetes/bootstrap-kubelet.conf"):
            assert not host.path(leftover).exists(), f"{host.hostname}: {leftover}"
    assert f"server: {ENDPOINT}\n" in ClusterState(NAME, lab.home).kubeconfig_path.read_text()

    # a cluster finished that way leaves as cleanly as any
    actions.delete(NAME, lab.settings(), all_=True)
    for host in (m0, m1, w1, w2):
        assert_clean(lab, host)
