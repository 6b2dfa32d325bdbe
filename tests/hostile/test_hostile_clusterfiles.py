"""The hostile-Clusterfile corpus: each input refused with ClusterfileError (UsageError for the
flags) and a one-line message naming the file and line.

Found by a fault probe: YAML nested 50,000 deep (once a RecursionError), aliases that expand
to billions of nodes or contain themselves, files of 56 MB (98 s to read) or that are no files
(a FIFO with no writer, /dev/zero), addresses that name no host (unspecified, broadcast,
multicast, IPv4 and IPv6), a directory or a device as the SSH key, and one env key repeated
many times (once quadratic). Text cases run through `parse_clusterfile`, file cases through
`load_clusterfile`, as `sealer run -f` and the saved state read them; one of each through the
CLI to check the exit status and that no traceback is printed.
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.errors import ClusterfileError, UsageError
from builder.runtime._bounded_yaml import MAX_NODES
from builder.runtime.clusterfile import (
    MAX_CLUSTERFILE_BYTES,
    cluster_from_flags,
    load_clusterfile,
    parse_clusterfile,
)
from tests.conftest import SealerRunner

HEAD = "apiVersion: sealer.io/v2\nkind: Cluster\nspec:\n  image: demo/app:v1\n"
HOSTS = "  hosts:\n  - ips: [10.0.0.1]\n    roles: [master]\n"  # lines 5-7
OTHER = (
    "---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n"  # lines 8-10 after HEAD + HOSTS
)


def cluster(hosts: str = HOSTS, *, ssh: str = "", extra: str = "") -> str:
    return HEAD + ssh + hosts + extra


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def laughs() -> str:
    """Ten levels of ten aliases each: 10**10 nodes in 500 bytes (a6 is the first over the cap)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def alias_chain() -> str:
    """Each anchor 40 levels deep holding an alias to the previous one: 81 levels at b1."""
    return "".join(
        f"b{i}: &b{i} " + "[" * 40 + (f"*b{i - 1}" if i else "x") + "]" * 40 + "\n" for i in range(3)
    )


@dataclass(frozen=True)
class Case:
    text: str
    message: str  # the exact one-line form, path "Clusterfile"


