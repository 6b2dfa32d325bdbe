"""sealer's Application document and --apps: read strictly (one-line errors at the line), and
what the launch phase then runs on master0: launchApps in order, an app's launch.cmds and env,
the document's cmds, the admin kubeconfig of every runtime; unknown apps refused up front."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from builder.errors import ClusterError, ClusterfileError
from builder.image.descriptor import Platform
from builder.image.extension import Application
from builder.runtime.actions.prepare import rootfs_configs
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.configs import apply_config
from builder.runtime.facts import Facts
from builder.runtime.phases import ImageInfo, PlanState
from builder.runtime.phases.launch import Launch, check_apps
from builder.runtime.plugins import get_plugin

CLUSTER = """\
apiVersion: sealer.io/v2
kind: Cluster
metadata: {name: c1}
spec:
  image: example.test/apps:v1
  hosts:
  - {ips: [10.0.0.1], roles: [master]}
"""
APPLICATION = """\
---
apiVersion: sealer.io/v2
kind: Application
metadata: {name: apps}
spec:
  launchApps: [web, db]
  configs:
  - name: web
    launch:
      cmds: [kubectl apply -f application/apps/web/]
    env: [REPLICAS=3]
    files:
    - {path: deploy.yaml, strategy: merge, data: "spec: {replicas: 3}"}
"""
IMAGE = ImageInfo(
    "example.test/apps:v1",
    None,
    Platform.parse("linux/amd64"),
    launch_cmds=("echo image cmds",),
    app_names=("db",),
    applications=(
        Application("web", "kube", ("deploy.yaml",), env={"REPLICAS": "1", "TIER": "front"}),
        Application("db", "shell", ("install.sh",)),
        Application("extra", "shell", ("x.sh",)),
    ),
)


def _launch(text: str, runtime: str = "none", **changes: object) -> list[tuple[str, str, dict[str, str]]]:
    cluster = replace(parse_clusterfile(text), **changes)  # type: ignore[arg-type]
    check_apps(cluster, IMAGE)
    state = PlanState(IMAGE, get_plugin(runtime), cluster.ips)
    return [(s.id, s.full_command, dict(s.env)) for s in Launch().plan(cluster, Facts(), state)]


def test_launch_apps_in_order_with_an_apps_launch_cmds_and_env() -> None:
    steps = _launch(CLUSTER + APPLICATION)
    assert [(i, c) for i, c, _ in steps] == [
        ("app-web-0", "cd /var/lib/sealer/data/c1/rootfs && kubectl apply -f application/apps/web/"),
        ("app-db-0", "cd /var/lib/sealer/data/c1/rootfs && sh application/apps/db/install.sh"),
    ]
    assert steps[0][2]["REPLICAS"] == "3" and steps[0][2]["TIER"] == "front"  # the config's env over APPENV


def test_precedence_cmds_then_apps_flag_then_launch_apps_then_the_image() -> None:
    with_cmds = CLUSTER + APPLICATION.replace(
        "  launchApps: [web, db]\n", "  launchApps: [web, db]\n  cmds: [echo doc]\n"
    )
    assert [c for _, c, _ in _launch(with_cmds)] == ["cd /var/lib/sealer/data/c1/rootfs && echo doc"]
    assert [c for _, c, _ in _launch(with_cmds, cmds=("echo flag",))] == [
        "cd /var/lib/sealer/data/c1/rootfs && echo flag"
    ]
    assert [i for i, _, _ in _launch(CLUSTER + APPLICATION, app_names=("extra",))] == [
        "app-extra-0"
    ]  # --apps
    assert _launch(CLUSTER + APPLICATION.replace("[web, db]", '[""]')) == []  # sealer: [""] launches nothing
    assert [c for _, c, _ in _launch(CLUSTER)] == ["cd /var/lib/sealer/data/c1/rootfs && echo image cmds"]


@pytest.mark.parametrize(
    ("runtime", "kubeconfig"),
    [
        ("kubernetes", "/etc/kubernetes/admin.conf"),
        ("k3s", "/etc/rancher/k3s/k3s.yaml"),
        ("k0s", "/var/lib/k0s/pki/admin.conf"),
    ],
)
def test_launches_get_the_admin_kubeconfig_unless_the_cluster_sets_one(runtime: str, kubeconfig: str) -> None:
    assert _launch(CLUSTER + APPLICATION, runtime)[0][2]["KUBECONFIG"] == kubeconfig
    mine = CLUSTER.replace("  image:", "  env: [KUBECONFIG=/root/mine]\n  image:")
    assert _launch(mine + APPLICATION, runtime)[0][2]["KUBECONFIG"] == "/root/mine"
    assert "KUBECONFIG" not in _launch(CLUSTER + APPLICATION, "none")[0][2]


def test_app_files_merge_adding_keys_as_sealer_does() -> None:
    (config,) = rootfs_configs(parse_clusterfile(CLUSTER + APPLICATION))
    assert config.path == "application/apps/web/deploy.yaml"
    assert apply_config(config, "kind: Deployment\nspec: {paused: false}\n") == (
        "kind: Deployment\nspec:\n  paused: false\n  replicas: 3\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (APPLICATION.replace("[web, db]", "[web, cache]"), r"app 'cache' is not in image example\.test/apps:v1 \(apps: web, db, extra\)"),
        (APPLICATION.replace("  - name: web\n", "  - name: nope\n"), r"app 'nope' is not in image"),
    ],
)  # fmt: skip
def test_an_app_the_image_lacks_is_refused_before_any_host(text: str, expected: str) -> None:
    with pytest.raises(ClusterError, match=expected):
        _launch(CLUSTER + text)
    with pytest.raises(ClusterError, match=r"app 'ghost' is not in image") as info:
        _launch(CLUSTER, app_names=("ghost",))
    assert info.value.hint == "check --apps / spec.appNames"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("strategy: merge", "strategy: render", r"^Clusterfile:20: document 2\.spec\.configs\[0\]\.files\[0\]\.strategy: unknown strategy 'render'$"),
        ("path: deploy.yaml", "path: ../../../etc/passwd", r"^Clusterfile:20: document 2\.spec\.configs\[0\]\.files\[0\]\.path: '\.\./"),
        ("    env: [REPLICAS=3]", "    env: [3REPLICAS=3]", r"^Clusterfile:18: document 2\.spec\.configs\[0\]\.env\[0\]: '3REPLICAS' is not a valid"),
        ("  launchApps:", "  launch:", r"^Clusterfile:13: document 2\.spec\.launch: unknown field$"),
        ("apiVersion: sealer.io/v2\nkind: Application", "apiVersion: app.sealer.io/v1\nkind: Application",
         r"^Clusterfile:9: document 2\.apiVersion: app\.sealer\.io/v1 is not an Application version"),
    ],
)  # fmt: skip
def test_application_errors_name_the_line_and_field(old: str, new: str, expected: str) -> None:
    assert old in APPLICATION
    with pytest.raises(ClusterfileError) as info:
        parse_clusterfile(CLUSTER + APPLICATION.replace(old, new, 1))
    assert re.match(expected, info.value.message), info.value.message


def test_one_application_document_at_most() -> None:
    with pytest.raises(
        ClusterfileError, match=r"^Clusterfile:22: document 3: a second kind: Application document"
    ):
        parse_clusterfile(CLUSTER + APPLICATION + APPLICATION)
