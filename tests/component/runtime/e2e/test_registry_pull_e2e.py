"""`sealer run` end to end for the cluster registry's clients: a k3s cluster (stand-ins) of a
master and a node whose image bundles a container image; the registry is the real service
(Debian's docker-registry under its unit), and the node's containerd is Debian's real one,
started by the test with only `config_path = "/etc/containerd/certs.d"`: what it pulls, it pulls
through the files registry-trust wrote.

Proven here: the node pulls the bundled image by the registry's name and through the docker.io
mirror, TLS verified against the CA kept in the cluster's state, with the Clusterfile's
credentials; k3s (the stand-in) started with the registries.yaml sealer wrote; an app image's
bundled image, added by `sealer run APP_IMAGE`, is pulled the same way; `sealer delete --all`
master joining (ha) is in every host's mirror list and serves the node's pull with master0's
registry stopped, and is out of every list after `sealer delete --masters`; `sealer delete --all`
leaves the node's /etc and /etc/hosts as they were. The tests run in order on one set of hosts.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from builder.build.bundle.distribution import write_distribution
from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.image.descriptor import Platform
from builder.runtime import actions
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.phases.registry_service import unit_name
from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.component.runtime.e2e._runtime_lab import make_clusterfile
from tests.hosts import HostLab, HostSet, TestHost
from tests.standins import make_bin_dir
from tests.unit.store._tiny import add_image

pytestmark = pytest.mark.component

NAME = "regpull"
BASE = "example.test/k3s-base:v1"
IMAGE = "example.test/k3s-with-images:v1"
APP = "example.test/app-with-images:v1"
USER, PASSWORD = "puller", "Pull 'n' pass"
PULL = "ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d"


@dataclass
class Lab:
    store: Store
    home: Path
    hosts: HostSet
    etc: dict[str, str]  # the node's `ls -A /etc ...` and /etc/hosts before sealer

    @property
    def node(self) -> TestHost:
        return self.hosts[1]

    @property
    def master1(self) -> TestHost:  # joins later (ha: a second registry host)
        return self.hosts[2]

    def settings(self) -> actions.Settings:
        return actions.Settings(store=self.store, home=self.home)

    def clusterfile(self, masters: int = 1) -> str:
        chosen = [self.hosts[0], self.master1][:masters]
        text = make_clusterfile(NAME, IMAGE, chosen, [self.node], self.hosts)
        doc = yaml.safe_load(text)
        doc["spec"]["registry"] = {"localRegistry": {"username": USER, "password": PASSWORD}}
        return yaml.safe_dump(doc, sort_keys=False)


def _image_with_registry(
    store: Store, context: Path, tag: str, kubefile: str, images: dict[str, str]
) -> None:
    """Build `tag` from `kubefile` with a registry/ tree holding `images` (store name -> name)."""
    context.mkdir(parents=True)
    write_distribution(store, list(images.items()), context / "registry")
    (context / "Kubefile").write_text(kubefile)
    build_image(store, BuildOptions(context=context, tags=(tag,), bundle_images=False))


LISTING = "ls -A /etc /var/lib/kubelet; cat /etc/hosts"


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("regpull")
    store = Store.open(base / "store")
    hosts = host_lab.make_hosts(3, containerd=True)
    try:
        build_basefs("k3s", make_bin_dir("k3s", base / "bin"), store, BASE)
        add_image(store, "hello:v1", [{"hello.txt": b"bundled by the cluster image\n"}])
        _image_with_registry(
            store, base / "cluster", IMAGE, f"FROM {BASE}\nCOPY registry registry/\n",
            {"hello:v1": "docker.io/library/hello:v1"},
        )  # fmt: skip
        # the app's image is found in its imageList and bundled by the build (so its manifest
        # lists it, as an app's does); the "pull" makes the same tiny image in the build's store
        app = base / "app"
        app.mkdir()
        (app / "imageList").write_text("docker.io/acme/web:v1\n")
        (app / "Kubefile").write_text("FROM scratch\nCOPY imageList .\nCMDS true\n")

        def pull(
            into: Store, image: str, platform: Platform | None, tag_as: str | None, *, unpack: bool = False
        ) -> None:
            add_image(into, tag_as or image, [{"index.html": b"bundled by the app image\n"}])

        build_image(store, BuildOptions(context=app, tags=(APP,)), pull=pull)
        etc = {"node": hosts[1].run(LISTING).stdout}
        yield Lab(store, base / "state", hosts, etc)
    finally:
        host_lab.remove_hosts(hosts)
        store.close()


def pull(node: TestHost, ref: str) -> str:
    out = node.run(f"{PULL} {ref} 2>&1", check=False)
    assert out.returncode == 0, out.stdout
    return out.stdout


def test_the_node_pulls_the_bundled_image_through_the_mirrors(lab: Lab) -> None:
    actions.run(parse_clusterfile(lab.clusterfile()), lab.settings())
    node = lab.node
    node.start_containerd()
    pull(node, "sea.hub:5000/library/hello:v1")
    pull(node, "docker.io/library/hello:v1")  # the docker.io mirror
    listed = node.run("ctr -n k8s.io images ls -q").stdout.split()
    assert {"sea.hub:5000/library/hello:v1", "docker.io/library/hello:v1"} <= set(listed)
    # the CA on the node is the one kept in the cluster's state
    state_ca = (lab.home / NAME / "registry" / "ca.crt").read_text()
    assert node.path("/etc/containerd/certs.d/sea.hub:5000/ca.crt").read_text() == state_ca
    # k3s started with the registries.yaml sealer wrote (the stand-in parses it strictly)
    registries = yaml.safe_load(node.path("/etc/rancher/k3s/registries.yaml").read_text())
    assert registries["mirrors"]["docker.io"]["endpoint"] == [f"https://{lab.hosts[0].address}:5000"]
    assert PASSWORD not in json.dumps(registries)  # the credentials as a base64 auth
    assert node.run("systemctl is-active k3s-agent").stdout.strip() == "active"


def test_an_app_images_bundled_image_is_pulled_too(lab: Lab) -> None:
    node = lab.node
    missing = node.run(f"{PULL} docker.io/acme/web:v1 2>&1", check=False)
    assert missing.returncode != 0  # not in the registry before the app runs
    actions.run_app(NAME, APP, lab.settings())
    pull(node, "docker.io/acme/web:v1")
    pull(node, "sea.hub:5000/acme/web:v1")


def mirror_hosts(node: TestHost) -> list[str]:
    text = node.path("/etc/containerd/certs.d/docker.io/hosts.toml").read_text()
    return list(tomllib.loads(text)["host"])


def test_a_master_joining_is_in_every_mirror_list_and_serves_when_master0_is_down(lab: Lab) -> None:
    master0, node = lab.hosts[0], lab.node
    assert mirror_hosts(node) == [f"https://{master0.address}:5000"]
    actions.apply(parse_clusterfile(lab.clusterfile(2)), lab.settings())
    both = [f"https://{master0.address}:5000", f"https://{lab.master1.address}:5000"]
    assert mirror_hosts(node) == both  # rewritten on the node, which did not join
    assert mirror_hosts(master0) == both
    assert mirror_hosts(lab.master1) == both[::-1]  # its own first
    # the app ran before master1 joined: running it again brings its images there, launches nothing
    outcome = actions.run_app(NAME, APP, lab.settings())
    assert "nothing to launch" in outcome.message
    assert sorted(h.host for h in outcome.hosts) == sorted([master0.address, lab.master1.address])
    node.run("ctr -n k8s.io images ls -q | xargs -r ctr -n k8s.io images rm --sync")
    master0.run(f"systemctl stop {unit_name(NAME)}")
    try:
        pull(node, "docker.io/library/hello:v1")  # from master1's registry: the cluster's image
        pull(node, "docker.io/acme/web:v1")  # and the app's
    finally:
        master0.run(f"systemctl start {unit_name(NAME)}")


def test_a_master_leaving_is_out_of_every_mirror_list(lab: Lab) -> None:
    actions.delete(NAME, lab.settings(), masters=[lab.master1.address])
    only = [f"https://{lab.hosts[0].address}:5000"]
    assert mirror_hosts(lab.node) == only and mirror_hosts(lab.hosts[0]) == only
    assert not lab.master1.path("/etc/containerd/certs.d").exists()


def test_delete_all_leaves_the_node_as_it_was(lab: Lab) -> None:
    lab.node.stop_containerd()
    shutil.rmtree(lab.node.path("/var/lib/containerd"))  # the test's containerd's own data
    lab.node.path("/var/lib/containerd").mkdir()
    actions.delete(NAME, lab.settings(), all_=True)
    # k3s's uninstall removes /etc/rancher/k3s and leaves /etc/rancher, as upstream's does
    after = lab.node.run(LISTING).stdout.replace("\nrancher\n", "\n")
    assert after == lab.etc["node"]