DEEP = "nested more than 64 levels deep"
CASES = {
    "flow-nested-50000-deep": Case(
        cluster(extra=OTHER + "x: " + nested(50_000) + "\n"), f"Clusterfile:11: {DEEP}"
    ),
    "flow-nested-200-deep": Case(
        cluster(extra=OTHER + "x: " + nested(200) + "\n"), f"Clusterfile:11: {DEEP}"
    ),
    "labels-nested-100-deep": Case(
        cluster(HOSTS + "    labels: " + "{a: " * 100 + "b" + "}" * 100 + "\n"), f"Clusterfile:8: {DEEP}"
    ),
    "alias-bomb": Case(
        cluster(extra=OTHER + laughs()),
        f"Clusterfile:17: stands for more than {MAX_NODES} nodes once its aliases are expanded",
    ),
    "recursive-alias": Case(
        cluster(extra=OTHER + "a: &a [x, *a]\n"), "Clusterfile:11: alias *a refers to a node that contains it"
    ),
    "alias-chain-deep": Case(
        cluster(extra=OTHER + alias_chain()), f"Clusterfile:12: {DEEP} once its aliases are expanded"
    ),
    **{
        f"host-{name}": Case(
            cluster(
                f"  hosts:\n  - ips: [10.0.0.1]\n    roles: [master]\n  - ips: ['{ip}']\n    roles: [node]\n"
            ),
            f"Clusterfile:8: spec.hosts[1].ips[0]: {shown} is {what}, not a host",
        )
        for name, ip, shown, what in [
            ("unspecified", "0.0.0.0", "0.0.0.0", "the unspecified address"),
            ("this-network", "0.1.2.3", "0.1.2.3", "in 0.0.0.0/8 ('this network', RFC 1122)"),
            ("broadcast", "255.255.255.255", "255.255.255.255", "the broadcast address"),
            ("multicast", "224.0.0.1", "224.0.0.1", "a multicast address (224.0.0.0/4)"),
            ("mapped-multicast", "::ffff:239.1.1.1", "::ffff:ef01:101", "a multicast address (224.0.0.0/4)"),
        ]
    },
    **{
        f"host-v6-{name}": Case(
            cluster(f"  hosts:\n  - ips: ['{ip}']\n    roles: [master]\n"),
            f"Clusterfile:6: spec.hosts[0].ips[0]: {ip} is {what}, not a host",
        )
        for name, ip, what in [
            ("unspecified", "::", "the unspecified address"),
            ("multicast", "ff02::1", "a multicast address (ff00::/8)"),
        ]
    },
    "pk-directory": Case(
        cluster(ssh="  ssh:\n    pk: /etc\n"),
        "Clusterfile:6: spec.ssh.pk: /etc is a directory, not a private key",
    ),
    "pk-device": Case(
        cluster(ssh="  ssh:\n    pk: /dev/null\n"),
        "Clusterfile:6: spec.ssh.pk: /dev/null is not a regular file, so not a private key",
    ),
    "pk-list-directory": Case(
        cluster(ssh="  ssh:\n    pk: [~/.ssh/id_missing, /etc]\n"),
        "Clusterfile:6: spec.ssh.pk[1]: /etc is a directory, not a private key",
    ),
    "host-pk-directory": Case(
        cluster(HOSTS + "    ssh: {pk: /}\n"),
        "Clusterfile:8: spec.hosts[0].ssh.pk: / is a directory, not a private key",
    ),
    "known-hosts-directory": Case(
        cluster(ssh="  ssh:\n    knownHosts: /etc\n"),
        "Clusterfile:6: spec.ssh.knownHosts: /etc is a directory, not a known_hosts file",
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_hostile_clusterfile_is_refused_on_one_line(name: str) -> None:
    case = CASES[name]
    started = time.monotonic()
    with pytest.raises(ClusterfileError) as info:
        parse_clusterfile(case.text)
    assert time.monotonic() - started < 10  # generous: each takes well under a second
    assert info.value.message == case.message
    assert "\n" not in info.value.message and info.value.line == int(case.message.split(":")[1])


def test_hosts_whose_lists_no_command_could_carry_are_refused() -> None:
    # 9500 nodes: SEALER_NODES alone is 104 KiB, and Linux refuses a `sh -c` argument over 128 KiB.
    ips = ", ".join(str(ipaddress.ip_address("10.1.0.1") + i) for i in range(9500))
    with pytest.raises(ClusterfileError) as info:
        parse_clusterfile(cluster(HOSTS + f"  - ips: [{ips}]\n    roles: [node]\n"))
    assert info.value.message == (
        "Clusterfile:5: spec.hosts: 9501 hosts: their addresses take 104 KiB in SEALER_MASTERS and "
        "SEALER_NODES, over the 96 KiB a host's commands can carry"
    )
    assert len(parse_clusterfile(cluster(HOSTS + "  - ips: [10.1.0.1]\n    roles: [node]\n")).hosts) == 2


def test_nesting_and_aliases_under_the_caps_are_read() -> None:
    doc = "x: " + nested(60) + "\nshared: &s {a: 1}\nuse: [*s, *s]\n"
    c = parse_clusterfile(cluster(extra=OTHER + doc))
    assert c.documents[0]["use"] == [{"a": 1}, {"a": 1}]


def test_clusterfile_over_the_size_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "Clusterfile"
    text = cluster()
    path.write_text(text + "#" * (MAX_CLUSTERFILE_BYTES - len(text) - 1) + "\n")
    assert load_clusterfile(path).hosts[0].ip == "10.0.0.1"  # exactly at the cap: read
    with path.open("a") as f:
        f.write("#" * (56 << 20))  # the 56 MB file that took 98 s
    started = time.monotonic()
    with pytest.raises(ClusterfileError) as info:
        load_clusterfile(path)
    assert time.monotonic() - started < 5
    assert info.value.message == f"{path}: larger than 4 MiB, the most a Clusterfile may be"
    with pytest.raises(ClusterfileError, match=r"^Clusterfile: larger than 4 MiB"):
        parse_clusterfile(path.read_text())


def test_a_fifo_or_device_as_clusterfile_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ClusterfileError) as info:
            load_clusterfile(path)
        assert info.value.message == f"{path}: not a regular file, so not a Clusterfile"


def test_one_env_key_repeated_20000_times_is_one_list() -> None:
    entries = "".join(f"  - K=v{i}\n" for i in range(20_000))
    c = parse_clusterfile(HEAD + "  env:\n" + entries + HOSTS)
    assert c.env["K"] == ";".join(f"v{i}" for i in range(20_000))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"masters": "0.0.0.0"}, "--masters: 0.0.0.0 is the unspecified address, not a host"),
        (
            {"masters": "10.0.0.1", "nodes": "223.255.255.254-224.0.0.1"},
            "--nodes: 224.0.0.0 is a multicast address (224.0.0.0/4), not a host",
        ),
        (
            {"masters": "10.0.0.1,255.255.255.255"},
            "--masters: 255.255.255.255 is the broadcast address, not a host",
        ),
        (
            {"masters": "fd00::1", "nodes": "ff02::1"},
            "--nodes: ff02::1 is a multicast address (ff00::/8), not a host",
        ),
        ({"masters": "::"}, "--masters: :: is the unspecified address, not a host"),
        (
            {"masters": "10.0.0.1", "key_file": "/dev/zero"},
            "--pk: /dev/zero is not a regular file, so not a private key",
        ),
    ],
)
def test_hostile_flags_are_refused_naming_the_flag(flags: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        cluster_from_flags("demo/app:v1", **flags)  # type: ignore[arg-type]
    assert info.value.message == message


def test_the_cli_gives_one_line_and_the_right_exit(
    sealer: SealerRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    path = tmp_path / "Clusterfile"
    path.write_text(CASES["flow-nested-50000-deep"].text)
    result = sealer("run", "-f", str(path), "--dry-run", expect=1)
    assert result.stderr.splitlines()[0] == f"error: {path}:11: {DEEP}"
    assert "Traceback" not in result.stderr
    result = sealer("run", "demo/app:v1", "--masters", "224.0.0.1", "--dry-run", expect=2)
    assert (
        result.stderr.splitlines()[0]
        == "error: --masters: 224.0.0.1 is a multicast address (224.0.0.0/4), not a host"
    )
    result = sealer("delete", "--nodes", "0.0.0.0", "--cluster", "c1", expect=2)
    assert result.stderr.splitlines()[0] == "error: 0.0.0.0 is the unspecified address, not a host"
