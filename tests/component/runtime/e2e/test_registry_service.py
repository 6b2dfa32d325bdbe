"""The cluster registry service on real fixture hosts, with Debian's real `docker-registry`
(distribution 2.8) under the systemctl stand-in: a k3s image (the stand-ins) bundling a
container image in its registry/ tree, run on one master and joined by a second (ha), then
deleted. (k3s: the fastest runtime of the stand-ins; the `none` runtime runs no registry.)

Proven with the real registry: TLS verified from this machine against the CA kept in the
cluster's state (by name and by each master's address), htpasswd auth (401 without or with a
wrong password, 200 with the right one), the bundled image served from the merged storage
(blob data hardlinked to the delivered rootfs), the server certificate reissued for a master
that joins and served by both, the SIGKILLed registry back under its unit (Restart=always, the
stand-in's), a master leaving taken out of the certificate the others serve,
`delete --all` leaving no unit, config, certificate or storage, and `insecure: true` serving
plain HTTP with no certificate made.

The tests run in order on one pair of hosts: each starts from what the previous left.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from builder.build.bundle.distribution import write_distribution
from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import ClusterError
from builder.runtime import actions
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.phases.registry_service import registry_dir, storage_dir, unit_name, unit_path
from builder.runtime.state import ClusterState
from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.component.runtime.e2e._runtime_lab import make_clusterfile
from tests.hosts import HostLab, HostSet, TestHost
from tests.standins import make_bin_dir
from tests.unit.store._tiny import add_image

BASE = "example.test/k3s-base:v1"
IMAGE = "example.test/k3s-with-registry:v1"
BUNDLED = "demo/bundled"  # the repository the registry/ tree holds (tag v1)
NAME = "e2ereg"
USER, PASSWORD = "admin", "Reg1stry \"pass\\ $x'"
UNIT = unit_name(NAME)
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


@dataclass
class Lab:
    store: Store
    home: Path
    hosts: HostSet
    bundled_digest: str
    password: str = PASSWORD  # the Clusterfile's, changed by a test

    def settings(self) -> actions.Settings:
        return actions.Settings(store=self.store, home=self.home)

    def clusterfile(self, masters: int) -> str:
        doc = yaml.safe_load(make_clusterfile(NAME, IMAGE, self.hosts[:masters], [], self.hosts))
        doc["spec"]["registry"] = {"localRegistry": {"username": USER, "password": self.password}}
        return yaml.safe_dump(doc, sort_keys=False)

    @property
    def ca_path(self) -> Path:
        return ClusterState(NAME, self.home).dir / "registry" / "ca.crt"


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("regsvc")
    store = Store.open(base / "store")
    hosts = host_lab.make_hosts(2)
    try:
        build_basefs("k3s", make_bin_dir("k3s", base / "bin"), store, BASE)
        add_image(store, "bundled:v1", [{"hello.txt": b"bundled by the cluster image\n"}])
        context = base / "context"
        context.mkdir()
        write_distribution(store, [("bundled:v1", f"{BUNDLED}:v1")], context / "registry")
        (context / "Kubefile").write_text(f"FROM {BASE}\nCOPY registry registry/\n")
        build_image(store, BuildOptions(context=context, tags=(IMAGE,), bundle_images=False))
        link = context / f"registry/docker/registry/v2/repositories/{BUNDLED}/_manifests/tags/v1/current/link"
        digest = link.read_text().strip()
        yield Lab(store, base / "state", hosts, digest)
    finally:
        host_lab.remove_hosts(hosts)
        store.close()


def get(
    lab: Lab, address: str, path: str, *, auth: tuple[str, str] | None = None, sni: str = "sea.hub"
) -> http.client.HTTPResponse:
    """GET https://ADDRESS:5000/PATH verified against the cluster's CA for the name `sni`."""
    context = ssl.create_default_context(cafile=str(lab.ca_path))
    raw = socket.create_connection((address, 5000), timeout=5)
    conn = http.client.HTTPSConnection(sni, 5000, context=context, timeout=5)
    conn.sock = context.wrap_socket(raw, server_hostname=sni)
    headers = {"Accept": MANIFEST_TYPES}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def served_sans(lab: Lab, address: str) -> set[str]:
    context = ssl.create_default_context(cafile=str(lab.ca_path))
    with (
        socket.create_connection((address, 5000), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="sea.hub") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    ext = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return {str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)}


def main_pid(host: TestHost) -> int | None:
    text = host.run(f"cat /run/standin-systemd/{UNIT}.json 2>/dev/null || echo '{{}}'").stdout
    pid = json.loads(text).get("pid")
    return int(pid) if pid else None


