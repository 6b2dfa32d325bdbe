"""spec.dataRoot and spec.containerRuntime: read, written back equal, refused at their line;
the data root in every host path of a kubeadm run's and delete's dry-run plan; a running
cluster keeps both; the container runtime checked against the image's label and files, and
docker's CRI socket in kubeadm's InitConfiguration and JoinConfiguration."""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import ClusterError, ClusterfileError
from builder.image.digest import Digest
from builder.runtime import _delivery_shell as sh
from builder.runtime import actions, delivery
from builder.runtime.cluster import Cluster
from builder.runtime.clusterfile import dump_clusterfile, parse_clusterfile
from builder.runtime.container_runtime import check_container_runtime
from builder.runtime.phases.registry_service import registry_dir, storage_dir
from builder.runtime.plugins.kubeadm_config import init_documents, join_document
from builder.runtime.runner import RunOptions
from builder.runtime.state import ClusterState, SavedMeta
from builder.store.layout import Store

IMAGE = "example.test/kube-dataroot:v1"
DATA = "/data/sealer"
DOCKER_IMAGE_LABEL = "cluster.alpha.sealer.io/container-runtime-type"


def clusterfile(spec_extra: str = "", *, image: str = IMAGE) -> str:
    return textwrap.dedent(f"""\
        apiVersion: sealer.io/v2
        kind: Cluster
        metadata:
          name: c1
        spec:
          image: {image}
          hosts:
            - ips: [10.0.0.2]
              roles: [master]
            - ips: [10.0.0.3]
              roles: [node]
        """) + textwrap.indent(spec_extra, "  ")


def parse(text: str) -> Cluster:
    return parse_clusterfile(text, path="Clusterfile")


# --- the Clusterfile ----------------------------------------------------------------------------


def test_read_and_written_back_equal() -> None:
    c = parse(clusterfile(f"dataRoot: {DATA}\ncontainerRuntime:\n  type: docker\n"))
    assert (c.data_root, c.container_runtime, c.container_runtime_at) == (DATA, "docker", "Clusterfile:14")
    text = dump_clusterfile(c)
    spec = yaml.safe_load(text)["spec"]
    assert spec["dataRoot"] == DATA and spec["containerRuntime"] == {"type": "docker"}
    assert parse(text) == c


