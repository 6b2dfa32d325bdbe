"""scripts/basefs.py: a basefs context plus the user's upstream files -> a built image; a missing
or ambiguous file is one line naming upstream.yaml and nothing is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.image import mediatypes
from builder.store.layout import Store
from scripts import basefs

UPSTREAM = """\
runtime: demo
version: v1.29.4
tag: sealer.io/demo:{version}
files:
  - source: demo
    dest: bin/demo
    mode: "0755"
    about: the demo binary
  - source: demo-images-*.tar
    dest: images/
    about: the image tarball
  - source: extra.conf
    dest: etc/extra.conf
    optional: true
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    ctx = tmp_path / "basefs" / "demo"
    (ctx / "scripts").mkdir(parents=True)
    (ctx / "Kubefile").write_text(
        "FROM scratch\nARG KUBE_VERSION=v0.0.0\nLABEL cluster.alpha.sealer.io/cluster-runtime-type=k3s\n"
        "KUBEVERSION ${KUBE_VERSION}\nCOPY . .\n"
    )
    (ctx / "scripts" / "init.sh").write_text("echo init\n")
    (ctx / "upstream.yaml").write_text(UPSTREAM)
    return tmp_path / "basefs"


def upstream_files(tmp_path: Path, *names: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        (bin_dir / name).write_text(f"contents of {name}\n")
    return bin_dir


def test_assembles_the_context_with_modes_and_directories(tree: Path, tmp_path: Path) -> None:
    bin_dir = upstream_files(tmp_path, "demo", "demo-images-amd64.tar")
    upstream = basefs.assemble("demo", bin_dir, tmp_path / "ctx", tree)
    assert upstream.image_name() == "sealer.io/demo:v1.29.4"
    ctx = tmp_path / "ctx"
    assert (ctx / "bin/demo").stat().st_mode & 0o777 == 0o755
    assert (ctx / "images/demo-images-amd64.tar").read_text() == "contents of demo-images-amd64.tar\n"
    assert not (ctx / "etc/extra.conf").exists()  # optional and absent
    assert not (ctx / "upstream.yaml").exists() and (ctx / "scripts/init.sh").is_file()


def kube_version(store: Store, name: str) -> str:
    config = store.read_config(store.read_manifest(store.resolve(name)).config)
    return config.config.labels[mediatypes.LABEL_SUPPORTED_KUBE_VERSION]


def test_builds_an_image_named_and_versioned_by_upstream_yaml(
    tree: Path, tmp_path: Path, store: Store
) -> None:
    bin_dir = upstream_files(tmp_path, "demo", "demo-images-amd64.tar", "extra.conf")
    name = basefs.build_basefs("demo", bin_dir, store, basefs=tree)
    assert name == "sealer.io/demo:v1.29.4" and kube_version(store, name) == "v1.29.4"
    newer = basefs.build_basefs("demo", bin_dir, store, version="v1.30.0", basefs=tree)
    assert newer == "sealer.io/demo:v1.30.0" and kube_version(store, newer) == "v1.30.0"
    with pytest.raises(basefs.BasefsError, match=r"expected vMAJOR\.MINOR\.PATCH"):
        basefs.build_basefs("demo", bin_dir, store, version="1.30", basefs=tree)


@pytest.mark.parametrize(
    ("names", "found"),
    [
        (("demo",), "nothing"),
        (
            ("demo", "demo-images-amd64.tar", "demo-images-arm64.tar"),
            "demo-images-amd64.tar, demo-images-arm64.tar",
        ),
    ],
)
def test_missing_or_ambiguous_file_is_one_line(
    tree: Path, tmp_path: Path, names: tuple[str, ...], found: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = upstream_files(tmp_path, *names)
    with pytest.raises(basefs.BasefsError) as err:
        basefs.assemble("demo", bin_dir, tmp_path / "ctx", tree)
    assert err.value.message == (
        f"{tree}/demo/upstream.yaml: demo-images-*.tar -> images/: {found} in {bin_dir} matches (need exactly one)"
    )
    assert err.value.hint == f"put the image tarball in {bin_dir}"
    assert not (tmp_path / "ctx").exists()


def test_unknown_runtime_exits_1_listing_the_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert basefs.main(["k9s", str(tmp_path), "--root", str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: no basefs for runtime 'k9s'")
    assert err[1].startswith("hint: known runtimes: ")
