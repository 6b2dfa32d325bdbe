"""What the actions refuse about the cluster registry before any host is contacted: master0
deleted (or dropped by apply) when it is the only registry host, and a change of what the
hosts' trust is built on (endpoint, ha, insecure, local or external). A driver that fails the
test when used proves no host changed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import ClusterError, InvalidCluster
from builder.image.digest import Digest
from builder.runtime import actions
from builder.runtime.cluster import Cluster, HostSpec, RegistrySpec, Role
from builder.runtime.infra.base import InfraDriver
from builder.runtime.state import ClusterState, SavedMeta

IMAGE = "demo/cluster:v1"
DIGEST = Digest.from_bytes(b"image")


def no_driver(cluster: Cluster) -> InfraDriver:
    raise AssertionError(f"a host of {cluster.name} would have been contacted")


def saved(home: Path, registry: RegistrySpec) -> Cluster:
    hosts = (
        HostSpec("10.0.0.1", (Role.MASTER,)),
        HostSpec("10.0.0.2", (Role.MASTER,)),
        HostSpec("10.0.0.3", (Role.NODE,)),
    )
    cluster = Cluster("c1", IMAGE, hosts, registry=registry)
    ClusterState("c1", home).save(cluster, SavedMeta(IMAGE, DIGEST, "linux/amd64", "none", complete=True))
    return cluster


def settings(home: Path) -> actions.Settings:
    return actions.Settings(home=home, driver_factory=no_driver)


def test_delete_refuses_master0_when_it_is_the_only_registry_host(tmp_path: Path) -> None:
    saved(tmp_path, RegistrySpec(ha=False))
    with pytest.raises(ClusterError) as info:
        actions.delete("c1", settings(tmp_path), masters=["10.0.0.1"])
    assert "\n" not in info.value.message
    assert "only registry host" in info.value.message and "ha: false" in info.value.message
    assert info.value.hint == "sealer delete --all removes the whole cluster"


def test_delete_of_master0_with_ha_keeps_the_general_refusal(tmp_path: Path) -> None:
    saved(tmp_path, RegistrySpec())
    with pytest.raises(ClusterError, match="it leaves only with the whole cluster"):
        actions.delete("c1", settings(tmp_path), masters=["10.0.0.1"])


def test_apply_refuses_dropping_master0_the_only_registry_host(tmp_path: Path) -> None:
    cluster = saved(tmp_path, RegistrySpec(ha=False))
    wanted = replace(cluster, hosts=cluster.hosts[1:])
    with pytest.raises(InvalidCluster, match=r"only registry host .*ha: false"):
        actions.apply(wanted, settings(tmp_path))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"domain": "other.hub"}, "domain"),
        ({"port": 5001}, "port"),
        ({"ha": False}, "ha"),
        ({"insecure": True}, "insecure"),
        ({"external": True, "port": 443}, "localRegistry/externalRegistry"),
    ],
)
def test_run_and_apply_refuse_changing_the_registry_s_endpoint_or_kind(
    tmp_path: Path, change: dict[str, object], named: str
) -> None:
    cluster = saved(tmp_path, RegistrySpec())
    wanted = replace(cluster, registry=replace(cluster.registry, **change))  # type: ignore[arg-type]
    for action in (actions.run, actions.apply):
        with pytest.raises(ClusterError) as info:
            action(wanted, settings(tmp_path))
        assert "changed in spec.registry" in info.value.message and named in info.value.message
    assert not (ClusterState("c1", tmp_path).dir / "registry").exists()  # no material made either
