"""No Python warning or traceback reaches a user's terminal: the main commands run as a user
runs them (the `sealer` entry point in a subprocess) with PYTHONWARNINGS=default, so that every
warning Python would otherwise hide is shown, and stderr must not mention one. `-d` shows the
known third-party warnings that are otherwise filtered (builder/cli/main.py KNOWN_WARNINGS)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.registry_fixtures import RegistryServer
from tests.standins import make_bin_dir

SEALER = Path(sys.executable).with_name("sealer")
KUBEFILE = "FROM scratch\nCOPY f.txt etc/\n"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_sealer(tmp_path: Path) -> Run:
    home = tmp_path / "home"  # no ~/.ssh/known_hosts: a real run stops at its check phase
    home.mkdir()
    env = {
        **os.environ,
        "PYTHONWARNINGS": "default",
        "HOME": str(home),
        "SEALER_STATE_HOME": str(tmp_path / "state"),
    }
    env.pop("COLUMNS", None)

    def run(*args: str, expect: int = 0, root: str = "root") -> subprocess.CompletedProcess[str]:
        assert SEALER.is_file(), f"{SEALER}: the venv's entry point is missing (make install)"
        done = subprocess.run(
            [str(SEALER), "--root", str(tmp_path / root), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == expect, f"sealer {' '.join(args)}: {done.returncode}\n{done.stderr}"
        return done

    return run


def _no_warning(done: subprocess.CompletedProcess[str]) -> None:
    assert "Warning" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_main_commands_print_no_warnings(run_sealer: Run, tmp_path: Path, registry: RegistryServer) -> None:
    run = run_sealer
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("x\n")
    (ctx / "Kubefile").write_text(KUBEFILE)
    store = Store.open(tmp_path / "root")
    image = build_basefs("k3s", make_bin_dir("k3s", tmp_path / "bin"), store, "warn.test/k3s:v1")
    store.close()
    remote = f"{registry.host}/demo/app:v1"
    outcomes = [
        run("build", "-t", "demo/app:v1", str(ctx)),
        run("images"),
        run("inspect", "demo/app:v1"),
        run("push", "demo/app:v1", remote),
        run("pull", remote, root="elsewhere"),
        run("run", image, "--masters", "10.0.0.1", "--nodes", "10.0.0.2", "--dry-run"),
        # A real run: imports asyncssh (the source of five DSA warnings), stops at the check.
        run("run", image, "--masters", "127.0.0.2", "-p", "x", expect=1),
    ]
    for done in outcomes:
        _no_warning(done)


def test_debug_shows_the_known_warnings(run_sealer: Run, tmp_path: Path) -> None:
    run = run_sealer
    store = Store.open(tmp_path / "root")
    image = build_basefs("k3s", make_bin_dir("k3s", tmp_path / "bin"), store, "warn.test/k3s:v1")
    store.close()
    done = run("-d", "run", image, "--masters", "127.0.0.2", "-p", "x", expect=1)
    assert "DSA is deprecated" in done.stderr
    quiet = run("run", image, "--masters", "127.0.0.2", "-p", "x", expect=1)
    assert "DSA is deprecated" not in quiet.stderr