def test_defaults_are_not_written() -> None:
    # sealer's own default, an empty value and an empty type all mean "as the image / the hosts"
    for extra in ("dataRoot: /var/lib/sealer/data\n", 'dataRoot: ""\n', "containerRuntime: {}\n",
                  "containerRuntime: {type: }\n", ""):  # fmt: skip
        c = parse(clusterfile(extra))
        assert (c.data_root, c.container_runtime) == ("", "")
        assert "dataRoot" not in dump_clusterfile(c) and "containerRuntime" not in dump_clusterfile(c)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "dataRoot: data/sealer",
            "Clusterfile:12: spec.dataRoot: dataRoot 'data/sealer' is not an absolute path",
        ),
        ("dataRoot: /", "Clusterfile:12: spec.dataRoot: dataRoot '/' is not a plain directory path"),
        ("dataRoot: /data/sealer/", "Clusterfile:12: spec.dataRoot: dataRoot '/data/sealer/' is not a plain"),
        ("dataRoot: /data//sealer", "Clusterfile:12: spec.dataRoot: dataRoot '/data//sealer' is not a plain"),
        ("dataRoot: '/data/a b'", "Clusterfile:12: spec.dataRoot: dataRoot '/data/a b' is not a plain"),
        ("dataRoot: '/data/$(x)'", "Clusterfile:12: spec.dataRoot: dataRoot '/data/$(x)' is not a plain"),
        (
            "dataRoot: /data/../etc",
            "Clusterfile:12: spec.dataRoot: dataRoot '/data/../etc' has a '.' or '..'",
        ),
        ("dataRoot: /data/./x", "Clusterfile:12: spec.dataRoot: dataRoot '/data/./x' has a '.' or '..'"),
        (
            "dataRoot: /proc/sealer",
            "Clusterfile:12: spec.dataRoot: dataRoot '/proc/sealer' is in /proc, a system",
        ),
        ("dataRoot: /sys", "Clusterfile:12: spec.dataRoot: dataRoot '/sys' is in /sys"),
        ("dataRoot: /dev/shm/x", "Clusterfile:12: spec.dataRoot: dataRoot '/dev/shm/x' is in /dev"),
        ("dataRoot: /run/sealer", "Clusterfile:12: spec.dataRoot: dataRoot '/run/sealer' is in /run"),
        (
            "dataRoot: /var/run/sealer",
            "Clusterfile:12: spec.dataRoot: dataRoot '/var/run/sealer' is in /var/run",
        ),
        ("dataRoot: /etc/sealer", "Clusterfile:12: spec.dataRoot: dataRoot '/etc/sealer' is in /etc"),
        ("dataRoot: /var/lib", "Clusterfile:12: spec.dataRoot: dataRoot '/var/lib' is shared with other"),
        ("dataRoot: /var/lib/sealer", "Clusterfile:12: spec.dataRoot: dataRoot '/var/lib/sealer' is shared"),
        ("dataRoot: /opt", "Clusterfile:12: spec.dataRoot: dataRoot '/opt' is shared with other software"),
        ("dataRoot: [a]", "Clusterfile:12: spec.dataRoot: expected a string"),
        ("containerRuntime: docker", "Clusterfile:12: spec.containerRuntime: expected a mapping"),
        (
            "containerRuntime: {type: cri-o}",
            "Clusterfile:12: spec.containerRuntime.type: container runtime 'cri-o'",
        ),
        ("containerRuntime:\n  version: 1", "Clusterfile:13: spec.containerRuntime.version: unknown field"),
    ],
)
def test_refused_at_their_line(extra: str, expected: str) -> None:
    with pytest.raises(ClusterfileError) as info:
        parse(clusterfile(extra + "\n"))
    assert info.value.message.startswith(expected), info.value.message
    assert info.value.hint or "expected a" in expected or "unknown field" in expected


# --- the host paths -----------------------------------------------------------------------------


def test_every_host_path_of_the_cluster_is_under_its_data_root() -> None:
    p = sh.Paths(delivery.DEFAULT_ROOT, "c1", data_root=DATA)
    assert (p.data, p.rootfs, p.blobs) == (f"{DATA}/c1", f"{DATA}/c1/rootfs", f"{DATA}/.blobs/sha256")
    assert delivery.rootfs_path("c1", data_root=DATA, target="apps/a") == f"{DATA}/c1/apps/a/rootfs"
    assert registry_dir("c1", data_root=DATA) == f"{DATA}/c1/registry"
    assert storage_dir("c1", data_root=DATA) == f"{DATA}/c1/registry/storage"
    removal = sh.remove(p)
    assert "/var/lib/sealer" not in removal and f"{DATA}/*/applied" in removal
    # without one, the layout is the hosts' sealer root's, as before
    assert delivery.rootfs_path("c1") == "/var/lib/sealer/data/c1/rootfs"
    assert sh.Paths("/var/lib/sealer", "c1").blobs == "/var/lib/sealer/blobs/sha256"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "root")


def _build(
    store: Store, tmp_path: Path, tag: str, labels: str = "", files: dict[str, str] | None = None
) -> None:
    ctx = tmp_path / re.sub(r"[/:]", "_", tag)
    (ctx / "scripts").mkdir(parents=True)
    (ctx / "scripts" / "init.sh").write_text("#!/bin/sh\necho init\n")
    (ctx / "scripts" / "clean.sh").write_text("#!/bin/sh\necho clean\n")
    (ctx / "registry").mkdir()
    for rel, text in (files or {}).items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(text)
    copies = "".join(f"COPY {rel} {rel}\n" for rel in files or {})
    (ctx / "Kubefile").write_text(
        "FROM scratch\nLABEL cluster.alpha.sealer.io/cluster-runtime-type=kubernetes\n"
        f"{labels}COPY scripts scripts/\nCOPY registry registry/\n{copies}"
    )
    build_image(store, BuildOptions(context=ctx, tags=(tag,), bundle_images=False))


