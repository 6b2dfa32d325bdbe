"""sealer's Plugin documents: read strictly from a Clusterfile and from an image's
plugins/*.yaml (one-line errors at the line), and planned at their phases for every runtime:
which phases get which hosts' hook steps, in what order, for run, join, delete and upgrade."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from builder.errors import ClusterfileError
from builder.image.descriptor import Platform
from builder.runtime import hooks
from builder.runtime.clusterfile import parse_clusterfile, parse_plugin_file
from builder.runtime.facts import Facts
from builder.runtime.hooks import ShellHook
from builder.runtime.phases import ImageInfo, PlanState, install_phases, removal_phases, upgrade_phases
from builder.runtime.plugins import get_plugin
from builder.runtime.registry_pki import RegistryMaterial

CLUSTER = """\
apiVersion: sealer.io/v2
kind: Cluster
metadata: {name: c1}
spec:
  image: example.test/k:v1
  hosts:
  - {ips: [10.0.0.1, 10.0.0.2], roles: [master]}
  - {ips: [10.0.0.3, 10.0.0.4], roles: [node]}
"""
PLUGIN = """\
---
apiVersion: sealer.io/v1
kind: Plugin
metadata:
  name: check-disk
spec:
  type: SHELL
  action: pre-init-host|post-install
  scope: master
  data: |
    df -h /var/lib
"""


def test_a_clusterfile_plugin_is_kept_and_read_back() -> None:
    cluster = parse_clusterfile(CLUSTER + PLUGIN)
    (doc,) = cluster.documents
    assert doc["kind"] == "Plugin" and doc["spec"]["action"] == "pre-init-host|post-install"  # type: ignore[index]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("action: pre-init-host|post-install", "action: pre-init-host|post-instal",
         r"^Clusterfile:16: document 2\.spec\.action: unknown phase 'post-instal'$"),
        ("type: SHELL", "type: HOSTNAME", r"^Clusterfile:15: document 2\.spec\.type: unknown type 'HOSTNAME'$"),
        ("scope: master", "scope: master|worker", r"^Clusterfile:17: document 2\.spec\.scope: unknown role 'worker'$"),
        ("  name: check-disk\n", "  labels: {}\n", r"^Clusterfile:13: document 2\.metadata\.name: missing$"),
        ("apiVersion: sealer.io/v1", "apiVersion: sealer.io/v2",
         r"^Clusterfile:10: document 2\.apiVersion: sealer\.io/v2 is not a Plugin version"),
        ("  data: |\n    df -h /var/lib\n", "  data: ''\n", r"^Clusterfile:18: document 2\.spec\.data: is empty$"),
        ("  scope: master\n", "  scope: master\n  on: node\n", r"^Clusterfile:18: document 2\.spec\.on: unknown field$"),
    ],
)  # fmt: skip
def test_plugin_errors_name_the_line_and_field(old: str, new: str, expected: str) -> None:
    assert old in PLUGIN
    with pytest.raises(ClusterfileError) as info:
        parse_clusterfile(CLUSTER + PLUGIN.replace(old, new, 1))
    assert re.match(expected, info.value.message), info.value.message


def test_an_images_plugin_file_holds_plugins_only() -> None:
    text = PLUGIN.removeprefix("---\n") + PLUGIN.replace("check-disk", "b")
    got = parse_plugin_file(text, path="img: plugins/p.yaml")
    assert [h.name for h in got] == ["check-disk", "b"]
    assert got[0] == ShellHook(
        "check-disk",
        ("pre-init-host", "post-install"),
        "df -h /var/lib",
        (hooks.Role.MASTER,),
        "img: plugins/p.yaml:1",
    )
    with pytest.raises(
        ClusterfileError, match=r"^img: plugins/p\.yaml:23: document 3: expected a kind: Plugin"
    ):
        parse_plugin_file(text + "---\napiVersion: v1\nkind: ConfigMap\n", path="img: plugins/p.yaml")
    with pytest.raises(ClusterfileError, match=r"^p\.yaml:3: invalid YAML"):
        parse_plugin_file("a: [\nb", path="p.yaml")


# --- planning --------------------------------------------------------------------------------------


def _every_phase_plugins() -> str:
    """One Clusterfile hook per phase (scope: every role), named after it."""
    return "".join(
        f"---\napiVersion: sealer.io/v1\nkind: Plugin\nmetadata: {{name: cf-{p}}}\n"
        f"spec: {{type: SHELL, action: {p}, data: 'echo {p}'}}\n"
        for p in hooks.HOOK_PHASES
    )


IMAGE_HOOK = ShellHook(
    "a-img", (hooks.PRE_INIT_HOST,), "echo image", (hooks.Role.NODE,), "img: plugins/x.yaml:1"
)


def _hook_rows(
    runtime: str, phases: tuple[object, ...], targets: tuple[str, ...], **state: object
) -> list[tuple[str, str, str]]:
    """(phase, host, step id) of the hook steps of `phases`, in plan order, with every other
    phase's presence kept as one (phase, "", "") row where it plans something."""
    cluster = parse_clusterfile(CLUSTER + _every_phase_plugins())
    image = ImageInfo("example.test/k:v1", None, Platform.parse("linux/amd64"), hooks=(IMAGE_HOOK,))
    material = RegistryMaterial("CA", "CERT", "KEY")
    s = PlanState(image, get_plugin(runtime), targets, registry=material, **state)  # type: ignore[arg-type]
    rows: list[tuple[str, str, str]] = []
    for phase in phases:
        steps = phase.plan(cluster, Facts(), s)  # type: ignore[attr-defined]
        name = phase.name  # type: ignore[attr-defined]
        if name.startswith("hook-"):
            rows += [(name, st.host, st.id) for st in steps]
    return rows


