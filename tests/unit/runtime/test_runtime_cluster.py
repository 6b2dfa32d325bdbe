"""The cluster model: IP lists and ranges, host rules, derived clusters and the apply diff."""

from __future__ import annotations

import re

import pytest

from builder.errors import HostError, InvalidCluster
from builder.runtime.cluster import (
    Cluster,
    HostSpec,
    Role,
    SSHSpec,
    check_cluster_name,
    diff,
    parse_ip,
    parse_ip_list,
)
from builder.runtime.cluster_addresses import expand_ip_range

IMAGE = "docker.io/sealerio/kubernetes:v1.22.15"


def master(ip: str) -> HostSpec:
    return HostSpec(ip, (Role.MASTER,))


def node(ip: str) -> HostSpec:
    return HostSpec(ip, (Role.NODE,))


def cluster(*hosts: HostSpec, image: str = IMAGE) -> Cluster:
    return Cluster(name="c1", image=image, hosts=hosts)


# --- addresses ---------------------------------------------------------------------------------


def test_parse_ip_canonicalises_v4_and_v6() -> None:
    assert parse_ip(" 10.0.0.1 ") == "10.0.0.1"
    assert parse_ip("FD00:0:0::0001") == "fd00::1"


@pytest.mark.parametrize("text", ["10.0.0.x", "10.0.0.256", "", "host.example", "10.0.0.1:22"])
def test_parse_ip_refuses(text: str) -> None:
    with pytest.raises(InvalidCluster, match="is not an IP address"):
        parse_ip(text)


def test_port_suffix_gets_a_hint() -> None:
    with pytest.raises(InvalidCluster) as info:
        parse_ip("10.0.0.1:2222")
    assert info.value.hint is not None and "port" in info.value.hint


def test_range_is_inclusive_like_sealer() -> None:
    assert expand_ip_range("192.168.56.3-192.168.56.7") == tuple(f"192.168.56.{i}" for i in range(3, 8))
    assert expand_ip_range("10.0.0.255-10.0.1.1") == ("10.0.0.255", "10.0.1.0", "10.0.1.1")
    assert expand_ip_range("fd00::fe-fd00::101") == ("fd00::fe", "fd00::ff", "fd00::100", "fd00::101")
    assert expand_ip_range("10.0.0.4-10.0.0.4") == ("10.0.0.4",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.5-10.0.0.1", "ends before it starts"),
        ("10.0.0.1-3", "the end of a range is a full address"),
        ("10.0.0.1-10.0.0.2-10.0.0.3", "is not an IP range"),
        ("-10.0.0.1", "is not an IP address"),
        ("10.0.0.1-", "is not an IP address"),
        ("a-b", "is not an IP address"),
        ("10.0.0.1-fd00::1", "mixes IPv4 and IPv6"),
        ("10.0.0.0-10.0.255.255", "spans 65536 addresses; at most 4096"),
    ],
)
def test_bad_ranges(text: str, message: str) -> None:
    with pytest.raises(InvalidCluster, match=message):
        expand_ip_range(text)


def test_ip_list_mixes_items_and_ranges_in_order() -> None:
    assert parse_ip_list("10.0.0.9,10.0.0.1-10.0.0.3,10.0.0.5") == (
        "10.0.0.9",
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.0.0.5",
    )


def test_ip_list_limits_and_duplicates() -> None:
    with pytest.raises(InvalidCluster, match=re.escape("10.0.0.2 is listed twice")):
        parse_ip_list("10.0.0.1-10.0.0.3,10.0.0.2")
    with pytest.raises(InvalidCluster, match="more than 4096"):
        parse_ip_list("10.0.0.0-10.0.15.255,10.1.0.0")
    with pytest.raises(InvalidCluster, match="empty item"):
        parse_ip_list("10.0.0.1,,10.0.0.2")


# --- model rules -------------------------------------------------------------------------------


def test_properties() -> None:
    c = cluster(node("10.0.0.4"), master("10.0.0.2"), master("10.0.0.3"))
    assert [h.ip for h in c.masters] == ["10.0.0.2", "10.0.0.3"]
    assert [h.ip for h in c.nodes] == ["10.0.0.4"]
    assert c.master0.ip == "10.0.0.2"
    assert c.ips == ("10.0.0.4", "10.0.0.2", "10.0.0.3")
    assert c.host("10.0.0.3").is_master
    assert c.has_host("10.0.0.4") and not c.has_host("10.0.0.9")
    with pytest.raises(HostError, match=re.escape("10.0.0.9 is not a host of cluster c1")):
        c.host("10.0.0.9")


def test_even_number_of_masters_is_allowed() -> None:
    assert len(cluster(master("10.0.0.1"), master("10.0.0.2")).masters) == 2


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ((node("10.0.0.1"),), "no master"),
        ((master("10.0.0.1"), master("10.0.0.1")), "10.0.0.1 is listed twice"),
        ((master("10.0.0.1"), node("10.0.0.1")), "10.0.0.1 is both a master and a node"),
        ((master("10.0.0.1"), node("fd00::1")), "all hosts must be IPv4 or all IPv6"),
        (
            (
                HostSpec("10.0.0.1", (Role.MASTER,), local=True),
                HostSpec("10.0.0.2", (Role.NODE,), local=True),
            ),
            "only one host can be the local machine",
        ),
    ],
)
def test_host_rules(hosts: tuple[HostSpec, ...], message: str) -> None:
    with pytest.raises(InvalidCluster, match=message):
        cluster(*hosts)


