"""Clusters on docker hosts, end to end through the CLI, on the suite's own dockerd
(tests/docker_fixtures.py) and the node image `make node-image` builds: the example image
examples/cluster-rootfs run on 1 master + 2 nodes (`--provider docker`), its rootfs checked
against the image's layer digests and init.sh's and the launch's effects inside the containers,
a re-run that moves nothing, a node joined and deleted, an upgrade, `delete --all` leaving no
container or network; a Clusterfile with counts run and scaled by apply; the k3s plan on docker
hosts; and the refusals (addresses as counts, a node image without tar, no engine), each one
line, exit 1, nothing left on the engine.

The tests run in order on one cluster and one state home, as test_cluster_e2e.py does.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.image.descriptor import Platform
from builder.runtime import delivery
from builder.runtime.container_hosts import CLUSTER_LABEL
from builder.runtime.infra.node_image import NODE_COMMANDS, build_node_image
from builder.store.layout import Store
from tests.component.runtime.e2e.test_cluster_e2e import EXAMPLE, IMAGE, IMAGE_V2, build_example
from tests.conftest import SealerRunner
from tests.docker_nodes import docker_host, dockerd, leftovers, node_image

__all__ = ["docker_host", "dockerd", "node_image"]
pytestmark = pytest.mark.component
NAME = "dk"


@pytest.fixture(autouse=True)
def engine(docker_host: str, node_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)


@pytest.fixture(scope="module")
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docker-state")


@pytest.fixture(scope="module")
def module_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docker-root")


@pytest.fixture
def root(module_root: Path) -> Path:  # the conftest's `sealer` and `store` use this store
    return module_root


@pytest.fixture(autouse=True)
def home(state_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEALER_STATE_HOME", str(state_home))
    return state_home


@pytest.fixture(scope="module", autouse=True)
def no_leftovers(dockerd: docker.DockerClient) -> Iterator[None]:
    """Whatever a test of this module fails on, its cluster's containers and network go."""
    yield
    for c in dockerd.containers.list(all=True, filters={"label": CLUSTER_LABEL}):
        c.remove(force=True)
    for n in dockerd.networks.list(filters={"label": CLUSTER_LABEL}):
        n.remove()


def sh(client: docker.DockerClient, container: str, command: str) -> str:
    result = client.containers.get(container).exec_run(["sh", "-c", command])
    assert result.exit_code == 0, result.output
    return str(result.output.decode())


def ours(client: docker.DockerClient) -> list[str]:
    return [x for x in leftovers(client) if "sealer-" in x]


def test_run_on_three_containers(sealer: SealerRunner, store: Store, dockerd: docker.DockerClient) -> None:
    build_example(store)
    result = sealer("run", IMAGE, "--provider", "docker", "--masters", "1", "--nodes", "2", "--cluster", NAME)
    assert f"cluster {NAME}: 3 host(s) done" in result.stderr
    names = ["sealer-dk-master0", "sealer-dk-node0", "sealer-dk-node1"]
    containers = {n: dockerd.containers.get(n) for n in names}
    net = dockerd.networks.get("sealer-dk")
    assert net.attrs["Labels"] == {CLUSTER_LABEL: NAME} and net.attrs["Driver"] == "bridge"
    ips = {n: c.attrs["NetworkSettings"]["Networks"]["sealer-dk"]["IPAddress"] for n, c in containers.items()}
    master, node0, node1 = (ips[n] for n in names)
    for n, c in containers.items():
        assert c.labels[CLUSTER_LABEL] == NAME and sh(dockerd, n, "uname -n").strip() == f"dk-{n[10:]}"
        assert c.attrs["HostConfig"]["Privileged"] is False and "ALL" in c.attrs["HostConfig"]["CapDrop"]
    # the rootfs: the image's layers, each verified on arrival, then the host's rendered layer
    image = delivery.prepare_image(store, IMAGE, Platform.host())
    for n in names:
        applied = sh(dockerd, n, f"cat /var/lib/sealer/data/{NAME}/applied").split()
        assert applied[: len(image.layers)] == [str(p.descriptor.digest) for p in image.layers]
        assert len(applied) == len(image.layers) + 1  # etc/sealer-demo/demo.conf rendered per host
        # init.sh ran with this host's role and the cluster's addresses
        env = sh(dockerd, n, "cat /etc/sealer-demo/env")
        assert f"masters={master}\nnodes={node0},{node1}\n" in env
        assert ("role=master" if n == names[0] else "role=node") in env
        assert sh(dockerd, n, "test -x /usr/local/bin/sealer-demo && cat /var/lib/sealer/demo/dk/service.pid")
    # the launch ran on master0 only
    assert (
        sh(dockerd, names[0], "cat /var/lib/sealer/demo/dk/launched") == f"hello cluster dk from {master}\n"
    )
    assert "launched" not in sh(dockerd, names[1], "ls /var/lib/sealer/demo/dk")
    # containers reach each other on the cluster's network
    assert sh(dockerd, names[1], f"grep -c . /etc/hosts && echo {master}")
    status = sealer("cluster", "status").stdout
    assert f"{master}   sealer-dk-master0   running" in status
    info = json.loads(sealer("cluster", "status", "--format", "json").stdout)
    assert info["complete"] and [h["ip"] for h in info["hosts"]] == [master, node0, node1]
    assert info["containers"][node1] == {"container": "sealer-dk-node1", "status": "running"}


