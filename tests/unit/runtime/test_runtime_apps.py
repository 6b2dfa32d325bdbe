"""`run_app`'s plans, without hosts: which image is an app, its name and tree on master0, the
dry-run plan (master0 only, env precedence, --cmds), the saved apps list (and older state.json
without one) and the delivery target."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import ClusterError
from builder.image.digest import Digest
from builder.runtime import _delivery_shell as sh
from builder.runtime import actions, delivery
from builder.runtime.actions.apps import app_name
from builder.runtime.clusterfile import cluster_from_flags
from builder.runtime.runner import RunOptions
from builder.runtime.state import AppRecord, ClusterState, SavedMeta
from builder.store.layout import Store

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CLUSTER_IMAGE = "example.test/cluster-rootfs:v1"
APP = "example.test/app:v1"
DIGEST = Digest("sha256", "ab" * 32)


@pytest.fixture
def st(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "root")


def build(store: Store, tmp_path: Path, tag: str, kubefile: str, files: dict[str, str]) -> None:
    ctx = tmp_path / tag.replace("/", "_").replace(":", "_")
    ctx.mkdir()
    for rel, text in files.items():
        (ctx / rel).write_text(text)
    (ctx / "Kubefile").write_text(kubefile)
    build_image(store, BuildOptions(context=ctx, tags=(tag,), bundle_images=False))


def save_cluster(home: Path, *, complete: bool = True, cmds: tuple[str, ...] = ()) -> ClusterState:
    cluster = cluster_from_flags(
        CLUSTER_IMAGE, "10.0.0.1", "10.0.0.2", env={"COLOR": "cluster"}, cmds=cmds, name="c1"
    )
    cs = ClusterState("c1", home)
    meta = SavedMeta(
        CLUSTER_IMAGE,
        DIGEST,
        "linux/amd64",
        "none",
        cli_env={"GREETING": "saved-cli"},
        image_env={"COLOR": "cluster-image", "BASE": "cluster-image"},
        complete=complete,
    )
    cs.save(cluster, meta)
    return cs


def dry(store: Store, home: Path) -> actions.Settings:
    return actions.Settings(store=store, home=home, options=RunOptions(dry_run=True, verbose=True))


def test_an_app_is_its_repository_and_its_name_is_unique() -> None:
    assert app_name("example.test/app:v1", DIGEST, ()) == ("app", None)
    v1 = AppRecord("app", "example.test/app:v1", DIGEST, launched=True)
    assert app_name("example.test/app:v2", Digest("sha256", "cd" * 32), (v1,)) == ("app", v1)
    other, record = app_name("other.test/team/app:v1", DIGEST, (v1,))
    assert record is None and other.startswith("app-") and len(other) == len("app-") + 8
    assert app_name("Not A Reference", DIGEST, ()) == ("ab" * 6, None)


def test_the_delivery_target_is_a_tree_of_its_own_under_the_cluster() -> None:
    assert delivery.rootfs_path("c1", target="apps/app") == "/var/lib/sealer/data/c1/apps/app/rootfs"
    assert delivery.rootfs_path("c1") == "/var/lib/sealer/data/c1/rootfs"
    for bad in ("../x", "apps/../x", "/abs", "rootfs-x", "applied", "apps/.staging-x", "Apps/x", "apps//x"):
        with pytest.raises(ClusterError, match="not a plain relative path"):
            delivery.rootfs_path("c1", target=bad)
    p = sh.Paths("/var/lib/sealer", "c1", "apps/app")
    assert p.staging("id") == "/var/lib/sealer/data/c1/apps/app/.staging-id"
    assert p.blobs == "/var/lib/sealer/blobs/sha256"
    # blobs stay while a cluster or an app names them (keep_blobs)
    assert "/var/lib/sealer/data/*/apps/*/applied" in sh.remove(sh.Paths("/var/lib/sealer", "c1"))
    assert sh.remove(p).startswith("set -e; rm -rf -- /var/lib/sealer/data/c1/apps/app;")


def test_an_older_state_json_has_no_apps_and_save_keeps_them(tmp_path: Path) -> None:
    old = {"image": CLUSTER_IMAGE, "digest": str(DIGEST), "platform": "linux/amd64", "runtime": "none"}
    assert SavedMeta.from_json(old).apps == ()
    cs = save_cluster(tmp_path)
    meta = cs.load_meta()
    cluster = cs.load_cluster()
    assert meta is not None and cluster is not None
    app = AppRecord("app", APP, DIGEST, launched=True)
    cs.save(cluster, replace(meta, apps=(app,)))
    assert json.loads(cs.meta_path.read_text())["apps"] == [
        {"name": "app", "image": APP, "digest": str(DIGEST), "launched": True}
    ]
    cs.save(cluster, replace(meta, complete=False))  # run/apply/upgrade know nothing of apps
    again = cs.load_meta()
    assert again is not None and again.apps == (app,) and not again.complete


def test_dry_run_plans_master0_only_from_the_apps_own_rootfs(st: Store, tmp_path: Path) -> None:
    build(
        st,
        tmp_path,
        APP,
        'FROM scratch\nENV COLOR=app BASE2=app\nCOPY app.sh ./\nCOPY app.conf.tmpl etc/\nCMDS ["sh app.sh"]\n',
        {"app.sh": "echo hi\n", "app.conf.tmpl": "color={{ .COLOR }} at {{ .SEALER_APP_ROOTFS }}\n"},
    )
    home = tmp_path / "state"
    cs = save_cluster(home, cmds=("echo the cluster's own cmds",))
    before = cs.meta_path.read_text()
    out = actions.run_app("c1", APP, dry(st, home), cli_env={"GREETING": "cli"})
    assert out.dry_run
    text = "\n".join(out.plan)
    rootfs = "/var/lib/sealer/data/c1/apps/app/rootfs"
    assert out.plan[0].startswith(f"# run app: cluster c1, image {APP} (sha256:")
    assert [line for line in out.plan if line.startswith("== ")] == [
        "== check: Check hosts",
        "== deliver-app: Deliver the app's rootfs to master0",
        "== launch-app: Launch the app on master0",
        "== save-state: Save the cluster's apps (this machine)",
    ]
    assert "  10.0.0.2 (node)" not in text and text.count("  10.0.0.1 (master0)") == 3  # master0 only
    assert f"$ cd {rootfs} && sh app.sh" in text
    assert "the cluster's own cmds" not in text  # Clusterfile-free
    assert "/var/lib/sealer/data/c1/apps/app;" in text  # the switch, in the app's dir
    assert "cd -- /var/lib/sealer/data/c1;" not in text  # never the cluster's rootfs
    assert "<rendered" not in text  # master0's template layer is rendered for the plan
    env_line = next(line for line in out.plan if line.startswith("    env: ") and "SEALER_APP_ROOTFS" in line)
    env = dict(w.split("=", 1) for w in env_line.split()[1:])
    # cluster image ENV < app image ENV < Clusterfile env < saved -e < this -e; then SEALER_*
    assert env["BASE"] == "cluster-image" and env["BASE2"] == "app" and env["COLOR"] == "cluster"
    assert env["GREETING"] == "cli" and env["SEALER_ROLE"] == "master" and env["SEALER_NODES"] == "10.0.0.2"
    assert env["SEALER_ROOTFS"] == "/var/lib/sealer/data/c1/rootfs" and env["SEALER_APP_ROOTFS"] == rootfs
    assert cs.meta_path.read_text() == before and not cs.journal_path.exists()  # nothing written

    cmds = "\n".join(actions.run_app("c1", APP, dry(st, home), cmds=["echo mine"]).plan)
    assert f"$ cd {rootfs} && echo mine" in cmds and "sh app.sh" not in cmds


def test_the_example_app_launches_its_manifests(st: Store, tmp_path: Path) -> None:
    build_image(st, BuildOptions(context=EXAMPLES / "app", tags=(APP,), bundle_images=False))
    save_cluster(tmp_path)
    plan = actions.run_app("c1", APP, dry(st, tmp_path)).plan
    assert "    $ cd /var/lib/sealer/data/c1/apps/app/rootfs && kubectl apply -f manifests/nginx.yaml" in plan


def test_cluster_images_are_refused_pointing_at_upgrade(st: Store, tmp_path: Path) -> None:
    build(
        st,
        tmp_path,
        "example.test/k3s:v1.30.1",
        "FROM scratch\nKUBEVERSION v1.30.1\nLABEL cluster.alpha.sealer.io/cluster-runtime-type=k3s\nCOPY x .\n",
        {"x": "x"},
    )
    save_cluster(tmp_path)
    with pytest.raises(ClusterError) as info:
        actions.run_app("c1", "example.test/k3s:v1.30.1", dry(st, tmp_path))
    assert str(info.value) == (
        "example.test/k3s:v1.30.1 is a cluster image, not an app "
        "(runtime k3s, from its label cluster.alpha.sealer.io/cluster-runtime-type=k3s)"
    )
    assert info.value.hint == "sealer upgrade example.test/k3s:v1.30.1 --cluster c1 moves the cluster to it"
    with pytest.raises(ClusterError, match="another version of cluster c1's image"):
        actions.run_app("c1", "example.test/cluster-rootfs:v2", dry(st, tmp_path))
    with pytest.raises(ClusterError, match=re.escape(f"already runs {CLUSTER_IMAGE}")):
        actions.run_app("c1", CLUSTER_IMAGE, dry(st, tmp_path))
    assert not actions.runs_as_app("c1", CLUSTER_IMAGE, tmp_path)
    assert actions.runs_as_app("c1", APP, tmp_path) and not actions.runs_as_app("c2", APP, tmp_path)


def test_an_unfinished_cluster_runs_no_app(st: Store, tmp_path: Path) -> None:
    save_cluster(tmp_path, complete=False)
    with pytest.raises(ClusterError, match="did not finish"):
        actions.run_app("c1", APP, dry(st, tmp_path))
    with pytest.raises(ClusterError, match="no saved cluster c9"):
        actions.run_app("c9", APP, dry(st, tmp_path))


def test_state_json_keeps_digests_as_strings_and_refuses_a_bad_one(tmp_path: Path) -> None:
    """In memory the saved digests are Digest values; on disk state.json keeps `sha256:<hex>`.
    A digest that is not one is a one-line ClusterError naming the file, as any unreadable state."""
    cs = save_cluster(tmp_path)
    meta = cs.load_meta()
    assert meta is not None and meta.digest == DIGEST
    assert json.loads(cs.meta_path.read_text())["digest"] == str(DIGEST)
    doc = json.loads(cs.meta_path.read_text())
    cs.meta_path.write_text(json.dumps({**doc, "digest": "sha256:nope"}))
    with pytest.raises(
        ClusterError, match=r"state.json: cannot read the saved state: invalid digest 'sha256:nope'"
    ):
        cs.load_meta()
