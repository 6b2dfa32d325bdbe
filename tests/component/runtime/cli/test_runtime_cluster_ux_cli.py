"""The cluster commands as a new user meets them: the README's `gen > Clusterfile; run -f
Clusterfile` without ~/.ssh/known_hosts names every host and the flag to add; `apply` asks
before hosts leave, as `delete` does; `--verbose` belongs to `--dry-run`. No host is contacted:
a missing known_hosts stops each host before its connection (HOME is a tmp dir)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.image.digest import Digest
from builder.runtime.actions import JOINED
from builder.runtime.clusterfile import cluster_from_flags, dump_clusterfile
from builder.runtime.state import ClusterState, SavedMeta
from tests.conftest import SealerRunner

SEALER = Path(sys.executable).with_name("sealer")
IMAGE = "demo/cluster:v1"
HOSTS = ("10.250.0.251", "10.250.0.252", "10.250.0.253")  # never contacted


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    return home


def gen(sealer: SealerRunner, tmp_path: Path, *flags: str) -> tuple[Path, str]:
    key = tmp_path / "key"
    key.write_text("never read: the host key check stops every host first\n")
    result = sealer(
        "gen", IMAGE, "--masters", HOSTS[0], "--nodes", f"{HOSTS[1]},{HOSTS[2]}", "-i", str(key), *flags
    )
    clusterfile = tmp_path / "Clusterfile"
    clusterfile.write_text(result.stdout)
    return clusterfile, result.stderr


def test_readme_gen_then_run_names_every_host_and_the_flag_to_add(
    sealer: SealerRunner, home: Path, tmp_path: Path
) -> None:
    clusterfile, note = gen(sealer, tmp_path)
    assert note == (
        "note: ~/.ssh/known_hosts does not exist, so `sealer run` cannot check the hosts' keys: give gen or "
        "run --known-hosts FILE (ssh.knownHosts) or --insecure-skip-host-key-check\n"
    )
    result = sealer("run", "-f", str(clusterfile), expect=1)
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error: ", "hint: "))]
    assert errors[0] == (
        f"error: {HOSTS[0]}: check failed: host key cannot be verified: {home}/.ssh/known_hosts does not exist "
        f"(also failed: {HOSTS[1]}, {HOSTS[2]})"
    )
    assert errors[1].startswith("hint: pass --known-hosts FILE listing the hosts' keys")
    assert "--insecure-skip-host-key-check" in errors[1]


def test_gen_writes_the_known_hosts_flag_and_says_nothing_when_run_has_what_it_needs(
    sealer: SealerRunner, home: Path, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    clusterfile, note = gen(sealer, tmp_path, "--known-hosts", str(known_hosts))
    assert note == "" and f"knownHosts: {known_hosts}" in clusterfile.read_text()
    _, note = gen(sealer, tmp_path, "--insecure-skip-host-key-check")
    assert note == ""


def save_cluster(home: Path, name: str = "c1") -> ClusterState:
    cluster = cluster_from_flags(IMAGE, HOSTS[0], f"{HOSTS[1]},{HOSTS[2]}", name=name, key_file="/k")
    cs = ClusterState(name, home)
    digest = Digest("sha256", "ab" * 32)
    cs.save(cluster, SavedMeta(IMAGE, digest, "linux/amd64", "none", complete=True))
    journal = cs.journal()
    for host in HOSTS:
        journal.record(digest, JOINED, host, "done", seconds=0)
    return cs


@pytest.fixture
def smaller(home: Path, tmp_path: Path) -> tuple[ClusterState, Path]:
    """A saved cluster of three hosts and a Clusterfile of the first two."""
    cs = save_cluster(tmp_path / "state")
    clusterfile = tmp_path / "Clusterfile"
    clusterfile.write_text(
        dump_clusterfile(cluster_from_flags(IMAGE, HOSTS[0], HOSTS[1], name="c1", key_file="/k"))
    )
    return cs, clusterfile


def test_apply_removing_hosts_without_a_terminal_needs_force(
    sealer: SealerRunner, smaller: tuple[ClusterState, Path]
) -> None:
    cs, clusterfile = smaller
    before = cs.clusterfile_path.read_text()
    result = sealer("apply", "-f", str(clusterfile), expect=2)
    assert result.stderr.splitlines()[0] == (
        f"error: refusing to remove {HOSTS[2]} from cluster c1 without confirmation: pass --force (or -y)"
    )
    assert cs.clusterfile_path.read_text() == before
    plan = sealer("apply", "-f", str(clusterfile), "--dry-run").stdout  # a dry-run asks nothing
    assert f"# apply: {HOSTS[2]} leave" in plan
    # --force goes ahead: here to the removal, which stops at the host key check
    forced = sealer("apply", "-f", str(clusterfile), "--force", expect=1)
    assert "refusing" not in forced.stderr and "host key cannot be verified" in forced.stderr
    assert cs.clusterfile_path.read_text() == before


def test_apply_asks_on_a_terminal_and_no_keeps_the_hosts(
    smaller: tuple[ClusterState, Path], root: Path, tmp_path: Path
) -> None:
    cs, clusterfile = smaller
    before = cs.clusterfile_path.read_text()
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(SEALER), "--root", str(root), "apply", "-f", str(clusterfile)],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"[y/N]" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                seen += os.read(master, 4096)
        os.write(master, b"n\n")
        assert proc.wait(timeout=30) == 1
        while select.select([master], [], [], 0.2)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    text = seen.decode()
    assert f"Remove {HOSTS[2]} from cluster c1? They run clean.sh and lose the rootfs [y/N]: " in text
    assert "Aborted!" in text
    assert cs.clusterfile_path.read_text() == before


@pytest.mark.parametrize(
    "args",
    [("run", IMAGE, "--masters", HOSTS[0]), ("delete", "--all", "--cluster", "c1"), ("apply", "-f", "CF")],
    ids=["run", "delete", "apply"],
)
def test_verbose_without_dry_run_is_a_usage_error(
    sealer: SealerRunner, home: Path, args: tuple[str, ...]
) -> None:
    save_cluster(home.parent / "state")
    clusterfile = home.parent / "Clusterfile"  # one host fewer: apply would ask first
    clusterfile.write_text(dump_clusterfile(cluster_from_flags(IMAGE, HOSTS[0], name="c1", key_file="/k")))
    args = tuple(str(clusterfile) if a == "CF" else a for a in args)
    result = sealer(*args, "--verbose", expect=2)
    assert (
        result.stderr.splitlines()[0] == "error: --verbose shows a dry-run's commands: it goes with --dry-run"
    )
