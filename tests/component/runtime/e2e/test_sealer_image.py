"""End to end: an image of sealer's own contract (tests/sealer_basefs, with the kubeadm stand-ins)
run by the kubernetes runtime in its sealer mode on test hosts over SSH: run one master, join a
master and a worker, upgrade them all to the next image, delete the worker, delete the cluster.

What is checked is what the hosts hold: containerd installed by the image's containerd.sh into
/usr/bin (the test host's overlay), init-kube.sh's binaries, kubelet unit and sysctl file, the
kube images pulled by containerd from the cluster registry that serves the image's registry/
(sea.hub:5000, what RegistryURL names), master0's kubeadm.yaml rendered from etc/kubeadm.yml.tmpl
with sealer's env knobs, the image's Plugin hook, init-registry.sh never called; then
uninstall-containerd.sh and the removal of init-kube.sh's files on delete."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from builder.build.bundle.distribution import write_distribution
from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.runtime import actions
from builder.runtime.cluster import HostSpec, Role
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.state import ClusterState
from builder.store.layout import Store
from tests.component.runtime.e2e import _runtime_lab
from tests.conftest import SealerRunner
from tests.hosts import HostLab, TestHost
from tests.standins import core
from tests.standins import kubernetes as standin
from tests.unit.store._tiny import add_image
from tests.validate import validate_image

pytestmark = pytest.mark.component

CONTEXT = Path(__file__).resolve().parents[3] / "sealer_basefs"
NAME = "sealer-basefs-e2e"
IMAGE = "sealer.test/sealer-basefs:v1.30.14"
IMAGE_NEXT = "sealer.test/sealer-basefs:v1.31.6"
VERSION = "v1.30.14"
ENV = {"PodCIDR": "10.244.0.0/16", "SvcCIDR": "10.97.0.0/16", "CertSANs": "api.sealer.test"}
INIT_KUBE_FILES = ("/usr/bin/kubeadm", "/usr/bin/kubelet", "/usr/bin/kubectl", "/etc/sysctl.d/k8s.conf",
                   "/etc/systemd/system/kubelet.service", "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf")  # fmt: skip
CONTAINERD_FILES = ("/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/crictl", "/usr/bin/runc",
                    "/etc/containerd/config.toml", "/etc/systemd/system/containerd.service")  # fmt: skip


def make_context(out: Path, store: Store, version: str = VERSION) -> Path:
    """tests/sealer_basefs with the stand-in binaries of `version`, containerd's tarball and
    registry/ (and its kubeadm.yml.tmpl naming `version`)."""
    ctx = out / "context"
    shutil.copytree(CONTEXT, ctx)
    template = ctx / "etc" / "kubeadm.yml.tmpl"
    template.write_text(template.read_text().replace(VERSION, version))
    (ctx / "Kubefile").write_text((ctx / "Kubefile").read_text().replace(VERSION, version))
    files = {"version": version.encode()}
    (ctx / "bin").mkdir()
    for name in ("kubeadm", "kubelet", "kubectl"):
        core.write_zipapp("standins.kubernetes:main", ctx / "bin" / name, files=files)
    scratch = out / "cri"
    scratch.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("containerd", "ctr", "crictl", "runc"):
            data = core.write_zipapp("standins.kubernetes:main", scratch / name, files=files).read_bytes()
            info = tarfile.TarInfo(f"usr/bin/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    (ctx / "tgz").mkdir()
    (ctx / "tgz" / "containerd.tgz").write_bytes(buf.getvalue())
    # the images kubeadm and the kubelet pull, as sealer's build leaves them in registry/
    sources = [*standin.images_for(version), "registry.k8s.io/pause:3.9"]
    pairs = []
    for source in dict.fromkeys(sources):
        local = "bundle.test/" + source.split("/", 1)[1]
        add_image(store, local, [{"standin": source.encode()}])
        pairs.append((local, source))
    write_distribution(store, pairs, ctx / "registry")
    return ctx


@dataclass
class Lab(_runtime_lab.Lab):
    spare: TestHost  # the worker joined later
    second: TestHost  # the master joined later


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("sealer-basefs")
    store = Store.open(base / "store")
    build_image(store, BuildOptions(context=make_context(base, store), tags=(IMAGE,), bundle_images=False))
    validate_image(store, IMAGE)
    nxt = make_context(base / "next", store, "v1.31.6")
    build_image(store, BuildOptions(context=nxt, tags=(IMAGE_NEXT,), bundle_images=False))
    with _runtime_lab.open_lab(host_lab, store, base / "state", 3) as made:
        yield Lab(made.store, made.home, made.hosts, made.etc_hosts, made.hosts[1], made.hosts[2])


@pytest.fixture
def root(lab: Lab) -> Path:
    """The store the `sealer` fixture runs against: the lab's, with the two images."""
    return lab.store.root


