"""The cluster registry's client side with Debian's real containerd: registry-trust's plan, run
over SSH on fixture hosts, makes a node's containerd pull an image the cluster image bundles
(rootfs `registry/`) from Debian's docker-registry on the master, through the hosts.toml
mirrors, TLS verified against the cluster's CA, with the configured credentials.

Proven here, with real components: the pull by the registry's own name and through the
docker.io mirror (`ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d`), the image
unpacked by containerd's overlayfs snapshotter; the same through the CRI plugin, as a kubelet
pulls (`ImageService/PullImage` over containerd's socket, tests/cri.py), with the header's
credentials or with the kubelet's config.json ones; a wrong password refused (401), another CA
too; a plain-HTTP registry pulled with `insecure: true` only; an external registry mirrored by
its name; failover to the next registry host when the first is down; registry-untrust leaving
no file, directory or /etc/hosts entry behind.

The registry runs from this test (inside the master's namespaces, killed by PID in a
finalizer), configured as the service serves it: TLS with a server certificate whose SANs are
the domain and the registry hosts' addresses, htpasswd (bcrypt) auth, storage = the bundled tree.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from builder.build.bundle.distribution import write_distribution
from builder.image.descriptor import Platform
from builder.runtime.cluster import Cluster, RegistrySpec
from builder.runtime.clusterfile import cluster_from_flags
from builder.runtime.facts import Facts
from builder.runtime.infra import SSHDriver
from builder.runtime.phases import ImageInfo, PlanState
from builder.runtime.phases.base import Phase
from builder.runtime.phases.registry_trust import RegistryTrust, RegistryUntrust
from builder.runtime.plugins import get_plugin
from builder.runtime.registry_pki import RegistryMaterial
from builder.store.layout import Store
from tests.cri import CRIError, pull_image
from tests.hosts import CONTAINERD_SOCKET, HostLab, HostSet, TestHost
from tests.unit.store._tiny import add_image

pytestmark = pytest.mark.component

REGISTRY_BIN = "/usr/bin/docker-registry"
IMAGE = "library/hello:v1"  # as the bundle stores docker.io/library/hello:v1
USER, PASSWORD = "puller", "correct horse"
STORAGE = "/var/lib/sealer/test-registry/storage"  # on the registry hosts
PULL = "ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d"


def _material(domain: str, ips: Sequence[str]) -> RegistryMaterial:
    """A CA and a server certificate for `domain` and `ips`, as the registry service makes them."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test registry CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    sans = [x509.DNSName(domain), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    htpasswd = f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
    return RegistryMaterial(
        ca.public_bytes(pem).decode(), cert.public_bytes(pem).decode(), key_pem.decode(), htpasswd
    )


@dataclass
class Lab:
    hosts: HostSet  # two registry hosts (masters) and a node whose containerd pulls
    material: RegistryMaterial
    digest: str  # the bundled image's manifest digest

    @property
    def node(self) -> TestHost:
        return self.hosts[2]

    def cluster(self, **spec: object) -> Cluster:
        a = self.hosts.addresses
        base = cluster_from_flags("demo:v1", f"{a[0]},{a[1]}", a[2], name="regtest")
        return replace(base, registry=RegistrySpec(**spec))  # type: ignore[arg-type]

    def apply(self, phase: Phase, cluster: Cluster, targets: Sequence[str] | None = None) -> None:
        """Run `phase`'s plan over SSH, as the runner runs it (each step's env exported)."""
        image = ImageInfo(name="demo:v1", digest=None, platform=Platform.host())
        state = PlanState(
            image, get_plugin("kubernetes"), tuple(targets or cluster.ips), registry=self.material
        )
        steps = phase.plan(cluster, Facts(), state)

        async def run() -> None:
            async with SSHDriver(self.hosts.credentials()) as driver:
                for s in steps:
                    await driver.run(s.host, s.full_command, env=s.env, check=True)

        asyncio.run(run())


