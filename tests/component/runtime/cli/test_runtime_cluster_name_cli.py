"""Which saved cluster a command without `--cluster` means: the only saved one; with several,
a usage error listing them; with none, or a named cluster that is not saved, a one-line error
and a non-zero exit, never "nothing to delete" and 0 (the state lives in $SEALER_STATE_HOME,
a tmp dir here; `--dry-run` keeps every host out of it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.image.digest import Digest
from builder.runtime.clusterfile import cluster_from_flags
from builder.runtime.state import ClusterState, SavedMeta
from tests.conftest import SealerRunner


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "state"
    monkeypatch.setenv("SEALER_STATE_HOME", str(home))
    return home


def save(home: Path, name: str, master: str) -> None:
    cluster = cluster_from_flags("demo/app:v1", master, name=name)
    meta = SavedMeta("demo/app:v1", Digest("sha256", "ab" * 32), "linux/amd64", "none", complete=True)
    ClusterState(name, home).save(cluster, meta)


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def test_delete_all_without_cluster_deletes_the_only_saved_one(
    sealer: SealerRunner, state_home: Path
) -> None:
    save(state_home, "prod", "10.0.0.1")
    out = sealer("delete", "--all", "--force", "--dry-run").stdout
    assert out.startswith("# delete: cluster prod, hosts 10.0.0.1")


def test_delete_all_without_cluster_and_several_saved_is_a_usage_error(
    sealer: SealerRunner, state_home: Path
) -> None:
    save(state_home, "prod", "10.0.0.1")
    save(state_home, "stage", "10.0.0.2")
    result = sealer("delete", "--all", "--force", expect=2)
    assert first_line(result.stderr) == "error: 2 saved clusters (prod, stage): say which with --cluster NAME"
    assert ClusterState("prod", state_home).exists() and ClusterState("stage", state_home).exists()


@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)])
def test_delete_of_a_cluster_not_saved_fails_naming_the_saved_ones(
    sealer: SealerRunner, state_home: Path, dry_run: tuple[str, ...]
) -> None:
    save(state_home, "prod", "10.0.0.1")
    result = sealer("delete", "--all", "--force", "--cluster", "my-cluster", *dry_run, expect=1)
    assert first_line(result.stderr) == f"error: no saved cluster my-cluster in {state_home}: nothing deleted"
    assert "hint: saved clusters: prod" in result.stderr
    assert ClusterState("prod", state_home).exists()


def test_delete_with_nothing_saved_fails(sealer: SealerRunner, state_home: Path) -> None:
    result = sealer("delete", "--all", "--force", expect=1)
    assert first_line(result.stderr) == f"error: no saved cluster in {state_home}"


@pytest.mark.parametrize(
    "args",
    [
        ("cluster", "status"),
        ("join", "--nodes", "10.0.0.9", "--dry-run"),
        ("upgrade", "demo/app:v2", "--dry-run"),
        ("run", "demo/app:v2", "--dry-run"),
        ("delete", "--nodes", "10.0.0.9", "--dry-run"),
    ],
    ids=lambda a: a[0] if a[0] != "cluster" else "status",
)
def test_every_command_on_a_saved_cluster_needs_cluster_when_several_are_saved(
    sealer: SealerRunner, state_home: Path, args: tuple[str, ...]
) -> None:
    save(state_home, "prod", "10.0.0.1")
    save(state_home, "stage", "10.0.0.2")
    result = sealer(*args, expect=2)
    assert first_line(result.stderr) == "error: 2 saved clusters (prod, stage): say which with --cluster NAME"


def test_status_and_join_use_the_only_saved_cluster_and_fail_on_none(
    sealer: SealerRunner, state_home: Path
) -> None:
    assert (
        first_line(sealer("cluster", "status", expect=1).stderr) == f"error: no saved cluster in {state_home}"
    )
    assert first_line(sealer("join", "--nodes", "10.0.0.9", expect=1).stderr) == (
        f"error: no saved cluster in {state_home}"
    )
    save(state_home, "prod", "10.0.0.1")
    assert first_line(sealer("cluster", "status").stdout) == "cluster  prod"
