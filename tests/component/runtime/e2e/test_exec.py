"""`sealer exec` on real sshd test hosts: a saved cluster's hosts chosen by role and address,
output prefixed by host, the worst exit status, an unreachable host, and one-line errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from builder.image.digest import Digest
from builder.runtime.cluster import HostSpec, Role
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.state import ClusterState, SavedMeta
from tests.conftest import SealerRunner
from tests.hosts import UNREACHABLE_ADDRESS, HostSet


@pytest.fixture
def saved(hosts3: HostSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HostSet:
    """A saved cluster `ex`: hosts3[0] master, hosts3[1] and [2] nodes, as `sealer run` leaves it."""
    home = tmp_path / "state"
    monkeypatch.setenv("SEALER_STATE_HOME", str(home))
    cluster = parse_clusterfile(
        f"""
apiVersion: sealer.io/v2
kind: Cluster
metadata: {{name: ex}}
spec:
  image: example.com/ex:v1
  env: [GREETING=hello]
  ssh: {{pk: {hosts3.client_key}, knownHosts: {hosts3.known_hosts}, useAgent: false}}
  hosts:
  - {{ips: [{hosts3[0].address}], roles: [master]}}
  - {{ips: [{hosts3[1].address}, {hosts3[2].address}], roles: [node]}}
"""
    )
    meta = SavedMeta(
        "example.com/ex:v1", Digest.parse("sha256:" + "0" * 64), "linux/amd64", "none", {"RUN_E": "e"}
    )
    ClusterState("ex", home).save(cluster, meta)
    return hosts3


def test_exec_runs_on_every_host_with_its_env_and_prefixes_the_output(
    sealer: SealerRunner, saved: HostSet
) -> None:
    result = sealer("exec", 'echo "$SEALER_ROLE $GREETING $RUN_E $(hostname)"')
    lines = sorted(result.stdout.splitlines())
    assert lines == sorted(
        f"{h.address}: {role} hello e {h.hostname}"
        for h, role in zip(saved, ("master", "node", "node"), strict=True)
    )


def test_exec_chooses_hosts_by_role_and_address(sealer: SealerRunner, saved: HostSet) -> None:
    masters = sealer("exec", "--roles", "master", "--", "echo", "a b").stdout
    assert masters.splitlines() == [f"{saved[0].address}: a b"]  # several arguments: quoted as given
    one = sealer("exec", "-r", "node", "--hosts", saved[2].address, "hostname").stdout
    assert one.splitlines() == [f"{saved[2].address}: {saved[2].hostname}"]
    plan = sealer("exec", "--dry-run", "-r", "master,node", "uptime").stdout
    assert plan.splitlines()[0] == f"{saved[0].address} (master0): uptime"
    assert saved[0].run("ls /root").stdout == ""  # the dry-run ran nothing


def test_exec_exits_with_the_worst_hosts_status(sealer: SealerRunner, saved: HostSet) -> None:
    command = f'case "$SEALER_HOST_IP" in {saved[1].address}) exit 3;; {saved[2].address}) echo oops >&2; exit 1;; esac'
    result = sealer("exec", command, expect=3)
    assert f"{saved[2].address}: oops" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"sealer exec: 2 of 3 hosts failed: {saved[1].address} (exit 3), {saved[2].address} (exit 1)"
    )


def test_an_unreachable_host_counts_as_255(sealer: SealerRunner, saved: HostSet, tmp_path: Path) -> None:
    cs = ClusterState("ex", tmp_path / "state")
    cluster, meta = cs.load_cluster(), cs.load_meta()
    assert cluster is not None and meta is not None
    gone = HostSpec(UNREACHABLE_ADDRESS, (Role.NODE,), replace(cluster.ssh, connect_timeout_s=2))
    cs.save(cluster.with_hosts([gone]), meta)
    result = sealer("exec", "true", expect=255)
    assert f"{UNREACHABLE_ADDRESS}: unreachable: " in result.stderr
    assert result.stderr.splitlines()[-1].endswith(f"{UNREACHABLE_ADDRESS} (unreachable)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-r", "worker", "true"), "--roles: unknown role 'worker'"),
        (("--hosts", "10.9.9.9", "true"), "--hosts: 10.9.9.9 is not a host of cluster ex"),
        (("--hosts", "10.0.0", "true"), "--hosts"),
        (("-c", "nope", "true"), "no saved cluster nope"),
    ],
)
def test_bad_input_is_one_line(
    sealer: SealerRunner, saved: HostSet, args: tuple[str, ...], message: str
) -> None:
    result = sealer("exec", *args, expect=1)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) <= 2
