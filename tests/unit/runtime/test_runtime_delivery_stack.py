"""The controller-side stack check of delivery (builder/runtime/_stackcheck.py) on hand-made
layers: hostile stacks refused naming layer and entry, whiteout/opaque plans, templates, the
cache, rendering and the dry-run plan. `put_image` is also used by the component tests."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from builder.errors import BadWhiteout, ImageNotFound, LayerError, RootfsTemplateError, UnsafePath
from builder.image import mediatypes
from builder.image.config import ContainerConfig, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.manifest import Manifest
from builder.runtime._stackcheck import KEPT_FILES, is_template_path
from builder.runtime.delivery import plan_commands, prepare_image, render_layer
from builder.store.layout import Store

AMD64 = Platform("linux", "amd64")


@dataclass(frozen=True)
class E:
    """A tar member to craft: kind f(ile), d(ir), l (symlink), h(ardlink), c (char dev), p (fifo)."""

    name: str
    kind: str = "f"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644


def make_tar(entries: Sequence[E]) -> bytes:
    out = io.BytesIO()
    types = {
        "f": tarfile.REGTYPE,
        "d": tarfile.DIRTYPE,
        "l": tarfile.SYMTYPE,
        "h": tarfile.LNKTYPE,
        "c": tarfile.CHRTYPE,
        "p": tarfile.FIFOTYPE,
    }
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = types[e.kind]
            info.mode = 0o755 if e.kind == "d" and e.mode == 0o644 else e.mode
            info.linkname = e.link
            info.size = len(e.data) if e.kind == "f" else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "f" else None)
    return out.getvalue()


def put_image(
    store: Store,
    name: str,
    layers: Sequence[bytes | Sequence[E]],
    *,
    compression: str = "zstd",
    env: Sequence[str] = (),
) -> Manifest:
    """An image made by hand: each layer a tar (bytes) or entries; stored compressed."""
    descs: list[Descriptor] = []
    diff_ids: list[Digest] = []
    for layer in layers:
        tar = layer if isinstance(layer, bytes) else make_tar(layer)
        diff_ids.append(Digest.from_bytes(tar))
        if compression == "zstd":
            blob = zstandard.ZstdCompressor(level=1).compress(tar)
        elif compression == "gzip":
            blob = gzip.compress(tar, mtime=0)
        else:
            blob = tar
        digest, size = store.blobs.put(blob)
        descs.append(Descriptor(mediatypes.COMPRESSION_LAYER[compression], digest, size))
    config = ImageConfig("amd64", "linux", config=ContainerConfig(env=tuple(env)), diff_ids=tuple(diff_ids))
    manifest = Manifest(store.put_config(config), tuple(descs))
    store.refs.set(name, store.put_manifest(manifest))
    return manifest


@pytest.fixture
def st(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "root")


def check(st: Store, *layers: Sequence[E]) -> object:
    put_image(st, "t/x:1", list(layers))
    return prepare_image(st, "t/x:1", AMD64)


# --- hostile stacks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "error", "words"),
    [
        (
            [[E("lib", "l", link="/etc")], [E("lib/passwd", data=b"x")]],
            UnsafePath,
            ["layer 2", "'lib/passwd'", "symlink made by layer 1"],
        ),
        ([[E("lib", "l", link="/etc"), E("lib/passwd", data=b"x")]], UnsafePath, ["layer 1", "'lib/passwd'"]),
        (
            [[E("a", "d"), E("a/b", "l", link="../../..")], [E("a/b/c/d", data=b"x")]],
            UnsafePath,
            ["'a/b/c/d'", "'a/b'"],
        ),
        (
            [[E("lib", "l", link="/etc")], [E("lib/.wh.passwd")]],
            BadWhiteout,
            ["whiteout of 'lib/passwd'", "symlink"],
        ),
        ([[E("lib", "l", link="/etc")], [E("lib/.wh..wh..opq")]], BadWhiteout, ["opaque", "'lib'"]),
        ([[E("a", "d")], [E("a/.wh..")]], BadWhiteout, ["'a/.wh..'"]),
        ([[E("../escape", data=b"x")]], UnsafePath, ["'../escape'", "'..'"]),
        ([[E("/etc/passwd", data=b"x")]], UnsafePath, ["absolute"]),
        ([[E("dev/null", "c")]], UnsafePath, ["device"]),
        ([[E("p", "p")]], UnsafePath, ["fifo"]),
        ([[E("h", "h", link="../../etc/shadow")]], UnsafePath, ["hardlink target"]),
        (
            [[E("lib", "l", link="/etc")], [E("h", "h", link="lib/shadow")]],
            UnsafePath,
            ["hardlink target", "symlink"],
        ),
        ([[E("x", "l", link="/etc")], [E("h", "h", link="x")]], UnsafePath, ["not a regular file"]),
        ([[E("x", "l", link="/etc"), E("x", "d")]], UnsafePath, ["already made as another type"]),
        ([[E(".wh.d/file", data=b"x")]], BadWhiteout, ["below a whiteout"]),
        ([[E("etc/big.tmpl", data=b"x" * ((1 << 20) + 1))]], LayerError, ["template", "limit"]),
    ],
)
def test_hostile_stack_is_refused(
    st: Store, layers: list[list[E]], error: type[Exception], words: list[str]
) -> None:
    manifest = put_image(st, "t/x:1", layers)
    with pytest.raises(error) as info:
        prepare_image(st, "t/x:1", AMD64)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    # The layer is named by its digest.
    assert any(str(d.digest) in message for d in manifest.layers)
    assert not (st.cache_dir / "delivery").exists() or not any((st.cache_dir / "delivery").iterdir())


def test_type_changes_and_whiteouts_are_planned(st: Store) -> None:
    image = check(
        st,
        [
            E("a", "d"),
            E("a/x", data=b"1"),
            E("a/y", data=b"2"),
            E("o", "d"),
            E("o/old", data=b"o"),
            E("s", "l", link="a"),
            E("f", data=b"f"),
        ],
        [
            E("a/.wh.x"),
            E("a/.wh.nothing"),
            E("o/.wh..wh..opq"),
            E("o/new", data=b"n"),
            E("s", "d"),
            E("f", "d"),
            E("f/g", data=b"g"),
        ],
    )
    assert isinstance(image, object)
    from builder.runtime.delivery import DeliveryImage

    assert isinstance(image, DeliveryImage)
    top = image.layers[1]
    assert top.whiteouts == ("a/x", "s", "f")  # whiteout target, then lower paths changing type
    assert top.opaques == ("o",)
    assert image.layers[0].whiteouts == () and image.layers[0].opaques == ()


def test_a_symlink_replaced_by_a_dir_may_then_hold_files(st: Store) -> None:
    check(st, [E("lib", "l", link="/etc")], [E("lib", "d"), E("lib/passwd", data=b"mine")])


def test_whiteout_then_new_path_through_removed_symlink(st: Store) -> None:
    check(st, [E("lib", "l", link="/etc")], [E(".wh.lib"), E("lib/passwd", data=b"mine")])


def test_diff_id_mismatch_is_refused(st: Store) -> None:
    put_image(st, "t/x:1", [[E("a", data=b"1")]])
    desc = st.resolve("t/x:1")
    manifest = st.read_manifest(desc)
    config = st.read_config(manifest.config)
    bad = ImageConfig("amd64", "linux", diff_ids=(Digest.from_bytes(b"other"),))
    st.refs.set("t/bad:1", st.put_manifest(Manifest(st.put_config(bad), manifest.layers)))
    assert config.diff_ids != bad.diff_ids
    with pytest.raises(LayerError, match="diff_id"):
        prepare_image(st, "t/bad:1", AMD64)


def test_wrong_platform_names_the_image_platform(st: Store) -> None:
    put_image(st, "t/x:1", [[E("a", data=b"1")]])
    with pytest.raises(ImageNotFound, match="linux/amd64"):
        prepare_image(st, "t/x:1", Platform("linux", "arm64", "v8"))


# --- templates, rendering, cache ------------------------------------------------------------------------


def test_templates_after_all_layers_and_rendering(st: Store) -> None:
    put_image(
        st,
        "t/x:1",
        [
            [
                E("etc", "d"),
                E("etc/a.conf.tmpl", data=b"a={{ .A }}\n"),
                E("etc/gone.tmpl", data=b"x"),
                E("top.tmpl", data=b"not rendered"),
            ],
            [
                E("etc/.wh.gone.tmpl"),
                E("etc/a.conf.tmpl", data=b"a={{ .A }} b={{ .B }}\n"),
                E("charts", "d"),
                E("charts/c.yaml.tmpl", data=b'{{ or .C "dflt" }}'),
            ],
        ],
        env=["B=from-image", "A=img"],
    )
    image = prepare_image(st, "t/x:1", AMD64)
    assert sorted(image.templates) == ["charts/c.yaml.tmpl", "etc/a.conf.tmpl"]
    assert image.env == {"B": "from-image", "A": "img"}
    tar = render_layer(image, {"A": "host1"})
    assert tar is not None and tar == render_layer(image, {"A": "host1"})  # deterministic
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        members = t.getmembers()
        assert [m.name for m in members] == ["charts/c.yaml", "etc/a.conf"]
        assert all((m.uid, m.gid, m.mtime, m.mode) == (0, 0, 0, 0o644) for m in members)
        body = t.extractfile("etc/a.conf")
        assert body is not None and body.read() == b"a=host1 b=from-image\n"
    # Cached: a second prepare reads the cache (same result), which is keyed by manifest digest.
    cache = st.cache_dir / "delivery" / f"{image.manifest_digest.hex}.json"
    assert json.loads(cache.read_text())["version"] >= 1
    again = prepare_image(st, "t/x:1", AMD64)
    assert again == image


def test_a_directory_entry_in_an_upper_layer_keeps_the_templates_below_it(st: Store) -> None:
    """COPY x etc/d/x in a later layer carries the entry `etc/d/`: the directories merge, so
    etc/d/a.tmpl from below is still rendered; a file or symlink over `etc/d` replaces it all."""
    lower = [E("etc", "d"), E("etc/d", "d"), E("etc/d/a.tmpl", data=b"a"), E("etc/e.tmpl", data=b"e")]
    put_image(st, "t/merge:1", [lower, [E("etc", "d"), E("etc/d", "d"), E("etc/d/VERSION", data=b"2")]])
    assert sorted(prepare_image(st, "t/merge:1", AMD64).templates) == ["etc/d/a.tmpl", "etc/e.tmpl"]
    put_image(st, "t/merge:2", [lower, [E("etc", "d"), E("etc/d", data=b"now a file")]])
    assert sorted(prepare_image(st, "t/merge:2", AMD64).templates) == ["etc/e.tmpl"]


def test_the_files_planning_reads_are_kept_by_the_same_pass(st: Store) -> None:
    """etc/kubeadm.yaml, Metadata, scripts/init-registry.sh... come from the stack check as the
    top layer leaves them (a whiteout removes one), so planning never unpacks a layer."""
    put_image(
        st,
        "t/kept:1",
        [
            [E("Metadata", data=b"{}"), E("etc", "d"), E("etc/kubeadm.yaml", data=b"old"), E("scripts", "d"),
             E("scripts/init-registry.sh", data=b"echo"), E("etc/other.yaml", data=b"not kept")],
            [E("etc", "d"), E("etc/kubeadm.yaml", data=b"new"), E("scripts", "d"), E("scripts/.wh.init-registry.sh")],
        ],
    )  # fmt: skip
    image = prepare_image(st, "t/kept:1", AMD64)
    assert image.files == {"Metadata": b"{}", "etc/kubeadm.yaml": b"new"}
    assert image.templates == {}
    assert prepare_image(st, "t/kept:1", AMD64).files == image.files  # and from the cache


def test_a_binary_whose_presence_planning_reads_is_kept_empty(st: Store) -> None:
    """bin/haproxy (the kubeadm workers' load balancer, when the image ships it): larger than any
    kept config file may be, it is kept as b"" (present), never read; a hardlink to it counts;
    a whiteout forgets it."""
    big = b"\x7fELF" + b"\0" * (2 << 20)
    put_image(st, "t/bin:1", [[E("bin", "d"), E("bin/haproxy", data=big, mode=0o755)]])
    assert prepare_image(st, "t/bin:1", AMD64).files == {"bin/haproxy": b""}
    put_image(st, "t/bin:2", [[E("bin", "d"), E("bin/h2", data=big), E("bin/haproxy", "h", link="bin/h2")]])
    assert prepare_image(st, "t/bin:2", AMD64).files == {"bin/haproxy": b""}
    put_image(
        st, "t/bin:3", [[E("bin", "d"), E("bin/haproxy", data=big)], [E("bin", "d"), E("bin/.wh.haproxy")]]
    )
    assert prepare_image(st, "t/bin:3", AMD64).files == {}


def test_every_plugins_config_files_are_kept() -> None:
    from builder.runtime.plugins import PLUGINS, get_plugin

    for name in PLUGINS:  # or templates, which the stack check keeps all of (is_template_path)
        files = get_plugin(name).config_files
        assert {f for f in files if not is_template_path(f)} <= KEPT_FILES, name


def test_missing_variable_names_file_and_variable(st: Store) -> None:
    put_image(
        st,
        "t/x:1",
        [[E("manifests", "d"), E("manifests/m.yaml.tmpl", data=b"x\nreplicas: {{ .REPLICAS }}\n")]],
    )
    image = prepare_image(st, "t/x:1", AMD64)
    with pytest.raises(RootfsTemplateError) as info:
        render_layer(image, {})
    assert "manifests/m.yaml.tmpl:2" in str(info.value) and "REPLICAS" in str(info.value)


def test_no_templates_no_layer(st: Store) -> None:
    put_image(st, "t/x:1", [[E("a", data=b"1")]])
    assert render_layer(prepare_image(st, "t/x:1", AMD64), {"A": "1"}) is None


def test_plan_commands_lists_uploads_and_the_switch(st: Store) -> None:
    manifest = put_image(
        st, "t/x:1", [[E("a", data=b"1")], [E(".wh.a"), E("etc", "d"), E("etc/x.tmpl", data=b"{{ .X }}")]]
    )
    image = prepare_image(st, "t/x:1", AMD64)
    plan = plan_commands(image, "demo", "10.0.0.2")
    uploads = [c for c in plan if c.startswith("upload ")]
    assert uploads[:2] == [f"upload {d.digest} ({d.size})" for d in manifest.layers]
    assert "rendered templates of 10.0.0.2" in uploads[2]
    assert any(c.startswith("rm -rf -- ") and "/a" in c for c in plan)
    assert "mv -T rootfs.tmp rootfs" in plan[-1]
    real = plan_commands(image, "demo", "10.0.0.2", env={"X": "1"})
    assert "<id>" not in "".join(real) and "/var/lib/sealer/data/demo;" in real[-1]
