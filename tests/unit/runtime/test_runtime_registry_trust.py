"""registry-trust / registry-untrust plans, pure: which host gets which file, the mirror order
(own address first), the credentials only in env, the rewrite of every host when a registry
host joins or leaves, and what the removal takes away. The files' contents are checked against
the formats their readers parse (TOML, YAML, JSON); the real containerd pulls with them in
tests/component/runtime/e2e/test_registry_containerd.py."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import replace

import pytest
import yaml

from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.runtime.cluster import Cluster, RegistrySpec
from builder.runtime.clusterfile import cluster_from_flags
from builder.runtime.facts import Facts
from builder.runtime.phases import ImageInfo, PlanState
from builder.runtime.phases._registry_client import SECRET_ENV, SECRET_PLACEHOLDER, write_file_command
from builder.runtime.phases.base import Phase, Step
from builder.runtime.phases.registry_trust import RegistryTrust, RegistryUntrust
from builder.runtime.plugins import get_plugin
from builder.runtime.registry_pki import RegistryMaterial
from builder.runtime.runner import format_plan

IMAGE = ImageInfo(name="demo:v1", digest=Digest("sha256", "ab" * 32), platform=Platform("linux", "amd64"))
BASE = cluster_from_flags("demo:v1", "10.0.0.1,10.0.0.2", "10.0.0.3", name="c1")
MATERIAL = RegistryMaterial(
    ca_pem="-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n", cert_pem="C", key_pem="K"
)
AUTH = RegistrySpec(username="admin", password="s3cr3t-pw")


def cluster(**spec: object) -> Cluster:
    return replace(BASE, registry=RegistrySpec(**spec))  # type: ignore[arg-type]


def plan(
    c: Cluster,
    runtime: str = "kubernetes",
    targets: tuple[str, ...] | None = None,
    *,
    phase: Callable[[], Phase] = RegistryTrust,
) -> list[Step]:
    state = PlanState(IMAGE, get_plugin(runtime), c.ips if targets is None else targets, registry=MATERIAL)
    return phase().plan(c, Facts(), state)


def by(steps: list[Step], host: str, step_id: str) -> Step:
    (found,) = [s for s in steps if s.host == host and s.id == step_id]
    return found


def files_of(step: Step) -> dict[str, str]:
    """{path: text} of a step's `shown` lines (what write_file_command writes)."""
    out: dict[str, str] = {}
    path = None
    for line in step.shown:
        if line.startswith("write "):
            path = line.split()[1]
            out[path] = ""
        elif path is not None:
            out[path] += line.removeprefix("    ") + "\n"
    return out


def test_every_host_resolves_the_domain_to_itself_or_master0() -> None:
    steps = plan(cluster())
    assert "10.0.0.1 sea.hub" in by(steps, "10.0.0.1", "registry-hosts-entry").command
    assert "10.0.0.2 sea.hub" in by(steps, "10.0.0.2", "registry-hosts-entry").command  # ha: a registry host
    assert "10.0.0.1 sea.hub" in by(steps, "10.0.0.3", "registry-hosts-entry").command
    steps = plan(cluster(ha=False))
    assert "10.0.0.1 sea.hub" in by(steps, "10.0.0.2", "registry-hosts-entry").command


