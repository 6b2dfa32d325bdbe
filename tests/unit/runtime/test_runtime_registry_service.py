"""registry-service and registry-remove plans, pure (which hosts, what a plan shows, secrets only
in env), and the storage merge run for real here with sh on temp directories."""

from __future__ import annotations

import base64
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import PhaseError
from builder.image.descriptor import Platform
from builder.runtime import registry_pki
from builder.runtime.cluster import Cluster, HostSpec, RegistrySpec, Role
from builder.runtime.dryrun import format_plan
from builder.runtime.facts import Facts, parse_probe
from builder.runtime.phases import Check, ImageInfo, PlanState, install_phases, removal_phases, upgrade_phases
from builder.runtime.phases.registry_remove import RemoveRegistry
from builder.runtime.phases.registry_service import (
    BASIC_AUTH_ENV,
    KEY_ENV,
    RegistryService,
    merge_tree_command,
    registry_dir,
    storage_dir,
    unit_name,
)
from builder.runtime.plugins import get_plugin
from builder.runtime.registry_pki import RegistryMaterial

MATERIAL = RegistryMaterial("CA-PEM", "CERT-PEM", "KEY-PEM-SECRET", "admin:$2y$10$HASHSECRET\n")


def cluster(**registry: object) -> Cluster:
    hosts = (
        HostSpec("10.0.0.1", (Role.MASTER,)),
        HostSpec("10.0.0.2", (Role.MASTER,)),
        HostSpec("10.0.0.3", (Role.NODE,)),
    )
    spec = RegistrySpec(**registry) if registry else RegistrySpec(username="admin", password="pw-secret")  # type: ignore[arg-type]
    return Cluster("c1", "demo/x:v1", hosts, registry=spec)


def state(c: Cluster, targets: tuple[str, ...], material: RegistryMaterial | None = MATERIAL) -> PlanState:
    image = ImageInfo("demo/x:v1", None, Platform.parse("linux/amd64"))
    return PlanState(image, get_plugin("k3s"), targets, registry=material)


def plan(
    c: Cluster, targets: tuple[str, ...], material: RegistryMaterial | None = MATERIAL
) -> list[tuple[str, str]]:
    return [(s.host, s.id) for s in RegistryService().plan(c, Facts(), state(c, targets, material))]


def test_every_master_serves_with_ha_after_host_scripts() -> None:
    c = cluster()
    assert plan(c, c.ips) == [
        ("10.0.0.1", "registry-config"),
        ("10.0.0.1", "registry-ready"),
        ("10.0.0.2", "registry-config"),
        ("10.0.0.2", "registry-ready"),
    ]
    for phases in (install_phases(), upgrade_phases()):
        names = [p.name for p in phases]
        assert names.index("registry-service") == names.index("host-scripts") + 1
    removal = [p.name for p in removal_phases()]
    assert removal.index("registry-remove") < removal.index("clean-scripts") < removal.index("remove-rootfs")


def test_scope_targets_unless_the_material_changed() -> None:
    c = cluster()
    assert plan(c, ("10.0.0.3",)) == []  # a worker joins: the registry hosts have nothing new
    assert [h for h, _ in plan(c, ("10.0.0.2",))] == ["10.0.0.2"] * 2
    # a master joined with ha: a new server certificate, so every registry host gets it
    assert {h for h, _ in plan(c, ("10.0.0.2",), replace(MATERIAL, changed=True))} == {"10.0.0.1", "10.0.0.2"}


def test_the_none_runtime_runs_no_registry() -> None:
    c = cluster()
    s = replace(state(c, c.ips), plugin=get_plugin("none"))
    assert RegistryService().plan(c, Facts(), s) == []
    assert RemoveRegistry().plan(c, Facts(), s) == []


def test_without_ha_master0_only_and_external_or_none_nothing() -> None:
    assert {h for h, _ in plan(cluster(ha=False), ("10.0.0.1", "10.0.0.2"))} == {"10.0.0.1"}
    ext = cluster(domain="r.example", external=True)
    assert plan(ext, ext.ips, None) == []
    assert RemoveRegistry().plan(ext, Facts(), state(ext, ext.ips, None)) == []