def test_a_rerun_moves_nothing(sealer: SealerRunner) -> None:
    result = sealer("run", IMAGE, "--provider", "docker", "--masters", "1", "--nodes", "2", "--cluster", NAME)
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == 3 and all(r[3:5] == ["0", "B"] for r in rows), result.stdout
    refused = sealer(
        "run", IMAGE, "--provider", "docker", "--masters", "1", "--nodes", "3", "--cluster", NAME, expect=1
    )
    assert "has 1 master and 2 node containers, not 1 and 3" in refused.stderr


def test_join_and_delete_a_node(sealer: SealerRunner, dockerd: docker.DockerClient) -> None:
    result = sealer("join", "--nodes", "1")
    assert "joined" in result.stderr
    new = dockerd.containers.get("sealer-dk-node2")
    ip = new.attrs["NetworkSettings"]["Networks"]["sealer-dk"]["IPAddress"]
    assert "role=node" in sh(dockerd, "sealer-dk-node2", "cat /etc/sealer-demo/env")
    deleted = sealer("delete", "--nodes", ip, "-y")
    assert f"removed {ip} from cluster dk; containers removed: sealer-dk-node2" in deleted.stderr
    assert not dockerd.containers.list(all=True, filters={"name": "sealer-dk-node2"})
    assert len(json.loads(sealer("cluster", "status", "--format", "json").stdout)["hosts"]) == 3