RUN = [
    ("hook-pre-install", "10.0.0.1", "hook-cf-pre-install"),
    ("hook-pre-init-host", "10.0.0.1", "hook-cf-pre-init-host"),
    ("hook-pre-init-host", "10.0.0.2", "hook-cf-pre-init-host"),
    ("hook-pre-init-host", "10.0.0.3", "hook-a-img"),  # the image's, scope node; before cf- by name
    ("hook-pre-init-host", "10.0.0.3", "hook-cf-pre-init-host"),
    ("hook-pre-init-host", "10.0.0.4", "hook-a-img"),
    ("hook-pre-init-host", "10.0.0.4", "hook-cf-pre-init-host"),
    *[("hook-post-init-host", f"10.0.0.{i}", "hook-cf-post-init-host") for i in (1, 2, 3, 4)],
    ("hook-post-install", "10.0.0.1", "hook-cf-post-install"),
]
JOIN = [
    ("hook-pre-scaleup", "10.0.0.1", "hook-cf-pre-scaleup"),  # on master0, though it does not join
    ("hook-pre-init-host", "10.0.0.4", "hook-a-img"),
    ("hook-pre-init-host", "10.0.0.4", "hook-cf-pre-init-host"),
    ("hook-post-init-host", "10.0.0.4", "hook-cf-post-init-host"),
    ("hook-post-scaleup", "10.0.0.1", "hook-cf-post-scaleup"),
]
DELETE_ALL = [
    ("hook-pre-uninstall", "10.0.0.1", "hook-cf-pre-uninstall"),
    *[("hook-pre-clean-host", f"10.0.0.{i}", "hook-cf-pre-clean-host") for i in (3, 4, 2, 1)],  # nodes first
    *[("hook-post-clean-host", f"10.0.0.{i}", "hook-cf-post-clean-host") for i in (3, 4, 2, 1)],
    ("hook-post-uninstall", "10.0.0.1", "hook-cf-post-uninstall"),
]
DELETE_NODE = [
    ("hook-pre-clean-host", "10.0.0.4", "hook-cf-pre-clean-host"),
    ("hook-post-clean-host", "10.0.0.4", "hook-cf-post-clean-host"),
]
UPGRADE = [
    ("hook-upgrade", "10.0.0.1", "hook-cf-upgrade"),
    *[("hook-upgrade-host", f"10.0.0.{i}", "hook-cf-upgrade-host") for i in (1, 2, 3, 4)],
]
ALL = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")


@pytest.mark.parametrize("runtime", ["none", "kubernetes", "k3s", "k0s"])
def test_hooks_are_planned_at_their_phases_on_every_runtime(runtime: str) -> None:
    assert _hook_rows(runtime, install_phases(), ALL) == RUN
    assert _hook_rows(runtime, install_phases(), ("10.0.0.4",)) == JOIN
    assert _hook_rows(runtime, removal_phases(), ALL, delete_all=True) == DELETE_ALL
    assert _hook_rows(runtime, removal_phases(), ("10.0.0.4",)) == DELETE_NODE
    assert _hook_rows(runtime, upgrade_phases(), ALL) == UPGRADE


def test_hook_phases_sit_where_sealer_runs_them() -> None:
    install = [p.name for p in install_phases()]
    assert install.index("deliver") < install.index("hook-pre-install") < install.index("hook-pre-init-host")
    assert install.index("hook-pre-init-host") < install.index("host-scripts")
    assert (
        install.index("join-nodes")
        < install.index("hook-post-init-host")
        < install.index("hook-post-install")
    )
    assert install.index("hook-post-scaleup") < install.index("node-config") < install.index("launch")
    removal = [p.name for p in removal_phases()]
    assert removal[:2] == ["hook-pre-uninstall", "hook-pre-clean-host"]
    assert removal[-4:-1] == ["hook-post-clean-host", "hook-post-uninstall", "remove-rootfs"]
    assert removal[-1] == "save-clusterfile"
    assert install[-1] == "save-clusterfile"
    assert removal.index("clean-scripts") < removal.index("hook-post-clean-host")
    upgrade = [p.name for p in upgrade_phases()]
    assert upgrade.index("hook-upgrade") < upgrade.index("hook-upgrade-host") < upgrade.index("upgrade")
    assert upgrade[-1] == "save-clusterfile"


def test_a_hook_runs_in_the_rootfs_with_the_hosts_env() -> None:
    cluster = parse_clusterfile(CLUSTER.replace("metadata: {name: c1}", "metadata: {name: c1}") + PLUGIN)
    cluster = replace(cluster, env={"DISK": "/var/lib"})
    image = ImageInfo("example.test/k:v1", None, Platform.parse("linux/amd64"))
    s = PlanState(image, get_plugin("none"), ALL)
    phase = next(p for p in install_phases() if p.name == "hook-pre-init-host")
    steps = phase.plan(cluster, Facts(), s)
    assert [st.host for st in steps] == ["10.0.0.1", "10.0.0.2"]  # scope: master
    assert steps[0].command == "cd /var/lib/sealer/data/c1/rootfs && df -h /var/lib"
    assert steps[0].env["DISK"] == "/var/lib" and steps[0].env["SEALER_ROLE"] == "master"
    assert steps[0].description == "pre-init-host hook check-disk (Clusterfile)"
    assert steps[0].journal  # resumable: a re-run skips it once it finished