def test_secrets_only_in_env_and_shown_as_stars() -> None:
    c = cluster()
    steps = RegistryService().plan(c, Facts(), state(c, c.ips))
    for s in steps:
        assert "SECRET" not in s.command and "pw-secret" not in s.command
    config, ready = steps[0], steps[1]
    assert config.env[KEY_ENV] == "KEY-PEM-SECRET" and set(config.secret_env) == {
        KEY_ENV,
        "SEALER_REGISTRY_HTPASSWD",
    }
    assert base64.b64decode(ready.env[BASIC_AUTH_ENV]) == b"admin:pw-secret"
    assert ready.secret_env == (BASIC_AUTH_ENV,)
    assert "401" in ready.command and "200" in ready.command and "--cacert" in ready.command
    text = "\n".join(format_plan(c, [(RegistryService(), steps)], verbose=True))
    assert "SECRET" not in text and "pw-secret" not in text and f"{KEY_ENV}=***" in text
    assert ready.env[BASIC_AUTH_ENV] not in text
    assert (
        "Restart=always" in config.command
        and "rootdirectory: /var/lib/sealer/data/c1/registry/storage" in config.command
    )
    assert "blobdescriptor" not in config.command


def test_insecure_says_so_and_serves_no_tls() -> None:
    c = cluster(insecure=True)
    material = RegistryMaterial("", "", "", None)
    steps = RegistryService().plan(c, Facts(), state(c, c.ips, material))
    assert "plain HTTP (insecure: no TLS)" in steps[0].description and "no auth" in steps[0].description
    assert "tls:" not in steps[0].command and "auth:" not in steps[0].command
    assert "http://sea.hub:5000/v2/" in steps[1].command and "--cacert" not in steps[1].command
    assert steps[0].secret_env == ()


def test_removal_on_leaving_registry_hosts_in_removal_order() -> None:
    c = cluster()
    steps = RemoveRegistry().plan(c, Facts(), state(c, c.ips))
    assert [(s.host, s.stage) for s in steps] == [("10.0.0.2", 1), ("10.0.0.1", 2)]
    assert f"systemctl disable --now {unit_name('c1')}" in steps[0].command
    assert f"rm -rf {registry_dir('c1')}" in steps[0].command
    assert storage_dir("c1").startswith(registry_dir("c1"))


# --- the storage merge, for real -------------------------------------------------------------------

BLOB = "docker/registry/v2/blobs/sha256/ab/abcd/data"
LAYER_LINK = "docker/registry/v2/repositories/app/_layers/sha256/abcd/link"
TAG_LINK = "docker/registry/v2/repositories/app/_manifests/tags/v1/current/link"


def tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def merge(src: Path, dst: Path, *, move_tags: bool = False) -> None:
    subprocess.run(["sh", "-c", merge_tree_command(str(src), str(dst), move_tags=move_tags)], check=True)


def test_merge_links_blobs_copies_links_and_never_touches_the_source(tmp_path: Path) -> None:
    src, dst = tmp_path / "rootfs/registry", tmp_path / "storage"
    tree(src, {BLOB: "blob", LAYER_LINK: "sha256:abcd", TAG_LINK: "sha256:m1"})
    merge(src, dst)
    assert (dst / BLOB).stat().st_ino == (src / BLOB).stat().st_ino  # hardlinked: no copy of big data
    assert (dst / LAYER_LINK).stat().st_ino != (src / LAYER_LINK).stat().st_ino  # copied
    assert (dst / TAG_LINK).read_text() == "sha256:m1"
    # distribution rewrites link files in place: the delivered tree must not see it
    with open(dst / TAG_LINK, "r+") as f:
        f.write("sha256:m9")
    assert (src / TAG_LINK).read_text() == "sha256:m1"
    # again: only what the storage lacks; a tag the registry moved stays where it is
    tree(src, {"docker/registry/v2/blobs/sha256/ef/ef01/data": "blob2"})
    merge(src, dst)
    assert (dst / TAG_LINK).read_text() == "sha256:m9"
    assert (dst / "docker/registry/v2/blobs/sha256/ef/ef01/data").read_text() == "blob2"
    assert not list(dst.rglob("*.sealer-tmp"))
    # an app's new version moves its tag
    (src / TAG_LINK).write_text("sha256:m2")
    merge(src, dst, move_tags=True)
    assert (dst / TAG_LINK).read_text() == "sha256:m2"


