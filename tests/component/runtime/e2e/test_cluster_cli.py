"""The cluster commands through the CLI (click's CliRunner, in-process): gen, run --dry-run,
run -f, cluster status, delete (with and without --force), and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.runtime.clusterfile import parse_clusterfile
from builder.store.layout import Store
from tests.component.runtime.e2e.test_cluster_e2e import IMAGE, build_example
from tests.conftest import SealerRunner
from tests.hosts import HostSet


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "state"
    monkeypatch.setenv("SEALER_STATE_HOME", str(home))
    return home


def test_gen_prints_a_clusterfile_that_reads_back(sealer: SealerRunner) -> None:
    result = sealer(
        "gen",
        IMAGE,
        "--masters",
        "10.0.0.1",
        "--nodes",
        "10.0.0.2-10.0.0.3",
        "-p",
        "pw",
        "-e",
        "A=1",
        "--cluster",
        "c1",
    )
    cluster = parse_clusterfile(result.stdout)
    assert cluster.name == "c1" and cluster.ips == ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert cluster.env == {"A": "1"} and cluster.ssh.password == "pw"


def test_run_dry_run_prints_every_phase_and_touches_nothing(
    sealer: SealerRunner, store: Store, state_home: Path
) -> None:
    build_example(store)
    result = sealer(
        "run", IMAGE, "--masters", "10.250.0.251", "--nodes", "10.250.0.252", "--dry-run", "--verbose"
    )
    out = result.stdout
    for phase in ("== check", "== deliver", "== host-scripts", "== launch", "== save-state"):
        assert phase in out
    assert "10.250.0.251 (master0)" in out and "10.250.0.252 (node)" in out
    assert "sh application/apps/greet/greet.sh" in out
    assert "no host is contacted" in out
    assert not state_home.exists()


def test_run_status_and_delete_through_the_cli(
    sealer: SealerRunner, store: Store, hosts3: HostSet, tmp_path: Path, state_home: Path
) -> None:
    build_example(store)
    assert not hosts3[0].password and not hosts3[1].password  # key hosts, as the README's
    # The README's first cluster run, as written: gen > Clusterfile, then run -f Clusterfile.
    gen = sealer(
        "gen", IMAGE, "--masters", hosts3[0].address, "--nodes", hosts3[1].address, "-i", str(hosts3.client_key),
        "--known-hosts", str(hosts3.known_hosts), "--cluster", "cli",
    )  # fmt: skip
    assert gen.stderr == ""  # nothing missing for run
    clusterfile = tmp_path / "Clusterfile"
    clusterfile.write_text(gen.stdout)
    result = sealer("run", "-f", str(clusterfile))
    assert "HOST" in result.stdout and hosts3[0].address in result.stdout  # the summary table
    assert "== deliver" in result.stderr  # plain progress lines off a terminal
    status = json.loads(sealer("cluster", "status", "--cluster", "cli", "--format", "json").stdout)
    assert status["complete"] and [h["ip"] for h in status["hosts"]] == [hosts3[0].address, hosts3[1].address]
    assert status["hosts"][1]["last_phase"] == "host-scripts"
    table = sealer("cluster", "status").stdout  # the only saved cluster
    assert "master0" in table and "launch" in table

    refused = sealer("delete", "--all", "--cluster", "cli", expect=2)
    assert "refusing to delete" in refused.stderr
    sealer("delete", "--nodes", hosts3[1].address, "--cluster", "cli", "--force")
    assert not hosts3[1].path("/usr/local/bin/sealer-demo").exists()
    assert hosts3[0].path("/usr/local/bin/sealer-demo").exists()
    sealer("delete", "--all", "--cluster", "cli", "-y")
    assert not hosts3[0].path("/var/lib/sealer/data/cli").exists()
    missing = sealer("cluster", "status", "--cluster", "cli", expect=1)
    assert missing.stderr.startswith("error: no saved cluster cli")


def test_keep_blobs_keeps_the_delivered_layers_on_the_hosts(
    sealer: SealerRunner, store: Store, hosts3: HostSet
) -> None:
    build_example(store)
    keys = ("-i", str(hosts3.client_key), "--known-hosts", str(hosts3.known_hosts))
    sealer("run", IMAGE, "--masters", hosts3[0].address, *keys, "--cluster", "kb", "--keep-blobs")
    desc = store.resolve(IMAGE)
    layers = {d.digest.hex for _, m in store.manifests_for(desc) for d in m.layers}
    kept = {p.name for p in hosts3[0].path("/var/lib/sealer/blobs/sha256").iterdir()}
    assert layers <= kept, layers - kept
    sealer("delete", "--all", "--cluster", "kb", "-y")


def test_bad_input_gets_one_line(sealer: SealerRunner, tmp_path: Path) -> None:
    bad = tmp_path / "Clusterfile"
    bad.write_text(
        "apiVersion: sealer.io/v2\nkind: Cluster\nspec:\n  image: x\n  hosts:\n  - ips: [10.0.0.1]\n    roles: [worker]\n"
    )
    result = sealer("run", "-f", str(bad), expect=1)
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: {bad}:7: spec.hosts[0].roles[0]: unknown role 'worker'")
    result = sealer("run", IMAGE, "--masters", "10.0.0.300", expect=2)
    assert result.stderr.splitlines()[0] == "error: --masters: '10.0.0.300' is not an IP address"
    result = sealer("run", IMAGE, "--masters", "10.0.0.1", "--runtime", "k9s", "--dry-run", expect=1)
    assert result.stderr.splitlines()[0] == (
        "error: unknown runtime 'k9s' (--runtime): known runtimes are kubernetes, k3s, k0s, none"
    )


def test_known_hosts_flag_reaches_every_host(sealer: SealerRunner, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    out = sealer(
        "gen", "demo/x:v1", "--masters", "10.0.0.1", "--nodes", "10.0.0.2", "--known-hosts", str(known)
    ).stdout
    from builder.runtime.clusterfile import parse_clusterfile

    cluster = parse_clusterfile(out)
    assert {str(h.ssh.known_hosts) for h in cluster.hosts} == {str(known)}
    assert all(h.ssh.verify_host_keys for h in cluster.hosts)