def test_status_without_an_engine_still_shows_the_state(
    sealer: SealerRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    out = sealer("cluster", "status").stdout
    assert "state    complete" in out and "sealer-dk" not in out
    assert f"no Docker engine answers at unix://{tmp_path}/none.sock (no such socket)" in out


def test_an_upgrade_reaches_the_containers(
    sealer: SealerRunner, store: Store, dockerd: docker.DockerClient, tmp_path: Path
) -> None:
    context = tmp_path / "v2"
    shutil.copytree(EXAMPLE, context)
    (context / "VERSION").write_text("2\n")
    kubefile = (context / "Kubefile").read_text()
    (context / "Kubefile").write_text(
        kubefile.replace("\nLAUNCH ", "\nCOPY VERSION etc/sealer-demo/VERSION\nLAUNCH ")
    )
    build_image(store, BuildOptions(context=context, tags=(IMAGE_V2,), bundle_images=False))
    result = sealer("upgrade", IMAGE_V2, "--cluster", NAME)
    assert f"cluster {NAME} upgraded to {IMAGE_V2}" in result.stderr
    for n in ("sealer-dk-master0", "sealer-dk-node0", "sealer-dk-node1"):
        assert sh(dockerd, n, f"cat /var/lib/sealer/data/{NAME}/rootfs/etc/sealer-demo/VERSION") == "2\n"


def test_delete_all_leaves_no_container_or_network(
    sealer: SealerRunner, dockerd: docker.DockerClient
) -> None:
    result = sealer("delete", "--all", "-y")
    assert (
        "cluster dk deleted; containers removed: sealer-dk-master0, sealer-dk-node0, sealer-dk-node1"
        in result.stderr
    )
    assert ours(dockerd) == []


CLUSTERFILE = """\
apiVersion: sealer.io/v2
kind: Cluster
metadata:
  name: cf
spec:
  image: {image}
  provider: CONTAINER
  hosts:
    - roles: [master]
      count: 1
    - roles: [node]
      count: {nodes}
      env: [DEMO_COLOR=blue]
"""


def test_a_clusterfile_with_counts_runs_and_scales(
    sealer: SealerRunner, dockerd: docker.DockerClient, tmp_path: Path
) -> None:
    clusterfile = tmp_path / "Clusterfile"
    clusterfile.write_text(CLUSTERFILE.format(image=IMAGE, nodes=1))
    plan = sealer("run", "-f", str(clusterfile), "--dry-run")
    assert "192.0.2.10 (master0)" in plan.stdout and "192.0.2.11 (node)" in plan.stdout
    assert "placeholder addresses" in plan.stderr and ours(dockerd) == []  # a dry-run makes nothing
    sealer("run", "-f", str(clusterfile))
    assert "color=blue" in sh(dockerd, "sealer-cf-node0", "cat /etc/sealer-demo/env")
    assert "color=image" in sh(dockerd, "sealer-cf-master0", "cat /etc/sealer-demo/env")
    saved = (Path(os.environ["SEALER_STATE_HOME"]) / "cf" / "Clusterfile").read_text()
    assert (
        "provider: CONTAINER" in saved and "nodeImage: sealer-node:latest" in saved and "count" not in saved
    )
    clusterfile.write_text(CLUSTERFILE.format(image=IMAGE, nodes=2))
    grown = sealer("apply", "-f", str(clusterfile))
    assert "joined" in grown.stderr and "color=blue" in sh(
        dockerd, "sealer-cf-node1", "cat /etc/sealer-demo/env"
    )
    node1 = dockerd.containers.get("sealer-cf-node1").attrs["NetworkSettings"]["Networks"]["sealer-cf"][
        "IPAddress"
    ]
    clusterfile.write_text(CLUSTERFILE.format(image=IMAGE, nodes=1))
    shrunk = sealer("apply", "-f", str(clusterfile), "--force")
    assert f"removed {node1}" in shrunk.stderr and "containers removed: sealer-cf-node1" in shrunk.stderr
    assert sorted(x for x in ours(dockerd)) == [
        "container sealer-cf-master0",
        "container sealer-cf-node0",
        "network sealer-cf",
    ]
    sealer("delete", "--all", "-y", "--cluster", "cf")
    assert ours(dockerd) == []


def test_a_count_belongs_to_container_clusters(sealer: SealerRunner, tmp_path: Path) -> None:
    clusterfile = tmp_path / "Clusterfile"
    clusterfile.write_text(CLUSTERFILE.format(image=IMAGE, nodes=1).replace("  provider: CONTAINER\n", ""))
    result = sealer("run", "-f", str(clusterfile), expect=1)
    assert (
        result.stderr.splitlines()[0]
        == f"error: {clusterfile}:9: spec.hosts[0].count: is for spec.provider: CONTAINER"
    )


def test_the_k3s_runtime_plans_on_docker_hosts(
    sealer: SealerRunner, store: Store, dockerd: docker.DockerClient, tmp_path: Path, home: Path
) -> None:
    from scripts.basefs import build_basefs
    from tests.standins import make_bin_dir

    image = build_basefs("k3s", make_bin_dir("k3s", tmp_path / "bin"), store, "dry.test/k3s:v1")
    args = ("--provider", "docker", "--masters", "1", "--nodes", "1", "--cluster", "k3", "--dry-run")
    result = sealer("run", image, *args, "--verbose")
    out = result.stdout
    assert (
        out.startswith(f"# run: cluster k3, image {image} (sha256:") and "runtime k3s" in out.splitlines()[0]
    )
    for phase in ("check", "deliver", "registry-trust", "runtime-init", "join-nodes", "kubeconfig"):
        assert f"== {phase}:" in out, phase
    assert "192.0.2.10 (master0)" in out and "192.0.2.11 (node)" in out
    assert "rootfs/scripts/k3s-install.sh server --cluster-init" in out
    assert "K3S_URL=https://apiserver.cluster.local:6443" in out
    assert "placeholder addresses" in result.stderr
    assert ours(dockerd) == [] and not (home / "k3").exists()  # nothing made, nothing saved


def test_refusals_are_one_line_and_leave_nothing(
    sealer: SealerRunner, dockerd: docker.DockerClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refused(*args: str) -> str:
        result = sealer(*args, expect=1)
        first = result.stderr.splitlines()[0]
        assert first.startswith("error: ") and "Traceback" not in result.stderr
        assert ours(dockerd) == []
        return first

    base = ("run", IMAGE, "--provider", "docker", "--cluster", "bad")
    assert "with --provider docker it is a count of containers, not addresses" in refused(
        *base, "--masters", "10.0.0.1"
    )
    assert refused(*base, "--node-image", "nope:1") == "error: node image nope:1 is not in the Docker engine"
    build_node_image(dockerd, "no-tar:1", commands=[c for c in NODE_COMMANDS if c != "tar"])
    assert refused(*base, "--nodes", "1", "--node-image", "no-tar:1").startswith(
        "error: node image no-tar:1 lacks tar"
    )
    # a run failing after its containers were made (no such image: the pull is refused on
    # loopback) removes them and the network, since no saved state names them
    late = sealer("run", "127.0.0.1:1/nope:1", "--provider", "docker", "--nodes", "1", expect=1).stderr
    assert "== check: Check hosts (2 host(s))" in late  # the containers existed and were probed
    assert [x for x in late.splitlines() if x.startswith("error:")] == [
        "error: 127.0.0.1:1: connection refused during manifest 127.0.0.1:1/nope:1"
    ]
    assert ours(dockerd) == [] and "Traceback" not in late
    counts = sealer("run", IMAGE, "--masters", "2", expect=2).stderr.splitlines()  # SSH hosts: addresses
    assert counts == [
        "error: --masters: '2' is not an IP address",
        "hint: a count of hosts goes with --provider docker (containers); SSH hosts are given by address",
    ]
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    sealer("run", IMAGE, "--provider", "docker", "--cluster", "gone", "--dry-run")  # needs no engine
    assert (
        refused(*base) == f"error: no Docker engine answers at unix://{tmp_path}/none.sock (no such socket)"
    )