def test_merge_without_a_source_does_nothing(tmp_path: Path) -> None:
    merge(tmp_path / "none", tmp_path / "storage")
    assert not (tmp_path / "storage").exists()


# --- golden dry-run plans, every runtime with one (none: no plan, above) ---------------------------------------------------------

GOLDEN_RUN = """\
== registry-service: Serve the cluster registry
  10.0.0.1 (master0): sealer-registry-c1.service on :5000, TLS, htpasswd auth for admin; /var/lib/sealer/data/c1/rootfs/registry into its storage
  10.0.0.1 (master0): wait until sea.hub:5000/v2/ answers on this host
  10.0.0.2 (master): sealer-registry-c1.service on :5000, TLS, htpasswd auth for admin; /var/lib/sealer/data/c1/rootfs/registry into its storage
  10.0.0.2 (master): wait until sea.hub:5000/v2/ answers on this host
# 4 steps on 2 hosts, up to 0 B to send; --verbose shows each step's commands"""

GOLDEN_DELETE_ALL = """\
== registry-remove: Remove the cluster registry
  10.0.0.2 (master): stop, disable and remove sealer-registry-c1.service; remove /var/lib/sealer/data/c1/registry
  10.0.0.1 (master0): stop, disable and remove sealer-registry-c1.service; remove /var/lib/sealer/data/c1/registry
# 2 steps on 2 hosts, up to 0 B to send; --verbose shows each step's commands"""

GOLDEN_VERBOSE_ENV = (
    "# (shared) env: SEALER_REGISTRY_CA='<CA certificate of cluster c1>' "
    "SEALER_REGISTRY_CERT='<server certificate of sea.hub>' SEALER_REGISTRY_HTPASSWD=*** SEALER_REGISTRY_KEY=***"
)


@pytest.mark.parametrize("runtime", ["kubernetes", "k3s", "k0s"])
def test_golden_dry_runs(runtime: str) -> None:
    c = cluster()
    s = replace(state(c, c.ips, registry_pki.planned(c)), plugin=get_plugin(runtime))
    assert (
        "\n".join(format_plan(c, [(RegistryService(), RegistryService().plan(c, Facts(), s))])) == GOLDEN_RUN
    )
    removal = [(RemoveRegistry(), RemoveRegistry().plan(c, Facts(), s))]
    assert "\n".join(format_plan(c, removal)) == GOLDEN_DELETE_ALL
    verbose = format_plan(c, [(RegistryService(), RegistryService().plan(c, Facts(), s))], verbose=True)
    assert verbose[0] == GOLDEN_VERBOSE_ENV
    assert sum(line.startswith("    $ ") for line in verbose) == 4


# --- the check phase: a registry host needs a registry binary ------------------------------------


def probed(host: str, tools: str) -> Facts:
    lines = ["arch=x86_64", "hostname=h", *(f"tool={t}" for t in tools.split()), "free_kb=99999999"]
    out = "\n".join(lines) + "\n"
    return Facts({host: parse_probe(host, out)})


def test_check_refuses_a_registry_host_without_a_registry_binary_before_any_change() -> None:
    c = cluster()
    s = state(c, c.ips)
    base = "sh tar sha256sum zstd"
    with pytest.raises(PhaseError) as info:
        Check.verify(probed("10.0.0.2", base), s, c)
    assert "10.0.0.2: no registry binary for the cluster registry" in info.value.message
    assert "\n" not in info.value.message and "apt-get install docker-registry" in info.value.message
    Check.verify(probed("10.0.0.2", base + " docker-registry"), s, c)  # the host's
    with_binary = replace(s, image=replace(s.image, files={"bin/registry": ""}))
    Check.verify(probed("10.0.0.2", base), with_binary, c)  # the image's
    Check.verify(probed("10.0.0.3", base), s, c)  # a node serves no registry
    Check.verify(probed("10.0.0.2", base), replace(s, plugin=get_plugin("none")), c)