def _paths_in(lines: tuple[str, ...]) -> set[str]:
    """Every /var/lib/sealer or /data/sealer path a plan names."""
    return set(re.findall(r"(?:/var/lib/sealer|/data/sealer)[\w./*-]*", "\n".join(lines)))


def test_a_kubeadm_run_and_delete_plan_every_data_path_under_the_data_root(
    store: Store, tmp_path: Path
) -> None:
    _build(store, tmp_path, IMAGE)
    settings = actions.Settings(
        store=store, home=tmp_path / "state", options=RunOptions(dry_run=True, verbose=True)
    )
    auth = "registry:\n  localRegistry: {username: u, password: p}\n"  # the kubelet gets credentials
    cluster = parse(clusterfile(f"dataRoot: {DATA}\n{auth}"))
    run_plan = actions.run(cluster, settings).plan
    paths = _paths_in(run_plan)
    # golden: what the hosts get, each under the data root, and nothing under /var/lib/sealer
    assert {
        f"{DATA}/c1/rootfs",
        f"{DATA}/c1/applied",
        f"{DATA}/c1/registry",
        f"{DATA}/c1/registry/storage",
        f"{DATA}/c1/registry/tls/ca.crt",
    } <= paths
    assert "/var/lib/sealer" not in "\n".join(run_plan)
    assert f"cd -- {DATA}/c1" in "\n".join(run_plan)  # the delivery's switch
    assert f"SEALER_ROOTFS={DATA}/c1/rootfs" in "\n".join(run_plan)  # the scripts' env

    # the same cluster, saved as a run leaves it: delete --all plans the same paths away
    cs = ClusterState("c1", settings.home)
    cs.save(
        cluster, SavedMeta(IMAGE, Digest("sha256", "ab" * 32), "linux/amd64", "kubernetes", complete=True)
    )
    delete_plan = actions.delete("c1", settings, all_=True).plan
    text = "\n".join(delete_plan)
    assert f"rm -rf -- {DATA}/c1" in text and f"rm -rf {DATA}/c1/registry" in text
    assert f'rm -f "$(cat {DATA}/.registry-trust/c1.kubelet-config)"' in text
    assert "/var/lib/sealer" not in text


# --- a running cluster keeps them -----------------------------------------------------------------


def test_a_running_cluster_keeps_its_data_root_and_container_runtime(store: Store, tmp_path: Path) -> None:
    home = tmp_path / "state"
    saved = parse(clusterfile(f"dataRoot: {DATA}\n"))
    ClusterState("c1", home).save(
        saved, SavedMeta(IMAGE, Digest("sha256", "ab" * 32), "linux/amd64", "none", complete=True)
    )
    settings = actions.Settings(store=store, home=home, options=RunOptions(dry_run=True))
    for wanted, said in (
        (replace(saved, data_root="/data/other"), f"dataRoot {DATA} -> /data/other"),
        (replace(saved, data_root=""), f"dataRoot {DATA} -> (the default)"),
        (replace(saved, container_runtime="containerd"), "containerRuntime.type (the default) -> containerd"),
    ):
        for action in (actions.run, actions.apply):
            with pytest.raises(ClusterError) as info:
                action(wanted, settings)
            assert info.value.message == f"cluster c1 already runs; changed in spec: {said}"


# --- the container runtime ------------------------------------------------------------------------


def _docker(extra: str = "") -> Cluster:
    return parse(clusterfile(f"containerRuntime:\n  type: docker\n{extra}"))