def test_dry_run_shows_the_sealer_mode(
    sealer: SealerRunner, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    args = ("run", IMAGE, "--masters", "10.0.0.1", "--nodes", "10.0.0.2", "-e", "SvcCIDR=10.97.0.0/16")
    out = sealer(*args, "--dry-run", "--verbose").stdout
    rootfs = "/var/lib/sealer/data/my-cluster/rootfs"
    assert f"bash {rootfs}/scripts/containerd.sh" in out
    assert f"cd {rootfs}/scripts && export RegistryURL=sea.hub:5000 && bash init-kube.sh" in out
    assert "imageRepository: sea.hub:5000\n" in out and "- 10.97.0.10\n" in out  # DNSSvcIP from SvcCIDR
    assert "init-registry.sh" not in out and "scripts/init.sh" not in out
    assert not (tmp_path / "state").exists()
    # a service network sealer cannot take DNSSvcIP from: one line naming it, nothing written
    bad = sealer(*args[:-1], "SvcCIDR=10.96.0.0/30", "--dry-run", expect=1)
    assert bad.stdout == "" and bad.stderr.splitlines()[0] == (
        "error: SvcCIDR=10.96.0.0/30: '10.96.0.0/30' is not a service network of at least 11 addresses"
    )
    assert not (tmp_path / "state").exists()


def test_run_one_master_as_sealer_runs_its_images(lab: Lab) -> None:
    m0 = lab.master0
    text = _runtime_lab.make_clusterfile(NAME, IMAGE, [m0], [], lab.hosts)
    doc = next(yaml.safe_load_all(text))
    doc["spec"]["env"] = [f"{k}={v}" for k, v in ENV.items()]
    actions.run(parse_clusterfile(yaml.safe_dump(doc, sort_keys=False)), lab.settings())

    # containerd.sh: from the image's tarball into the host's /usr/bin, running
    for path in (*CONTAINERD_FILES, *INIT_KUBE_FILES):
        assert m0.path(path).exists(), path
    assert m0.run("systemctl is-active containerd").stdout.strip() == "active"
    assert m0.path(f"/var/lib/sealer/data/{NAME}/sealer-container-runtime").read_text() == "containerd\n"
    # init-kube.sh: sysctl in the host's own network namespace, the kubelet from /usr/bin
    assert m0.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert "ExecStart=/usr/bin/kubelet" in m0.path("/etc/systemd/system/kubelet.service").read_text()
    assert m0.run("systemctl is-active kubelet").stdout.strip() == "active"
    assert f"{m0.address} apiserver.cluster.local" in m0.path("/etc/hosts").read_text()
    # the kube images, pulled by containerd from the cluster registry serving registry/
    images = m0.run("ctr -n k8s.io images ls -q").stdout.split()
    for image in (f"sea.hub:5000/kube-apiserver:{VERSION}", "sea.hub:5000/pause:3.9"):
        assert image in images, images
    # kubeadm.yml.tmpl rendered with sealer's env knobs, merged as sealer does
    docs = {d["kind"]: d for d in yaml.safe_load_all(m0.path("/etc/kubernetes/kubeadm.yaml").read_text())}
    conf = docs["ClusterConfiguration"]
    assert conf["apiVersion"] == "kubeadm.k8s.io/v1beta3" and conf["imageRepository"] == "sea.hub:5000"
    assert conf["networking"]["podSubnet"] == "10.244.0.0/16"
    assert conf["networking"]["serviceSubnet"] == "10.97.0.0/16"
    assert docs["KubeletConfiguration"]["clusterDNS"] == ["10.97.0.10"]
    assert conf["apiServer"]["extraArgs"]["etcd-servers"] == f"https://{m0.address}:2379"
    assert {"sealer-basefs.test", "api.sealer.test", m0.address} <= set(conf["apiServer"]["certSANs"])
    # the image's post-install Plugin ran on master0, through the cluster's API
    hooked = m0.path("/var/lib/sealer/sealer-basefs-post-install").read_text().split()
    assert len(hooked) == 1 and hooked[0].startswith("node/")
    # sealer's init-registry.sh is not called: the registry service serves registry/
    assert not m0.path("/var/lib/sealer/sealer-basefs-init-registry").exists()
    assert m0.run("systemctl is-active sealer-registry-" + NAME).stdout.strip() == "active"


def test_join_a_master_and_a_worker(lab: Lab) -> None:
    m0, w1, m1 = lab.master0, lab.spare, lab.second
    assert actions.status(NAME, lab.home)["complete"]
    cluster = ClusterState(NAME, lab.home).load_cluster()
    assert cluster is not None
    ssh = cluster.master0.ssh
    joining = [HostSpec(m1.address, (Role.MASTER,), ssh), HostSpec(w1.address, (Role.NODE,), ssh)]
    actions.join(NAME, joining, lab.settings())
    for host in (m1, w1):
        for path in (*CONTAINERD_FILES, *INIT_KUBE_FILES):
            assert host.path(path).exists(), path
        assert host.run("systemctl is-active kubelet").stdout.strip() == "active"
    # the stable name: the joined master its own API server, the worker its local balancer
    assert f"{m1.address} apiserver.cluster.local" in m1.path("/etc/hosts").read_text()
    assert "127.0.0.1 apiserver.cluster.local" in w1.path("/etc/hosts").read_text()
    nodes = {
        n["ip"]
        for n in _runtime_lab.read_state(lab, "/var/lib/etcd/member/standin-state.json")["nodes"].values()
    }
    assert nodes == {m0.address, m1.address, w1.address}


def test_upgrade(lab: Lab) -> None:
    """The next image: its registry/ served, kubeadm upgrade apply / node, and the kubelet of
    init-kube.sh's unit (/usr/bin) is the new one on every host."""
    actions.upgrade(NAME, IMAGE_NEXT, lab.settings())
    for host in (lab.master0, lab.second, lab.spare):
        assert host.run("/usr/bin/kubelet --version").stdout.strip() == "Kubernetes v1.31.6"
        assert host.run("/usr/local/bin/kubeadm version -o short").stdout.strip() == "v1.31.6"
        assert host.run("systemctl is-active kubelet").stdout.strip() == "active"
    assert (
        "sea.hub:5000/kube-apiserver:v1.31.6" in lab.master0.run("ctr -n k8s.io images ls -q").stdout.split()
    )


def test_delete_the_worker_then_the_cluster(lab: Lab) -> None:
    m0, w1, m1 = lab.master0, lab.spare, lab.second
    actions.delete(NAME, lab.settings(), nodes=[w1.address])
    for host in (w1,):
        for path in (*CONTAINERD_FILES, *INIT_KUBE_FILES, f"/var/lib/sealer/data/{NAME}"):
            assert not host.path(path).exists(), f"{host.hostname}: {path} is left"
        assert host.run("systemctl is-active containerd", check=False).stdout.strip() != "active"
        assert host.path("/etc/hosts").read_text() == lab.etc_hosts[host.address]
    assert m0.run("systemctl is-active kubelet").stdout.strip() == "active"
    actions.delete(NAME, lab.settings(), all_=True)
    gone = (*CONTAINERD_FILES, *INIT_KUBE_FILES, f"/var/lib/sealer/data/{NAME}", "/etc/kubernetes/admin.conf")
    for host in (m0, m1):
        for path in gone:
            assert not host.path(path).exists(), f"{host.hostname}: {path} is left"
        assert host.path("/etc/hosts").read_text() == lab.etc_hosts[host.address]