def assert_serves(lab: Lab, host: TestHost) -> None:
    assert host.run(f"systemctl is-active {UNIT}").stdout.strip() == "active"
    assert host.run(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    assert get(lab, host.address, "/v2/").status == 401
    assert get(lab, host.address, "/v2/", auth=(USER, "wrong")).status == 401
    assert get(lab, host.address, "/v2/", auth=(USER, lab.password)).status == 200
    # by its address too (a worker's mirror names each registry host by address)
    assert get(lab, host.address, "/v2/", auth=(USER, lab.password), sni=host.address).status == 200
    manifest = get(lab, host.address, f"/v2/{BUNDLED}/manifests/v1", auth=(USER, lab.password))
    assert manifest.status == 200 and manifest.getheader("Docker-Content-Digest") == lab.bundled_digest


def test_run_serves_the_bundled_image_over_tls_with_auth(lab: Lab) -> None:
    outcome = actions.run(parse_clusterfile(lab.clusterfile(1)), lab.settings())
    assert "1 host(s) done" in outcome.message
    master0 = lab.hosts[0]
    assert_serves(lab, master0)
    # the storage holds the delivered blobs as hardlinks; the rootfs tree is not the storage
    d = registry_dir(NAME)
    out = master0.run(
        f"cd {storage_dir(NAME)}/docker/registry/v2/blobs && find . -name data -links +1 | wc -l; "
        f"stat -c %a {d} {d}/tls/server.key {d}/auth/htpasswd {d}/config.yml"
    ).stdout.split()
    assert int(out[0]) >= 2 and out[1:] == ["700", "600", "600", "600"]
    with pytest.raises(ssl.SSLCertVerificationError):  # another name than the certificate's
        get(lab, master0.address, "/v2/", sni="other.example")


def test_the_registry_killed_with_sigkill_comes_back_under_its_unit(lab: Lab) -> None:
    host = lab.hosts[0]
    first = main_pid(host)
    assert first is not None
    host.run(f"kill -KILL {first}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and main_pid(host) in (None, first):
        time.sleep(0.1)
    again = main_pid(host)
    assert again not in (None, first), "the registry was not restarted"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if get(lab, host.address, "/v2/", auth=(USER, lab.password)).status == 200:
                break
        except OSError:
            time.sleep(0.2)
    assert_serves(lab, host)


def test_new_credentials_reach_the_registry_through_apply(lab: Lab) -> None:
    """Only the password changes: apply takes it (a new htpasswd, the unit restarted), the CA and
    the server certificate stay."""
    host, old = lab.hosts[0], lab.password
    cert = served_sans(lab, host.address)
    lab.password = "n3w-pass"
    outcome = actions.apply(parse_clusterfile(lab.clusterfile(1)), lab.settings())
    assert "1 host(s) done" in outcome.message
    assert get(lab, host.address, "/v2/", auth=(USER, old)).status == 401
    assert_serves(lab, host)
    assert served_sans(lab, host.address) == cert


def test_a_master_joining_serves_and_the_certificate_is_reissued_everywhere(lab: Lab) -> None:
    master0, master1 = lab.hosts[0], lab.hosts[1]
    assert served_sans(lab, master0.address) == {master0.address}
    before = master0.run(f"stat -c %i {registry_dir(NAME)}/tls/ca.crt").stdout
    outcome = actions.apply(parse_clusterfile(lab.clusterfile(2)), lab.settings())
    assert "joined" in outcome.message
    assert_serves(lab, master1)
    assert_serves(lab, master0)
    both = {master0.address, master1.address}
    assert served_sans(lab, master0.address) == both  # restarted with the new certificate
    assert served_sans(lab, master1.address) == both
    assert master0.run(f"stat -c %i {registry_dir(NAME)}/tls/ca.crt").stdout == before  # CA kept


def test_a_master_leaving_takes_its_registry_and_its_address_out_of_the_certificate(lab: Lab) -> None:
    master0, master1 = lab.hosts[0], lab.hosts[1]
    actions.delete(NAME, lab.settings(), masters=[master1.address])
    assert master1.run(f"ls {unit_path(NAME)} {registry_dir(NAME)}", check=False).returncode != 0
    assert served_sans(lab, master0.address) == {master0.address}
    assert_serves(lab, master0)


def test_deleting_master0_alone_is_refused(lab: Lab) -> None:
    with pytest.raises(ClusterError, match="without a master"):  # the last master, and master0
        actions.delete(NAME, lab.settings(), masters=[lab.hosts[0].address])
    assert_serves(lab, lab.hosts[0])


def test_delete_all_leaves_no_unit_certificate_config_or_storage(lab: Lab) -> None:
    actions.delete(NAME, lab.settings(), all_=True)
    for host in lab.hosts:
        left = host.run(
            f"ls -d {unit_path(NAME)} /etc/systemd/system/*.wants/{UNIT} {registry_dir(NAME)} 2>/dev/null; "
            f"systemctl is-active {UNIT}",
            check=False,
        ).stdout.split()
        assert left == ["inactive"], f"{host.address}: {left}"
        # no process serves its config (pgrep -f sees this machine's processes: the hosts share it)
        assert host.run(f"pgrep -f '{NAME}/registr[y]/config.yml'", check=False).stdout == ""
        with pytest.raises(OSError):
            socket.create_connection((host.address, 5000), timeout=2).close()
    assert not ClusterState(NAME, lab.home).dir.exists()


def test_insecure_serves_plain_http_without_auth_or_certificate(lab: Lab) -> None:
    """`insecure: true`, no username: the same unit serves plain HTTP, nothing of TLS on the host."""
    name, host = f"{NAME}i", lab.hosts[0]
    doc = yaml.safe_load(make_clusterfile(name, IMAGE, [host], [], lab.hosts))
    doc["spec"]["registry"] = {"localRegistry": {"insecure": True}}
    actions.run(parse_clusterfile(yaml.safe_dump(doc)), lab.settings())
    try:
        conn = http.client.HTTPConnection(host.address, 5000, timeout=5)
        conn.request("GET", f"/v2/{BUNDLED}/manifests/v1", headers={"Accept": MANIFEST_TYPES})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Docker-Content-Digest") == lab.bundled_digest
        conn.close()
        files = host.run(f"find {registry_dir(name)}/tls {registry_dir(name)}/auth -type f").stdout
        assert files == ""
        assert not (ClusterState(name, lab.home).dir / "registry" / "ca.crt").exists()
    finally:
        actions.delete(name, lab.settings(), all_=True)
    assert host.run(f"ls -d {unit_path(name)} {registry_dir(name)} 2>/dev/null", check=False).stdout == ""