@pytest.mark.parametrize(
    ("cluster", "label", "runtime", "ships", "expected"),
    [
        (_docker(), "containerd", None, None, "Clusterfile:13: spec.containerRuntime.type docker: "
         f"{IMAGE} runs containerd (label {DOCKER_IMAGE_LABEL}=containerd)"),
        (_docker(), None, None, None, f"Clusterfile:13: spec.containerRuntime.type docker: {IMAGE} does not "
         "say it runs docker (no container runtime label)"),
        (_docker(), "docker", "k3s", True, "Clusterfile:13: spec.containerRuntime.type docker: the k3s runtime "
         "runs its own containerd"),
        (_docker(), "docker", "kubernetes", False, "Clusterfile:13: spec.containerRuntime.type docker: "
         f"{IMAGE} (label {DOCKER_IMAGE_LABEL}=docker, Kubernetes of no KUBEVERSION) ships no bin/cri-dockerd"),
        (parse(clusterfile("containerRuntime: {type: containerd}")), "docker", None, None,
         "Clusterfile:12: spec.containerRuntime.type containerd: "
         f"{IMAGE} runs docker (label {DOCKER_IMAGE_LABEL}=docker)"),
    ],
)  # fmt: skip
def test_a_runtime_the_image_cannot_run_is_refused(
    cluster: Cluster, label: str | None, runtime: str | None, ships: bool | None, expected: str
) -> None:
    with pytest.raises(ClusterError) as info:
        check_container_runtime(cluster, IMAGE, label, runtime=runtime, ships_cri_dockerd=ships)
    assert info.value.message.startswith(expected), info.value.message
    assert info.value.hint


def test_docker_needs_cri_dockerd_from_kubernetes_1_24_on() -> None:
    docker = _docker()
    # below 1.24 the kubelet's dockershim reaches Docker Engine
    check_container_runtime(
        docker, IMAGE, "docker", runtime="kubernetes", ships_cri_dockerd=False, kube_version="v1.23.17"
    )
    for version in ("v1.24.0", "1.30.2", None):
        with pytest.raises(ClusterError, match=f"Kubernetes {version or 'of no KUBEVERSION'}\\) ships no"):
            check_container_runtime(
                docker, IMAGE, "docker", runtime="kubernetes", ships_cri_dockerd=False, kube_version=version
            )
    # such an older image's own dockershim socket stays
    shim = (
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\n"
        "nodeRegistration:\n  criSocket: /var/run/dockershim.sock\n"
    )
    registration = join_document(docker, docker.nodes[0], shim)["nodeRegistration"]
    assert registration["criSocket"] == "/var/run/dockershim.sock"


def test_what_the_image_runs_is_accepted() -> None:
    check_container_runtime(_docker(), IMAGE, "docker", runtime="kubernetes", ships_cri_dockerd=True)
    check_container_runtime(_docker(), IMAGE, "docker", runtime="none", ships_cri_dockerd=False)  # no kubelet
    containerd = parse(clusterfile("containerRuntime: {type: containerd}"))
    for label in ("containerd", None):  # the images here install containerd; k3s and k0s embed it
        check_container_runtime(containerd, IMAGE, label, runtime="k3s", ships_cri_dockerd=False)
    check_container_runtime(parse(clusterfile()), IMAGE, "docker", runtime="k0s", ships_cri_dockerd=False)


def test_refused_before_any_host_is_contacted(store: Store, tmp_path: Path) -> None:
    _build(store, tmp_path, IMAGE, labels=f"LABEL {DOCKER_IMAGE_LABEL}=containerd\n")
    unreachable = _docker()  # 10.0.0.x: no driver is ever made for them
    made: list[str] = []

    def no_driver(c: Cluster) -> object:
        made.append(c.name)
        raise AssertionError("a driver was made")

    settings = actions.Settings(store=store, home=tmp_path / "state", driver_factory=no_driver)  # type: ignore[arg-type]
    with pytest.raises(ClusterError, match="runs containerd"):
        actions.run(unreachable, settings)
    assert made == [] and not (tmp_path / "state" / "c1").exists()