@contextlib.contextmanager
def serving(host: TestHost, *, tls: bool, auth: bool, port: int = 5000) -> Iterator[None]:
    """Debian's docker-registry inside `host` on 0.0.0.0:`port`, its storage the bundled tree;
    killed by PID on the way out."""
    conf = host.path("/var/lib/sealer/test-registry")
    lines = [
        "version: 0.1",
        "log: {level: warn, accesslog: {disabled: true}}",
        f"storage: {{filesystem: {{rootdirectory: {STORAGE}}}}}",
        f"http: {{addr: ':{port}', secret: test"
        + (", tls: {certificate: /var/lib/sealer/test-registry/server.crt, key: /var/lib/sealer/test-registry/server.key}" if tls else "")
        + "}",
    ]  # fmt: skip
    if auth:
        lines.append("auth: {htpasswd: {realm: sealer, path: /var/lib/sealer/test-registry/htpasswd}}")
    (conf / "config.yml").write_text("\n".join(lines) + "\n")
    log = open(conf / "registry.log", "ab")  # noqa: SIM115 (handed to the child)
    with log:
        proc = subprocess.Popen(
            [*host._nsenter(), REGISTRY_BIN, "serve", "/var/lib/sealer/test-registry/config.yml"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection((host.address, port), timeout=0.5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not listen:\n{(conf / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.fail(f"{REGISTRY_BIN} is missing (apt-get install docker-registry)")
    base = tmp_path_factory.mktemp("registry-containerd")
    store = Store.open(base / "store")
    try:
        desc = add_image(store, "hello:v1", [{"hello.txt": b"hello from the cluster registry\n"}])
        write_distribution(store, [("hello:v1", f"docker.io/{IMAGE}")], base / "registry")
    finally:
        store.close()
    hosts = host_lab.make_hosts(3, containerd=True)
    try:
        material = _material("sea.hub", hosts.addresses[:2])
        for master in hosts[:2]:
            conf = master.path("/var/lib/sealer/test-registry")
            shutil.copytree(base / "registry", conf / "storage")
            (conf / "server.crt").write_text(material.cert_pem)
            (conf / "server.key").write_text(material.key_pem)
            (conf / "htpasswd").write_text(material.htpasswd or "")
        hosts[2].start_containerd()
        yield Lab(hosts, material, str(desc.digest))
    finally:
        host_lab.remove_hosts(hosts)


@pytest.fixture(autouse=True)
def clean_node(lab: Lab) -> Iterator[None]:
    """Each test starts with a node that has pulled nothing and trusts nothing."""
    yield
    lab.apply(RegistryUntrust(), lab.cluster(), lab.hosts.addresses)
    lab.node.run("ctr -n k8s.io images ls -q | xargs -r ctr -n k8s.io images rm --sync", check=False)


def pull(node: TestHost, ref: str) -> None:
    out = node.run(f"{PULL} {ref} 2>&1", check=False)
    assert out.returncode == 0, out.stdout


def pulled(node: TestHost) -> set[str]:
    return set(node.run("ctr -n k8s.io images ls -q").stdout.split())


def test_a_node_pulls_a_bundled_image_over_tls_with_credentials(lab: Lab) -> None:
    cluster = lab.cluster(username=USER, password=PASSWORD)
    lab.apply(RegistryTrust(), cluster)
    node = lab.node
    assert node.run("getent hosts sea.hub").stdout.split() == [lab.hosts[0].address, "sea.hub"]
    assert oct(node.path("/etc/containerd/certs.d/docker.io/hosts.toml").stat().st_mode & 0o777) == "0o600"
    kubelet = node.path("/var/lib/kubelet/config.json")
    assert kubelet.stat().st_mode & 0o777 == 0o600
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert json.loads(kubelet.read_text()) == {"auths": {"sea.hub:5000": {"auth": auth}}}
    with serving(lab.hosts[0], tls=True, auth=True):
        out = node.run(f"{PULL} sea.hub:5000/{IMAGE} 2>&1", check=False)
        assert out.returncode == 0, out.stdout
        out = node.run(f"{PULL} docker.io/{IMAGE} 2>&1", check=False)  # the mirror of docker.io
        assert out.returncode == 0, out.stdout
    assert {f"sea.hub:5000/{IMAGE}", f"docker.io/{IMAGE}"} <= pulled(node)
    listed = node.run(f"ctr -n k8s.io images ls name==docker.io/{IMAGE}").stdout
    assert lab.digest in listed
    # unpacked: the overlayfs snapshotter holds the layer's file
    assert "Committed" in node.run("ctr -n k8s.io snapshots --snapshotter overlayfs ls").stdout


def test_a_wrong_password_is_refused(lab: Lab) -> None:
    lab.apply(RegistryTrust(), lab.cluster(username=USER, password="wrong horse"))
    with serving(lab.hosts[0], tls=True, auth=True):
        out = lab.node.run(f"{PULL} sea.hub:5000/{IMAGE} 2>&1", check=False)
    assert out.returncode != 0
    assert "401 Unauthorized" in out.stdout or "authorization failed" in out.stdout, out.stdout
    assert f"sea.hub:5000/{IMAGE}" not in pulled(lab.node)


def test_another_ca_fails_tls(lab: Lab) -> None:
    """The CA registry-trust installs is what TLS verifies with: another CA there, and the pull
    fails (containerd does not fall back to anything weaker)."""
    lab.apply(RegistryTrust(), lab.cluster(username=USER, password=PASSWORD))
    other = _material("sea.hub", lab.hosts.addresses[:2]).ca_pem
    lab.node.path("/etc/containerd/certs.d/sea.hub:5000/ca.crt").write_text(other)
    with serving(lab.hosts[0], tls=True, auth=True):
        out = lab.node.run(f"{PULL} sea.hub:5000/{IMAGE} 2>&1", check=False)
    assert out.returncode != 0 and "certificate signed by unknown authority" in out.stdout, out.stdout


def test_an_insecure_registry_works_with_insecure_true_only(lab: Lab) -> None:
    with serving(lab.hosts[0], tls=False, auth=False):
        lab.apply(RegistryTrust(), lab.cluster())  # TLS expected: refused by a plain-HTTP registry
        out = lab.node.run(f"{PULL} sea.hub:5000/{IMAGE} 2>&1", check=False)
        assert out.returncode != 0, out.stdout
        lab.apply(RegistryTrust(), lab.cluster(insecure=True))
        assert not lab.node.path("/etc/containerd/certs.d/sea.hub:5000/ca.crt").exists()
        out = lab.node.run(f"{PULL} sea.hub:5000/{IMAGE} 2>&1", check=False)
        assert out.returncode == 0, out.stdout


def test_the_next_registry_host_serves_when_the_first_is_down(lab: Lab) -> None:
    """Every registry host is listed: with master0's registry down, master1's serves the pull."""
    lab.apply(RegistryTrust(), lab.cluster(username=USER, password=PASSWORD))
    with serving(lab.hosts[1], tls=True, auth=True):
        out = lab.node.run(f"{PULL} docker.io/{IMAGE} 2>&1", check=False)
    assert out.returncode == 0, out.stdout


def test_untrust_leaves_nothing(lab: Lab) -> None:
    node = lab.node
    before = node.path("/etc/hosts").read_text()
    listing = "ls -A /etc /var/lib/kubelet /var/lib/sealer"
    etc_before = node.run(listing).stdout
    lab.apply(RegistryTrust(), lab.cluster(username=USER, password=PASSWORD))
    assert node.path("/etc/docker/certs.d/sea.hub:5000/ca.crt").exists()
    lab.apply(RegistryUntrust(), lab.cluster(username=USER, password=PASSWORD), lab.hosts.addresses)
    assert node.path("/etc/hosts").read_text() == before
    assert node.run(listing).stdout == etc_before


def test_the_cri_plugin_pulls_as_a_kubelet_does(lab: Lab) -> None:
    """The CRI plugin reads the same certs.d (its `config_path`): a PullImage without
    credentials gets them from the hosts.toml header; with the header gone, the credentials a
    kubelet passes from the config.json registry-trust wrote are what lets it through."""
    lab.apply(RegistryTrust(), lab.cluster(username=USER, password=PASSWORD))
    socket = lab.node.path(CONTAINERD_SOCKET)
    kubelet_auth = json.loads(lab.node.path("/var/lib/kubelet/config.json").read_text())["auths"]
    with serving(lab.hosts[0], tls=True, auth=True):
        assert pull_image(socket, f"docker.io/{IMAGE}").startswith("sha256:")
        assert f"docker.io/{IMAGE}" in pulled(lab.node)
        lab.apply(RegistryTrust(), lab.cluster())  # the same mirrors without the header
        with pytest.raises(CRIError, match="401 Unauthorized"):
            pull_image(socket, f"sea.hub:5000/{IMAGE}")
        auth = kubelet_auth["sea.hub:5000"]["auth"]
        assert pull_image(socket, f"sea.hub:5000/{IMAGE}", auth=auth).startswith("sha256:")


def test_an_external_registry_is_mirrored_by_its_name_with_credentials(lab: Lab) -> None:
    """externalRegistry: no /etc/hosts entry and no CA of sealer's (the user's DNS and the
    system's CAs name and verify it; here plain HTTP and a name the test maps by hand), the
    mirrors pointing at DOMAIN:PORT with the credentials."""
    spec = {"external": True, "domain": "registry.example.test", "port": 5000, "insecure": True}
    cluster = lab.cluster(**spec, username=USER, password=PASSWORD)
    node = lab.node
    before = node.path("/etc/hosts").read_text()
    node.path("/etc/hosts").write_text(before + f"{lab.hosts[1].address} registry.example.test\n")
    try:
        lab.apply(RegistryTrust(), cluster)
        assert "sea.hub" not in node.path("/etc/hosts").read_text()
        assert not node.path("/etc/containerd/certs.d/registry.example.test:5000/ca.crt").exists()
        with serving(lab.hosts[1], tls=False, auth=True):
            pull(node, f"docker.io/{IMAGE}")
            pull(node, f"registry.example.test:5000/{IMAGE}")
        lab.apply(RegistryUntrust(), cluster, lab.hosts.addresses)
        assert not node.path("/etc/containerd/certs.d").exists()
    finally:
        node.path("/etc/hosts").write_text(before)
