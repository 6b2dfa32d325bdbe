"""An app image on a running cluster, end to end on real fixture hosts: `sealer run APP_IMAGE`
after `sealer run CLUSTER_IMAGE --masters --nodes` (builder/runtime/actions/apps.py).

The tests of this module run in order on one master and one node and one state home, each
from what the previous one left: the cluster, the app on master0 only, a re-run that moves
nothing, a v2 that launches again, status, and `delete --all`. The CLI tests at the end need
no hosts (a dry-run and the one-line refusals).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import HostError
from builder.image.digest import Digest
from builder.runtime import actions
from builder.runtime.clusterfile import cluster_from_flags
from builder.runtime.runner import HostBytes, RunEvent, StepFinished
from builder.runtime.state import ClusterState, SavedMeta
from builder.store.layout import Store
from tests.component.runtime.e2e.test_cluster_e2e import IMAGE, build_example, make_cluster
from tests.conftest import SealerRunner
from tests.hosts import HostLab, HostSet, TestHost

NAME = "e2e-apps"
APP_V1 = "example.test/demo-app:v1"
APP_V2 = "example.test/demo-app:v2"
APP_SH = """\
# writes what it was launched with where the test can read it (a private path of the host)
out=/var/lib/sealer/demo/$SEALER_CLUSTER
mkdir -p "$out"
echo launch >> "$out/app.launches"
{
  echo "pwd=$(pwd)"
  for k in SEALER_ROLE SEALER_HOST_IP SEALER_CLUSTER SEALER_ROOTFS SEALER_APP_ROOTFS \\
           APP_COLOR DEMO_COLOR DEMO_GREETING APP_WHO; do eval "echo $k=\\$$k"; done
} > "$out/app.env"
"""
KUBEFILE = """\
FROM scratch
ENV APP_COLOR=app-image DEMO_COLOR=app-image
COPY app.sh ./
COPY app.conf.tmpl etc/
CMDS ["sh app.sh"]
"""


def build_app(store: Store, context: Path, tag: str, *, version: str | None = None) -> None:
    context.mkdir(parents=True, exist_ok=True)
    (context / "app.sh").write_text(APP_SH)
    (context / "app.conf.tmpl").write_text("host={{ .SEALER_HOST_IP }} color={{ .DEMO_COLOR }}\n")
    kubefile = KUBEFILE
    if version is not None:
        (context / "VERSION").write_text(version)
        kubefile = kubefile.replace("CMDS", "COPY VERSION .\nCMDS")
    (context / "Kubefile").write_text(kubefile)
    build_image(store, BuildOptions(context=context, tags=(tag,), bundle_images=False))


@dataclass
class Lab:
    store: Store
    home: Path
    hosts: HostSet
    base: Path
    events: list[RunEvent]

    def settings(self) -> actions.Settings:
        self.events.clear()
        return actions.Settings(store=self.store, home=self.home, on_event=self.events.append)

    @property
    def master(self) -> TestHost:
        return self.hosts[0]

    @property
    def node(self) -> TestHost:
        return self.hosts[1]

    def bytes_by_host(self) -> dict[str, int]:
        return {e.host: e.bytes_sent for e in self.events if isinstance(e, HostBytes)}

    def launches(self) -> int:
        path = self.master.path(f"/var/lib/sealer/demo/{NAME}/app.launches")
        return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("apps")
    hosts = host_lab.make_hosts(2)
    store = Store.open(base / "store")
    try:
        build_example(store)
        build_app(store, base / "app-v1", APP_V1)
        yield Lab(store, base / "state", hosts, base, [])
    finally:
        store.close()
        host_lab.remove_hosts(hosts)


def cluster_tree(host: TestHost) -> tuple[str, str]:
    """What the cluster's rootfs is on `host`: its symlink target and its applied list."""
    data = host.path(f"/var/lib/sealer/data/{NAME}")
    return os.readlink(data / "rootfs"), (data / "applied").read_text()


