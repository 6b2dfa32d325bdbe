"""Standard OCI tools accept what we build, and we accept what they write.

skopeo and umoci are the oracles (Debian's packages). A missing tool fails these tests: they
never skip. Debian's umoci 0.4.7 cannot read zstd layers, so zstd images go through
`skopeo copy --dest-compress-format gzip` before umoci sees them.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from builder.store.layout import Store
from tests.conftest import Link, SealerRunner
from tests.validate import validate_image


def run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """path -> (kind, permission bits, content or link target), for byte-for-byte comparison."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            rel = str(full.relative_to(root))
            st = full.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, "")
            else:
                out[rel] = ("file", mode, full.read_bytes().hex())
    return out


CONTEXT = {
    "bin/tool": b"\x7fELF\x00binary" * 1000,
    "etc/conf.yaml": "a: 1\n",
    "etc/gone.yaml": "deleted by RUN\n",
    "etc/current": Link("conf.yaml"),
    "scripts/init.sh": "#!/bin/sh\necho init\n",
    "empty": None,
    "deep/a/b/c/d.txt": "deep\n",
}


def test_skopeo_inspects_our_image(
    sealer: SealerRunner, store: Store, root: Path, make_context: Callable[..., Path]
) -> None:
    ctx = make_context(CONTEXT, kubefile="FROM scratch\nKUBEVERSION v1.29.3\nCOPY . /\n")
    digest = sealer("build", "-q", "-t", "interop/app:v1", str(ctx)).stdout.strip()
    validate_image(store, "interop/app:v1")
    info = json.loads(run("skopeo", "inspect", f"oci:{root}/oci:docker.io/interop/app:v1"))
    assert info["Digest"] == digest
    assert len(info["Layers"]) == 2
    assert info["Labels"]["cluster.alpha.sealer.io/cluster-runtime-type"] == "kubernetes"
    raw = json.loads(run("skopeo", "inspect", "--raw", f"oci:{root}/oci:docker.io/interop/app:v1"))
    assert "sealer.image.extension" in raw["annotations"]


def test_umoci_unpack_reproduces_the_context(
    sealer: SealerRunner, store: Store, root: Path, tmp_path: Path, make_context: Callable[..., Path]
) -> None:
    ctx = make_context(CONTEXT, kubefile="FROM scratch\nCOPY . /\nRUN rm etc/gone.yaml && rm -r empty\n")
    os.chmod(ctx / "scripts" / "init.sh", 0o750)
    os.chmod(ctx / "etc" / "conf.yaml", 0o600)
    sealer("build", "-q", "--compression", "gzip", "-t", "interop/umoci:v1", str(ctx))
    validate_image(store, "interop/umoci:v1")
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{root}/oci:docker.io/interop/umoci:v1", str(bundle))
    expected = tree(ctx)
    for gone in ("etc/gone.yaml", "empty", "Kubefile"):
        expected.pop(gone)
    got = tree(bundle / "rootfs")
    got.pop("Kubefile")
    assert got == expected


def test_zstd_image_through_skopeo_to_umoci(
    sealer: SealerRunner, root: Path, tmp_path: Path, make_context: Callable[..., Path]
) -> None:
    ctx = make_context(CONTEXT, kubefile="FROM scratch\nCOPY bin bin/\nCOPY etc etc/\n")
    sealer("build", "-q", "-t", "interop/zstd:v1", str(ctx))
    gz = tmp_path / "gz"
    run(
        "skopeo",
        "copy",
        "--dest-compress-format",
        "gzip",
        f"oci:{root}/oci:docker.io/interop/zstd:v1",
        f"oci:{gz}:v1",
    )
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{gz}:v1", str(bundle))
    got = tree(bundle / "rootfs")
    assert got["bin/tool"] == tree(ctx)["bin/tool"]
    assert got["etc/current"] == ("link", 0, "conf.yaml")


def _umoci_image(tmp_path: Path) -> Path:
    """An image made by umoci alone (init, new, unpack, add files, repack): not ours."""
    layout = tmp_path / "umoci-layout"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:base")
    bundle = tmp_path / "umoci-bundle"
    run("umoci", "unpack", "--image", f"{layout}:base", str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "from-umoci.txt").write_text("written by umoci\n")
    (rootfs / "bin").mkdir()
    (rootfs / "bin" / "base-tool").write_text("#!/bin/sh\n")
    run("umoci", "repack", "--image", f"{layout}:base", str(bundle))
    run("umoci", "config", "--image", f"{layout}:base", "--config.label", "origin=umoci")
    return layout


def test_skopeo_written_layout_loads_and_serves_as_from(
    sealer: SealerRunner, store: Store, tmp_path: Path, make_context: Callable[..., Path]
) -> None:
    umoci_layout = _umoci_image(tmp_path)
    skopeo_layout = tmp_path / "skopeo-layout"
    run("skopeo", "copy", f"oci:{umoci_layout}:base", f"oci:{skopeo_layout}:v1")
    loaded = sealer("load", "-i", str(skopeo_layout), "--name", "third/party:v1").stdout
    assert "third/party:v1" in loaded
    validate_image(store, "third/party:v1")
    ctx = make_context(
        {"app.yaml": "kind: Service\n"}, kubefile="FROM third/party:v1\nCOPY app.yaml manifests/\n"
    )
    sealer("build", "-q", "-t", "child/of-umoci:v1", str(ctx))
    validate_image(store, "child/of-umoci:v1")
    bundle = tmp_path / "child-bundle"
    gz = tmp_path / "child-gz"
    run(
        "skopeo",
        "copy",
        "--dest-compress-format",
        "gzip",
        f"oci:{store.oci_dir}:docker.io/child/of-umoci:v1",
        f"oci:{gz}:v1",
    )
    run("umoci", "unpack", "--image", f"{gz}:v1", str(bundle))
    rootfs = bundle / "rootfs"
    assert (rootfs / "etc" / "from-umoci.txt").read_text() == "written by umoci\n"
    assert (rootfs / "manifests" / "app.yaml").read_text() == "kind: Service\n"
    config = json.loads(run("skopeo", "inspect", "--config", f"oci:{gz}:v1"))
    assert config["config"]["Labels"]["origin"] == "umoci"


def test_save_is_read_by_skopeo_and_loads_back(
    sealer: SealerRunner, store: Store, tmp_path: Path, make_context: Callable[..., Path]
) -> None:
    ctx = make_context({"f": "x"}, kubefile="FROM scratch\nCOPY f f\n")
    digest = sealer("build", "-q", "-t", "saved/app:v1", str(ctx)).stdout.strip()
    archive = tmp_path / "app.tar"
    sealer("save", "-o", str(archive), "saved/app:v1")
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{archive}:docker.io/saved/app:v1"))
    assert info["Digest"] == digest
    sealer("rmi", "saved/app:v1")
    assert store.refs.list() == []
    sealer("load", "-i", str(archive))
    validate_image(store, "saved/app:v1")
    # skopeo's own oci-archive loads too.
    theirs = tmp_path / "theirs.tar"
    run("skopeo", "copy", f"oci-archive:{archive}:docker.io/saved/app:v1", f"oci-archive:{theirs}:v2")
    sealer("load", "-i", str(theirs), "--name", "saved/app:v2")
    validate_image(store, "saved/app:v2")