def test_hosts_toml_lists_every_registry_host_own_first_with_the_ca() -> None:
    steps = plan(cluster())
    on_master1 = files_of(by(steps, "10.0.0.2", "registry-mirrors"))
    assert sorted(on_master1) == [
        f"/etc/containerd/certs.d/{r}/hosts.toml"
        for r in ("docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "sea.hub:5000")
    ]
    docker = tomllib.loads(on_master1["/etc/containerd/certs.d/docker.io/hosts.toml"])
    assert docker["server"] == "https://registry-1.docker.io"
    assert list(docker["host"]) == ["https://10.0.0.2:5000", "https://10.0.0.1:5000"]
    for host in docker["host"].values():
        assert host == {
            "capabilities": ["pull", "resolve"],
            "ca": "/etc/containerd/certs.d/sea.hub:5000/ca.crt",
        }
    own = tomllib.loads(on_master1["/etc/containerd/certs.d/sea.hub:5000/hosts.toml"])
    assert own["server"] == "https://sea.hub:5000" and own["ca"].endswith("sea.hub:5000/ca.crt")
    node = tomllib.loads(
        files_of(by(steps, "10.0.0.3", "registry-mirrors"))["/etc/containerd/certs.d/quay.io/hosts.toml"]
    )
    assert list(node["host"]) == ["https://10.0.0.1:5000", "https://10.0.0.2:5000"]
    ca = by(steps, "10.0.0.3", "registry-ca")
    assert "/etc/containerd/certs.d/sea.hub:5000/ca.crt" in ca.command
    assert "/etc/docker/certs.d/sea.hub:5000/ca.crt" in ca.command


def test_credentials_reach_hosts_only_through_env_and_files_are_0600() -> None:
    steps = plan(replace(BASE, registry=AUTH))
    text = "\n".join(format_plan(replace(BASE, registry=AUTH), [(RegistryTrust(), steps)], verbose=True))
    assert "s3cr3t-pw" not in text and f"{SECRET_ENV}=***" in text
    mirrors = by(steps, "10.0.0.3", "registry-mirrors")
    assert mirrors.secret_env == (SECRET_ENV,)
    assert "s3cr3t-pw" not in mirrors.command and "YWRtaW46czNjcjN0LXB3" not in mirrors.command
    assert mirrors.env[SECRET_ENV] == "YWRtaW46czNjcjN0LXB3"  # base64 admin:s3cr3t-pw
    hosts = tomllib.loads(files_of(mirrors)["/etc/containerd/certs.d/docker.io/hosts.toml"])
    assert hosts["host"]["https://10.0.0.1:5000"]["header"] == {
        "Authorization": [f"Basic {SECRET_PLACEHOLDER}"]
    }
    assert "chmod 0600" in mirrors.command
    kubelet = by(steps, "10.0.0.3", "registry-kubelet-credentials")
    config = json.loads(files_of(kubelet)["/var/lib/kubelet/config.json"])
    assert config == {"auths": {"sea.hub:5000": {"auth": SECRET_PLACEHOLDER}}}  # never docker.io's
    assert kubelet.secret_env == (SECRET_ENV,)
    assert not [s for s in plan(cluster()) if s.id == "registry-kubelet-credentials"]


def test_write_file_command_fills_the_secret_from_env(tmp_path: object) -> None:
    import subprocess
    from pathlib import Path

    target = Path(str(tmp_path)) / "d" / "f.toml"
    command = write_file_command(str(target), f"a = \"{SECRET_PLACEHOLDER}\"\n'q' $x\n", 0o600)
    subprocess.run(["sh", "-c", command], env={SECRET_ENV: "c2VjcmV0", "PATH": "/usr/bin:/bin"}, check=True)
    assert target.read_text() == "a = \"c2VjcmV0\"\n'q' $x\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["f.toml"]  # no temp file left


def test_insecure_uses_http_and_skip_verify_and_no_ca() -> None:
    steps = plan(cluster(insecure=True))
    no_ca = by(steps, "10.0.0.3", "registry-ca")  # a CA of an earlier TLS run goes
    assert no_ca.command.startswith("rm -f ") and "plain HTTP" in no_ca.description
    hosts = tomllib.loads(
        files_of(by(steps, "10.0.0.3", "registry-mirrors"))["/etc/containerd/certs.d/ghcr.io/hosts.toml"]
    )
    assert hosts["host"]["http://10.0.0.1:5000"] == {"capabilities": ["pull", "resolve"], "skip_verify": True}


def test_external_registry_no_hosts_entry_no_ca_mirrors_to_its_name() -> None:
    steps = plan(cluster(external=True, domain="reg.example.com", port=8443, username="u", password="p"))
    assert {s.id for s in steps} == {"registry-mirrors", "registry-kubelet-credentials"}
    hosts = tomllib.loads(
        files_of(by(steps, "10.0.0.1", "registry-mirrors"))["/etc/containerd/certs.d/docker.io/hosts.toml"]
    )
    assert list(hosts["host"]) == ["https://reg.example.com:8443"]
    assert "ca" not in hosts["host"]["https://reg.example.com:8443"]  # the system's CAs


def test_no_ca_material_no_plan_for_a_tls_local_registry() -> None:
    state = PlanState(IMAGE, get_plugin("kubernetes"), BASE.ips)
    assert RegistryTrust().plan(BASE, Facts(), state) == []


def test_k3s_registries_yaml_and_k0s_dropin() -> None:
    c = replace(BASE, registry=AUTH)
    k3s = files_of(by(plan(c, "k3s"), "10.0.0.3", "registry-mirrors"))
    doc = yaml.safe_load(k3s["/etc/rancher/k3s/registries.yaml"])
    assert doc["mirrors"]["docker.io"]["endpoint"] == ["https://10.0.0.1:5000", "https://10.0.0.2:5000"]
    assert doc["mirrors"]["sea.hub:5000"]["endpoint"] == ["https://10.0.0.1:5000", "https://10.0.0.2:5000"]
    assert sorted(doc["configs"]) == ["10.0.0.1:5000", "10.0.0.2:5000", "sea.hub:5000"]
    assert doc["configs"]["10.0.0.1:5000"] == {
        "tls": {"ca_file": "/etc/containerd/certs.d/sea.hub:5000/ca.crt"},
        "auth": {"auth": SECRET_PLACEHOLDER},
    }
    k0s = files_of(by(plan(c, "k0s"), "10.0.0.3", "registry-mirrors"))
    dropin = tomllib.loads(k0s["/etc/k0s/containerd.d/sealer-registry.toml"])
    assert dropin["plugins"]["io.containerd.grpc.v1.cri"]["registry"] == {
        "config_path": "/etc/containerd/certs.d"
    }
    assert "/var/lib/k0s/kubelet/config.json" in files_of(
        by(plan(c, "k0s"), "10.0.0.3", "registry-kubelet-credentials")
    )
    assert plan(c, "none") == [] and plan(c, "none", phase=RegistryUntrust) == []  # no container runtime


@pytest.mark.parametrize(("joining", "rewritten"), [("10.0.0.4", {"10.0.0.4"}), ("10.0.0.5", None)])
def test_a_master_joining_rewrites_every_hosts_mirrors(joining: str, rewritten: set[str] | None) -> None:
    grown = cluster_from_flags("demo:v1", "10.0.0.1,10.0.0.2,10.0.0.4", "10.0.0.3,10.0.0.5", name="c1")
    steps = plan(grown, targets=(joining,))
    assert {s.host for s in steps if s.id == "registry-hosts-entry"} == {joining}
    mirrored = {s.host for s in steps if s.id == "registry-mirrors"}
    if rewritten:  # a master: every host's list now names it
        assert mirrored == set(grown.ips)
        node = tomllib.loads(
            files_of(by(steps, "10.0.0.3", "registry-mirrors"))[
                "/etc/containerd/certs.d/docker.io/hosts.toml"
            ]
        )
        assert "https://10.0.0.4:5000" in node["host"]
    else:  # a node: nobody else changes
        assert mirrored == {joining}


def test_removal_takes_everything_and_rewrites_the_rest_without_a_leaving_master() -> None:
    c = replace(BASE, registry=AUTH)
    steps = plan(c, "k0s", ("10.0.0.2",), phase=RegistryUntrust)
    gone = by(steps, "10.0.0.2", "registry-untrust").command
    for path in (
        "/etc/containerd/certs.d/docker.io/hosts.toml",
        "/etc/containerd/certs.d/sea.hub:5000/ca.crt",
        "/etc/docker/certs.d/sea.hub:5000/ca.crt",
        "/etc/k0s/containerd.d/sealer-registry.toml",
        "# BEGIN sealer registry of cluster c1",
        "/var/lib/sealer/registry-trust/c1.kubelet-config",
    ):
        assert path in gone
    node = tomllib.loads(
        files_of(by(steps, "10.0.0.3", "registry-mirrors"))["/etc/containerd/certs.d/docker.io/hosts.toml"]
    )
    assert list(node["host"]) == ["https://10.0.0.1:5000"]
    assert {s.host for s in steps if s.id == "registry-mirrors"} == {"10.0.0.1", "10.0.0.3"}
    # a node leaving: nobody else's list changes
    assert {s.host for s in plan(c, "k0s", ("10.0.0.3",), phase=RegistryUntrust)} == {"10.0.0.3"}


def test_app_images_merge_on_every_registry_host_among_the_targets() -> None:
    from builder.runtime.phases.add_app_images import AddAppImages

    app = "/var/lib/sealer/data/c1/apps/web/rootfs"
    steps = plan(cluster(), targets=("10.0.0.1", "10.0.0.2", "10.0.0.3"), phase=lambda: AddAppImages(app))
    assert [s.host for s in steps] == ["10.0.0.1", "10.0.0.2"]  # the node serves no registry
    assert (
        f"{app}/registry" in steps[0].command
        and "/var/lib/sealer/data/c1/registry/storage" in steps[0].command
    )
    assert (
        plan(cluster(ha=False), targets=("10.0.0.1", "10.0.0.2"), phase=lambda: AddAppImages(app))[0].host
        == "10.0.0.1"
    )
    assert plan(cluster(external=True, domain="reg.example.com"), phase=lambda: AddAppImages(app)) == []


GOLDEN_RUN = """\
== registry-trust: Trust and mirror the cluster registry
  10.0.0.1 (master0): sea.hub -> 10.0.0.1 in /etc/hosts
  10.0.0.1 (master0): the registry's CA for containerd and docker (sea.hub:5000)
  10.0.0.1 (master0): mirrors of 5 registries -> 10.0.0.1:5000, 10.0.0.2:5000
  10.0.0.1 (master0): the kubelet's pull credentials for sea.hub:5000
  10.0.0.2 (master): sea.hub -> 10.0.0.2 in /etc/hosts
  10.0.0.2 (master): the registry's CA for containerd and docker (sea.hub:5000)
  10.0.0.2 (master): mirrors of 5 registries -> 10.0.0.2:5000, 10.0.0.1:5000
  10.0.0.2 (master): the kubelet's pull credentials for sea.hub:5000
  10.0.0.3 (node): sea.hub -> 10.0.0.1 in /etc/hosts
  10.0.0.3 (node): the registry's CA for containerd and docker (sea.hub:5000)
  10.0.0.3 (node): mirrors of 5 registries -> 10.0.0.1:5000, 10.0.0.2:5000
  10.0.0.3 (node): the kubelet's pull credentials for sea.hub:5000
# 12 steps on 3 hosts, up to 0 B to send; --verbose shows each step's commands"""

GOLDEN_MASTER_LEAVES = """\
== registry-untrust: Remove the cluster registry's trust and mirrors
  10.0.0.1 (master0): mirrors of 5 registries -> 10.0.0.1:5000
  10.0.0.3 (node): mirrors of 5 registries -> 10.0.0.1:5000
  10.0.0.2 (master): the registry's CA, mirrors, credentials and /etc/hosts entry of c1
# 3 steps on 3 hosts, up to 0 B to send; --verbose shows each step's commands"""


@pytest.mark.parametrize("runtime", ["kubernetes", "k3s", "k0s"])
def test_golden_dry_runs(runtime: str) -> None:
    c = replace(BASE, registry=AUTH)
    assert "\n".join(format_plan(c, [(RegistryTrust(), plan(c, runtime))])) == GOLDEN_RUN
    leaving = [(RegistryUntrust(), plan(c, runtime, ("10.0.0.2",), phase=RegistryUntrust))]
    assert "\n".join(format_plan(c, leaving)) == GOLDEN_MASTER_LEAVES