def app_env(host: TestHost) -> dict[str, str]:
    text = host.path(f"/var/lib/sealer/demo/{NAME}/app.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


APP_ROOTFS = f"/var/lib/sealer/data/{NAME}/apps/demo-app/rootfs"


def test_the_app_goes_to_master0_only_and_launches_there(lab: Lab) -> None:
    members = [(lab.master, "master", lab.hosts), (lab.node, "node", lab.hosts)]
    actions.run(make_cluster(members, name=NAME, env={"DEMO_COLOR": "clusterfile"}), lab.settings())
    trees = {h.address: cluster_tree(h) for h in lab.hosts}

    outcome = actions.run_app(NAME, APP_V1, lab.settings(), cli_env={"APP_WHO": "cli"})
    assert (
        outcome.message
        == f"app {APP_V1} on cluster {NAME}: launched on {lab.master.address} from {APP_ROOTFS}"
    )
    assert [h.host for h in outcome.hosts] == [lab.master.address] and outcome.hosts[0].bytes_sent > 0
    assert set(lab.bytes_by_host()) == {lab.master.address}
    # the app's own tree on master0, its template rendered with master0's env; none on the node
    app_rootfs = lab.master.path(APP_ROOTFS)
    assert (app_rootfs / "app.sh").is_file() and not (app_rootfs / "scripts").exists()
    conf = (app_rootfs / "etc/app.conf").read_text()
    assert conf == f"host={lab.master.address} color=clusterfile\n"
    assert not lab.node.path(f"/var/lib/sealer/data/{NAME}/apps").exists()
    assert not lab.node.path(f"/var/lib/sealer/demo/{NAME}/app.env").exists()
    # the cluster's rootfs is what it was, on both hosts
    assert {h.address: cluster_tree(h) for h in lab.hosts} == trees
    # launched once, in the app's rootfs, with the cluster's env and master0's SEALER_*
    assert lab.launches() == 1
    env = app_env(lab.master)
    assert env == {
        "pwd": APP_ROOTFS,
        "SEALER_ROLE": "master",
        "SEALER_HOST_IP": lab.master.address,
        "SEALER_CLUSTER": NAME,
        "SEALER_ROOTFS": f"/var/lib/sealer/data/{NAME}/rootfs",
        "SEALER_APP_ROOTFS": APP_ROOTFS,
        "APP_COLOR": "app-image",  # the app image's ENV
        "DEMO_COLOR": "clusterfile",  # the Clusterfile's env over it
        "DEMO_GREETING": "hello",  # the cluster image's ENV under both
        "APP_WHO": "cli",
    }
    meta = ClusterState(NAME, lab.home).load_meta()
    assert meta is not None and meta.image == IMAGE and meta.complete  # the cluster's image stays
    assert [(a.name, a.image, a.launched) for a in meta.apps] == [("demo-app", APP_V1, True)]


def test_running_the_app_again_moves_nothing_and_launches_nothing(lab: Lab) -> None:
    outcome = actions.run_app(NAME, APP_V1, lab.settings(), cli_env={"APP_WHO": "cli"})
    assert "already runs" in outcome.message
    assert lab.bytes_by_host() == {} and [h.bytes_sent for h in outcome.hosts] == [0]
    assert lab.launches() == 1
    skipped = {(e.phase, e.host) for e in lab.events if isinstance(e, StepFinished) and e.skipped}
    assert ("launch-app", lab.master.address) in skipped


def test_the_same_through_the_cli(
    lab: Lab, sealer: SealerRunner, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(lab.home))
    build_app(store, lab.base / "app-v1-cli", APP_V1)  # reproducible: the same digest
    result = sealer("run", APP_V1, "-e", "APP_WHO=cli")  # the only saved cluster
    assert "already runs" in result.stderr
    assert lab.master.address in result.stdout and lab.node.address not in result.stdout
    assert lab.launches() == 1


def test_a_new_version_of_the_app_replaces_it_and_launches_again(lab: Lab) -> None:
    build_app(lab.store, lab.base / "app-v2", APP_V2, version="2\n")
    outcome = actions.run_app(NAME, APP_V2, lab.settings(), cli_env={"APP_WHO": "v2"})
    assert "launched" in outcome.message and outcome.hosts[0].bytes_sent > 0
    assert lab.launches() == 2 and app_env(lab.master)["APP_WHO"] == "v2"
    apps_dir = lab.master.path(f"/var/lib/sealer/data/{NAME}/apps/demo-app")
    assert (apps_dir / "rootfs/VERSION").read_text() == "2\n"
    assert [p.name for p in apps_dir.iterdir() if p.name.startswith("rootfs-")] == [
        os.readlink(apps_dir / "rootfs")
    ]  # the v1 tree is gone
    assert not lab.node.path(f"/var/lib/sealer/data/{NAME}/apps").exists()
    status = actions.status(NAME, lab.home)
    assert status["image"] == IMAGE
    assert [(a["name"], a["image"], a["launched"], a["host"], a["rootfs"]) for a in status["apps"]] == [
        ("demo-app", APP_V2, True, lab.master.address, APP_ROOTFS)
    ]


def test_a_failed_launch_is_named_and_a_rerun_resumes(lab: Lab) -> None:
    """A second app whose command fails until a file exists: the error names master0 and the
    phase on one line, the state says not launched; the re-run delivers nothing and launches."""
    flaky = "example.test/flaky-app:v1"
    ctx = lab.base / "flaky"
    ctx.mkdir()
    gate = f"/var/lib/sealer/demo/{NAME}"
    (ctx / "run.sh").write_text(
        f'[ -f {gate}/let-it-pass ] || {{ echo "not yet" >&2; exit 3; }}\necho ok > {gate}/flaky.done\n'
    )
    (ctx / "Kubefile").write_text('FROM scratch\nCOPY run.sh ./\nCMDS ["sh run.sh"]\n')
    build_image(lab.store, BuildOptions(context=ctx, tags=(flaky,), bundle_images=False))
    with pytest.raises(HostError) as info:
        actions.run_app(NAME, flaky, lab.settings())
    assert str(info.value) == f'{lab.master.address}: launch-app failed: "sh run.sh" exited 3: not yet'
    meta = ClusterState(NAME, lab.home).load_meta()
    assert meta is not None and [(a.name, a.launched) for a in meta.apps] == [
        ("demo-app", True),
        ("flaky-app", False),
    ]
    lab.master.path(f"{gate}/let-it-pass").write_text("")
    outcome = actions.run_app(NAME, flaky, lab.settings())
    assert "launched" in outcome.message and lab.bytes_by_host() == {}  # delivered the first time
    assert lab.master.path(f"{gate}/flaky.done").read_text() == "ok\n"
    assert not lab.node.path(f"/var/lib/sealer/data/{NAME}/apps").exists()


def test_status_lists_the_app(lab: Lab, sealer: SealerRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(lab.home))
    table = sealer("cluster", "status", "--cluster", NAME).stdout
    assert "APP" in table and "demo-app" in table and APP_V2 in table and APP_ROOTFS in table
    info = json.loads(sealer("cluster", "status", "--format", "json").stdout)
    assert [(a["image"], a["launched"]) for a in info["apps"]] == [
        (APP_V2, True),
        ("example.test/flaky-app:v1", True),
    ]


def test_an_app_without_launch_commands_is_delivered_only(lab: Lab) -> None:
    ctx = lab.base / "files-only"
    ctx.mkdir()
    (ctx / "data.txt").write_text("data\n")
    (ctx / "Kubefile").write_text("FROM scratch\nCOPY data.txt ./\n")
    build_image(
        lab.store, BuildOptions(context=ctx, tags=("example.test/files-only:v1",), bundle_images=False)
    )
    outcome = actions.run_app(NAME, "example.test/files-only:v1", lab.settings())
    assert outcome.message.endswith("it has no CMDS or LAUNCH apps to launch")
    data = lab.master.path(f"/var/lib/sealer/data/{NAME}/apps/files-only/rootfs/data.txt")
    assert data.read_text() == "data\n"


def test_delete_all_leaves_both_hosts_clean(lab: Lab) -> None:
    actions.delete(NAME, lab.settings(), all_=True)
    for host in lab.hosts:
        assert not host.path(f"/var/lib/sealer/data/{NAME}").exists()
        assert not host.path(f"/var/lib/sealer/demo/{NAME}").exists()  # the cluster's clean.sh
        assert not host.path("/usr/local/bin/sealer-demo").exists()
        blobs = host.path("/var/lib/sealer/blobs/sha256")
        assert not blobs.exists() or not any(blobs.iterdir())
    assert not ClusterState(NAME, lab.home).dir.exists()


# --- the CLI, without hosts ---------------------------------------------------------------------


@pytest.fixture
def saved_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cluster saved as `sealer run` leaves it (addresses no host answers: dry-runs only)."""
    home = tmp_path / "state"
    monkeypatch.setenv("SEALER_STATE_HOME", str(home))
    cluster = cluster_from_flags(IMAGE, "10.250.0.251", "10.250.0.252", name="cli-apps")
    meta = SavedMeta(IMAGE, Digest("sha256", "ab" * 32), "linux/amd64", "none", complete=True)
    ClusterState("cli-apps", home).save(cluster, meta)
    return home


def test_cli_dry_run_of_an_app(
    sealer: SealerRunner, store: Store, tmp_path: Path, saved_cluster: Path
) -> None:
    build_app(store, tmp_path / "app", APP_V1)
    before = (saved_cluster / "cli-apps" / "state.json").read_text()
    out = sealer("run", APP_V1, "--dry-run", "--verbose").stdout
    assert out.startswith(f"# run app: cluster cli-apps, image {APP_V1} (sha256:")
    for phase in ("== check", "== deliver-app", "== launch-app", "== save-state"):
        assert phase in out
    assert "10.250.0.251 (master0)" in out and "10.250.0.252 (node)" not in out
    assert (
        "/var/lib/sealer/data/cli-apps/apps/demo-app;" in out
        and f"cd {APP_ROOTFS.replace(NAME, 'cli-apps')}" in out
    )
    assert (saved_cluster / "cli-apps" / "state.json").read_text() == before
    # the cluster's own image stays a re-run of the cluster (today's behaviour: here, local)
    same = sealer("run", IMAGE, "--dry-run", "--cluster", "cli-apps", expect=1)
    assert "already exists with other hosts" in same.stderr
    # SSH flags are the saved cluster's
    flags = sealer("run", APP_V1, "-p", "pw", "--dry-run", expect=2)
    assert flags.stderr.startswith("error: -p: not for an app on cluster cli-apps")


def test_cli_refuses_a_cluster_image_as_an_app(
    sealer: SealerRunner, store: Store, tmp_path: Path, saved_cluster: Path
) -> None:
    ctx = tmp_path / "k3s"
    ctx.mkdir()
    (ctx / "x").write_text("x")
    (ctx / "Kubefile").write_text(
        "FROM scratch\nKUBEVERSION v1.30.1\nLABEL cluster.alpha.sealer.io/cluster-runtime-type=k3s\nCOPY x .\n"
    )
    build_image(store, BuildOptions(context=ctx, tags=("example.test/k3s:v1.30.1",), bundle_images=False))
    result = sealer("run", "example.test/k3s:v1.30.1", expect=1)  # refused before any host is contacted
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "error: example.test/k3s:v1.30.1 is a cluster image, not an app "
        "(runtime k3s, from its label cluster.alpha.sealer.io/cluster-runtime-type=k3s)"
    )
    assert (
        lines[1] == "hint: sealer upgrade example.test/k3s:v1.30.1 --cluster cli-apps moves the cluster to it"
    )


def test_cli_without_a_saved_cluster_runs_locally_as_before(
    sealer: SealerRunner, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "empty"))
    build_app(store, tmp_path / "app", APP_V1)
    out = sealer("run", APP_V1, "--dry-run").stdout
    assert out.startswith(f"# run: cluster my-cluster, image {APP_V1}") and "== deliver: " in out