def test_docker_kubelets_get_cri_dockerds_socket(store: Store, tmp_path: Path) -> None:
    image_kubeadm = (
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n"
        "nodeRegistration: {criSocket: unix:///run/containerd/containerd.sock}\n---\n"
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\n"
        "nodeRegistration: {criSocket: unix:///run/containerd/containerd.sock}\n"
    )
    docker = _docker()
    init = {d["kind"]: d for d in init_documents(docker, docker.master0, image_kubeadm)}
    assert init["InitConfiguration"]["nodeRegistration"]["criSocket"] == "unix:///var/run/cri-dockerd.sock"
    join = join_document(docker, docker.nodes[0], image_kubeadm)
    assert join["nodeRegistration"]["criSocket"] == "unix:///var/run/cri-dockerd.sock"
    # no type: the image's socket stays
    plain = parse(clusterfile())
    assert join_document(plain, plain.nodes[0], image_kubeadm)["nodeRegistration"]["criSocket"] == (
        "unix:///run/containerd/containerd.sock"
    )

    # the whole dry-run of a docker image that ships cri-dockerd: kubeadm's config says so
    _build(store, tmp_path, "example.test/kube-docker:v1", labels=f"LABEL {DOCKER_IMAGE_LABEL}=docker\n",
           files={"bin/cri-dockerd": "#!/bin/sh\n", "etc/kubeadm.yaml": image_kubeadm})  # fmt: skip
    settings = actions.Settings(
        store=store, home=tmp_path / "state", options=RunOptions(dry_run=True, verbose=True)
    )
    plan = "\n".join(actions.run(_docker_of("example.test/kube-docker:v1"), settings).plan)
    assert plan.count("criSocket: unix:///var/run/cri-dockerd.sock") == 2  # master0's init, the node's join
    assert "criSocket: unix:///run/containerd/containerd.sock" not in plan


def _docker_of(image: str) -> Cluster:
    return parse(clusterfile("containerRuntime:\n  type: docker\n", image=image))


def test_the_docs_example_loads() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "clusterfile.md"
    section = doc.read_text().split("### Where the cluster lives on the hosts")[1]
    example = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)[0]
    c = parse_clusterfile(example, path="docs/clusterfile.md")
    assert c.data_root == "/data/sealer" and parse_clusterfile(dump_clusterfile(c)) == c
    for line in re.findall(r"^error: Clusterfile:7: spec.dataRoot: .*$", section, re.MULTILINE):
        bad = re.search(r"dataRoot '([^']*)'", line)
        assert bad is not None
        with pytest.raises(ClusterfileError) as info:
            parse_clusterfile(example.replace("/data/sealer", bad.group(1)), path="Clusterfile")
        assert f"error: {info.value.message}" == line


def test_every_later_action_plans_under_the_saved_data_root(store: Store, tmp_path: Path) -> None:
    """upgrade, cert, an app run and exec read the data root from the saved cluster."""
    from builder.runtime.actions import cert as cert_action
    from builder.runtime.actions.remote_exec import host_env

    _build(store, tmp_path, IMAGE)
    _build(store, tmp_path, "example.test/kube-dataroot:v2")
    app_ctx = tmp_path / "app"
    app_ctx.mkdir()
    (app_ctx / "app.sh").write_text("echo app\n")
    (app_ctx / "Kubefile").write_text('FROM scratch\nCOPY app.sh .\nCMDS ["sh app.sh"]\n')
    build_image(store, BuildOptions(context=app_ctx, tags=("example.test/app:v1",), bundle_images=False))
    home = tmp_path / "state"
    saved = parse(clusterfile(f"dataRoot: {DATA}\n"))
    digest = actions.load_image(store, IMAGE, actions.image_platforms(store, IMAGE)[0])[0].digest
    assert digest is not None
    ClusterState("c1", home).save(saved, SavedMeta(IMAGE, digest, "linux/amd64", "kubernetes", complete=True))
    settings = actions.Settings(store=store, home=home, options=RunOptions(dry_run=True, verbose=True))

    plans = {
        "upgrade": actions.upgrade("c1", "example.test/kube-dataroot:v2", settings).plan,
        "cert": cert_action.cert("c1", settings, alt_names=("api.example.com",)).plan,
        "app": actions.run_app("c1", "example.test/app:v1", settings).plan,
    }
    for action, plan in plans.items():
        text = "\n".join(plan)
        assert f"{DATA}/c1/" in text and "/var/lib/sealer" not in text, action
    assert f"{DATA}/c1/apps/app/rootfs" in "\n".join(plans["app"])
    env = host_env(saved, saved.master0, {}, delivery.DEFAULT_ROOT)
    assert env["SEALER_ROOTFS"] == f"{DATA}/c1/rootfs"  # sealer exec's commands