def test_roles() -> None:
    assert HostSpec("10.0.0.1", ("master",)).roles == (Role.MASTER,)  # type: ignore[arg-type]
    with pytest.raises(InvalidCluster) as info:
        HostSpec("10.0.0.1", ("worker",))  # type: ignore[arg-type]
    assert "unknown role 'worker'" in info.value.message and "node" in (info.value.hint or "")
    with pytest.raises(InvalidCluster, match="exactly one role"):
        HostSpec("10.0.0.1", (Role.MASTER, Role.NODE))
    with pytest.raises(InvalidCluster, match="taint"):
        HostSpec("10.0.0.1", (Role.NODE,), taints=("bad taint",))
    assert HostSpec("10.0.0.1", (Role.NODE,), taints=("dedicated=gpu:NoSchedule", "x:NoExecute-")).taints


@pytest.mark.parametrize("name", ["my-cluster", "a", "c1", "x" * 63])
def test_good_names(name: str) -> None:
    assert check_cluster_name(name) == name


@pytest.mark.parametrize("name", ["My-Cluster", "-a", "a-", "a_b", "a.b", "", "x" * 64, "../etc"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidCluster, match="DNS-1123"):
        check_cluster_name(name)


def test_ssh_spec_checks_port_and_hides_secrets() -> None:
    with pytest.raises(InvalidCluster, match="outside 1-65535"):
        SSHSpec(port=0)
    with pytest.raises(InvalidCluster, match="outside 1-65535"):
        SSHSpec(port=65536)
    assert "hunter2" not in repr(SSHSpec(password="hunter2", passphrase="hunter2"))


def test_image_is_required() -> None:
    with pytest.raises(InvalidCluster, match="no image"):
        cluster(master("10.0.0.1"), image="")


# --- derived clusters --------------------------------------------------------------------------


def test_with_and_without_hosts() -> None:
    c = cluster(master("10.0.0.1"))
    grown = c.with_hosts([node("10.0.0.2"), node("10.0.0.3")])
    assert grown.ips == ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert c.ips == ("10.0.0.1",)  # unchanged
    assert grown.without_hosts(["10.0.0.2"]).ips == ("10.0.0.1", "10.0.0.3")
    with pytest.raises(InvalidCluster, match=re.escape("10.0.0.2 is listed twice")):
        grown.with_hosts([node("10.0.0.2")])
    with pytest.raises(HostError, match=re.escape("10.0.0.9 is not a host")):
        grown.without_hosts(["10.0.0.9"])
    with pytest.raises(InvalidCluster, match="no master"):
        grown.without_hosts(["10.0.0.1"])


# --- apply diff --------------------------------------------------------------------------------


def test_diff_nothing() -> None:
    c = cluster(master("10.0.0.1"), node("10.0.0.2"))
    assert diff(c, c).is_empty


def test_diff_add_node() -> None:
    saved = cluster(master("10.0.0.1"), node("10.0.0.2"))
    d = diff(saved.with_hosts([node("10.0.0.3")]), saved)
    assert [h.ip for h in d.join_nodes] == ["10.0.0.3"]
    assert not (d.join_masters or d.remove_masters or d.remove_nodes or d.image_changed)


def test_diff_remove_node() -> None:
    saved = cluster(master("10.0.0.1"), node("10.0.0.2"), node("10.0.0.3"))
    d = diff(saved.without_hosts(["10.0.0.2"]), saved)
    assert [h.ip for h in d.remove_nodes] == ["10.0.0.2"]
    assert not (d.join_masters or d.join_nodes or d.remove_masters or d.image_changed)


def test_diff_add_and_remove_master() -> None:
    saved = cluster(master("10.0.0.1"), master("10.0.0.2"), node("10.0.0.5"))
    wanted = saved.without_hosts(["10.0.0.2"]).with_hosts([master("10.0.0.3"), master("10.0.0.4")])
    d = diff(wanted, saved)
    assert [h.ip for h in d.join_masters] == ["10.0.0.3", "10.0.0.4"]
    assert [h.ip for h in d.remove_masters] == ["10.0.0.2"]
    assert not d.join_nodes and not d.remove_nodes


def test_diff_image_change() -> None:
    saved = cluster(master("10.0.0.1"))
    d = diff(cluster(master("10.0.0.1"), image="docker.io/sealerio/kubernetes:v1.23.0"), saved)
    assert d.image_changed and not d.join_nodes


def test_diff_refuses_role_change_and_master0_moves() -> None:
    saved = cluster(master("10.0.0.1"), master("10.0.0.2"), node("10.0.0.3"))
    with pytest.raises(InvalidCluster, match=re.escape("10.0.0.3 changes role from node to master")):
        diff(cluster(master("10.0.0.1"), master("10.0.0.2"), master("10.0.0.3")), saved)
    with pytest.raises(InvalidCluster, match=re.escape("master0 10.0.0.1 cannot be removed")):
        diff(saved.without_hosts(["10.0.0.1"]), saved)
    with pytest.raises(InvalidCluster, match=re.escape("master0 would change from 10.0.0.1 to 10.0.0.2")):
        diff(cluster(master("10.0.0.2"), master("10.0.0.1"), node("10.0.0.3")), saved)
    with pytest.raises(InvalidCluster, match="differs from the saved"):
        diff(Cluster(name="other", image=IMAGE, hosts=saved.hosts), saved)


def test_ssh_spec_matches_the_drivers_credentials() -> None:
    import ast
    from pathlib import Path

    # Read infra/base.py's source rather than import it: the infra package is heavier than the model.
    base = Path(__file__).resolve().parents[3] / "builder" / "runtime" / "infra" / "base.py"
    tree = ast.parse(base.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SSHCredentials")
    names = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    assert names == list(SSHSpec.__slots__)
