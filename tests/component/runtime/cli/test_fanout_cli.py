"""`sealer run --dry-run` with fan-out delivery (no host is contacted): the plan shows who
fetches what from whom; what cannot fan out is refused in one line before any host is asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.conftest import SealerRunner
from tests.standins import make_bin_dir

IMAGE = "dry.test/k3s-fanout:v1"
HOSTS = ("--masters", "10.0.0.1,10.0.0.2", "--nodes", "10.0.0.3-10.0.0.5")


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("fanout-cli")
    store = Store.open(base / "root")
    build_basefs("k3s", make_bin_dir("k3s", base / "bin"), store, IMAGE)
    store.close()
    yield base / "root"


@pytest.fixture
def root(store_root: Path) -> Path:
    return store_root


@pytest.fixture
def cli(sealer: SealerRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SealerRunner:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    return sealer


def test_auto_fans_out_from_four_hosts_and_the_plan_names_the_sources(cli: SealerRunner) -> None:
    out = cli("run", IMAGE, *HOSTS, "--dry-run", "--verbose").stdout
    deliver = out[out.index("== deliver:") : out.index("== registry-seed:")]
    assert "10.0.0.1 (master0)" in deliver and "10.0.0.2 (master)" in deliver and "10.0.0.3" not in deliver
    fetch = out[out.index("== deliver-fetch:") : out.index("== host-scripts:")]
    for node in ("10.0.0.3", "10.0.0.4", "10.0.0.5"):
        assert f"  {node} (node)" in fetch
    assert "from 10.0.0.1, else 10.0.0.2, else this machine" in fetch
    assert "from 10.0.0.2, else 10.0.0.1, else this machine" in fetch
    assert (
        "curl -fsS --connect-timeout 5 " in fetch
        and "https://10.0.0.1:5000/v2/sealer-rootfs/my-cluster/blobs/sha256:" in fetch
    )
    one = cli("run", IMAGE, *HOSTS, "--dry-run", "--fanout", "1").stdout
    fetch_one = one.split("== deliver-fetch:")[1]
    assert "10.0.0.2 (master): " in fetch_one and "fetched from 10.0.0.1 (" in fetch_one  # K=1: one seed


def test_ssh_delivers_as_before(cli: SealerRunner) -> None:
    out = cli("run", IMAGE, *HOSTS, "--dry-run", "--distribution", "ssh").stdout
    assert "== deliver-fetch:" not in out and "== registry-seed:" not in out
    assert out.count("layers of dry.test/k3s-fanout:v1 into") == 5
    small = cli("run", IMAGE, "--masters", "10.0.0.1", "--nodes", "10.0.0.2", "--dry-run").stdout
    assert "== deliver-fetch:" not in small  # auto below the threshold: as before


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--runtime", "none", "--distribution", "fanout"), 1, "--distribution fanout: no cluster registry"),
        (("--fanout", "3"), 2, "--fanout 3: only 2 registry host(s) among the targets can serve"),
        (("--fanout", "0"), 2, "Invalid value for '--fanout': 0 is not in the range x>=1"),
        (("--distribution", "p2p"), 2, "Invalid value for '--distribution'"),
    ],
)
def test_what_cannot_fan_out_is_one_line(
    cli: SealerRunner, args: tuple[str, ...], code: int, message: str
) -> None:
    result = cli("run", IMAGE, *HOSTS, "--dry-run", *args, expect=code)
    lines = result.stderr.splitlines()  # the error, then its hint: click's usage block too
    assert lines[0].startswith("error: ") and message in lines[0] and result.stdout == ""
    assert len(lines) == 2 and lines[1].startswith("hint: "), lines
