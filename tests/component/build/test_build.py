"""`sealer build` end to end into a real store: layers, cache, reproducibility, semantics."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from builder.build.events import BuildEvent, StepFinished
from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import ContextPathError, MetadataMismatch, RunStepError
from builder.image import mediatypes
from builder.image.descriptor import Platform
from builder.image.extension import ImageExtension
from builder.image.manifest import Manifest
from builder.layers.compression import Compression
from builder.store.layout import Store
from kubefile_grammar import InvalidArgument, KubefileError
from tests.conftest import Link
from tests.validate import validate_image

AMD64 = (Platform("linux", "amd64"),)


def build(
    store: Store, ctx: Path, tag: str = "test/img:v1", events: list[BuildEvent] | None = None, **kw: object
) -> Manifest:
    opts = BuildOptions(context=ctx, tags=(tag,), platforms=kw.pop("platforms", AMD64), **kw)  # type: ignore[arg-type]
    result = build_image(store, opts, events.append if events is not None else (lambda e: None))
    validate_image(store, tag)
    return store.read_manifest(result.manifests[0])


def layer_members(store: Store, manifest: Manifest, index: int) -> dict[str, tarfile.TarInfo]:
    desc = manifest.layers[index]
    data = store.blobs.read_bytes(desc.digest, max_size=1 << 30)
    if desc.media_type.endswith("zstd"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    elif desc.media_type.endswith("gzip"):
        import gzip

        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def layer_file(store: Store, manifest: Manifest, index: int, name: str) -> bytes:
    desc = manifest.layers[index]
    data = store.blobs.read_bytes(desc.digest, max_size=1 << 30)
    data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def extension(manifest: Manifest) -> ImageExtension:
    return ImageExtension.from_json(manifest.annotations[mediatypes.ANNOTATION_SEALER_EXTENSION])


def test_app_image_from_scratch(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"nginx.yaml": "kind: Deployment\n"},
        kubefile='FROM scratch\nCOPY nginx.yaml manifests/\nCMDS ["kubectl apply -f manifests/nginx.yaml"]\n',
    )
    manifest = build(store, ctx)
    assert len(manifest.layers) == 1
    assert manifest.layers[0].media_type == mediatypes.OCI_LAYER_ZSTD
    members = layer_members(store, manifest, 0)
    assert sorted(members) == ["manifests", "manifests/nginx.yaml"]
    f = members["manifests/nginx.yaml"]
    assert (f.uid, f.gid, f.uname, f.gname, f.mtime) == (0, 0, "", "", 0)
    ext = extension(manifest)
    assert ext.type == "app-installer"
    assert list(ext.launch.cmds) == ["kubectl apply -f manifests/nginx.yaml"]
    assert json.loads(manifest.annotations[mediatypes.ANNOTATION_SEALER_CONTAINER_IMAGES]) == []
    assert store.refs.get("docker.io/test/img:v1") is not None


def test_rootfs_image_gets_metadata_and_labels(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"bin/k3s": "#!/bin/sh\n", "scripts/init.sh": "echo init\n", "etc/a.yaml": "a: 1\n"},
        kubefile=(
            "FROM scratch\n"
            "LABEL cluster.alpha.sealer.io/cluster-runtime-type=k3s\n"
            "KUBEVERSION v1.29.3\n"
            "COPY bin bin/\nCOPY --chmod=0755 scripts scripts/\nCOPY etc etc/\n"
        ),
    )
    manifest = build(store, ctx)
    assert len(manifest.layers) == 4  # three COPY layers and the Metadata layer
    meta = json.loads(layer_file(store, manifest, 3, "Metadata"))
    assert meta == {
        "version": "v1.29.3",
        "arch": "amd64",
        "variant": "",
        "kubeVersion": "v1.29.3",
        "NydusFlag": False,
        "ClusterRuntime": "k3s",
    }
    config = store.read_config(manifest.config)
    assert config.config.labels[mediatypes.LABEL_CLUSTER_RUNTIME] == "k3s"
    assert config.config.labels[mediatypes.LABEL_SUPPORTED_KUBE_VERSION] == "v1.29.3"
    assert extension(manifest).type == "kube-installer"
    assert layer_members(store, manifest, 1)["scripts/init.sh"].mode == 0o755


def test_shipped_metadata_is_checked(store: Store, make_context: Callable[..., Path]) -> None:
    meta = {
        "version": "v1",
        "arch": "arm64",
        "variant": "",
        "kubeVersion": "v1.29.3",
        "NydusFlag": False,
        "ClusterRuntime": "k8s",
    }
    ctx = make_context(
        {"Metadata": json.dumps(meta)},
        kubefile="FROM scratch\nKUBEVERSION v1.29.3\nCOPY Metadata .\n",
    )
    with pytest.raises(MetadataMismatch, match="arch 'arm64' but the build is for amd64"):
        build(store, ctx)
    assert store.refs.get("docker.io/test/img:v1") is None
    # Consistent: accepted as is, no generated Metadata layer.
    meta["arch"] = "amd64"
    (ctx / "Metadata").write_text(json.dumps(meta))
    manifest = build(store, ctx)
    assert len(manifest.layers) == 1


def test_reproducible_across_paths_and_mtimes(tmp_path: Path, make_context: Callable[..., Path]) -> None:
    files = {
        "bin/tool": b"\x7fELF" + bytes(range(256)) * 100,
        "etc/c.yaml": "x: 1\n",
        "etc/link": Link("c.yaml"),
        "empty": None,
    }
    kubefile = "FROM scratch\nCOPY bin bin/\nCOPY etc etc/\nCOPY empty empty/\nLABEL a=b\n"
    ctx1 = make_context(files, kubefile=kubefile, name="one")
    ctx2 = make_context(files, kubefile=kubefile, name="deeper/two")
    os.utime(ctx2 / "bin" / "tool", (1_000_000, 1_000_000))
    os.chmod(ctx2 / "etc", 0o755)
    os.chmod(ctx1 / "etc", 0o755)
    digests = []
    for i, ctx in enumerate((ctx1, ctx2)):
        store = Store.open(tmp_path / f"root{i}")
        result = build_image(store, BuildOptions(context=ctx, tags=("r:1",), platforms=AMD64))
        validate_image(store, "r:1")
        digests.append(result.descriptor.digest)
    assert digests[0] == digests[1]


def test_cache_hits_and_stat_cache(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"a/1.txt": "one\n", "b/2.txt": "two\n"}, kubefile="FROM scratch\nCOPY a a/\nCOPY b b/\n"
    )
    first = build(store, ctx)
    events: list[BuildEvent] = []
    second = build(store, ctx, events=events)
    assert second.digest == first.digest
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert [e.cached for e in finished] == [True, True]
    # Touching a file changes its stat but not its content: still a cache hit.
    os.utime(ctx / "a" / "1.txt", (5, 5))
    events.clear()
    assert build(store, ctx, events=events).digest == first.digest
    assert [e.cached for e in events if isinstance(e, StepFinished)] == [True, True]
    # Changing content re-runs that step only.
    (ctx / "b" / "2.txt").write_text("TWO\n")
    events.clear()
    third = build(store, ctx, events=events)
    assert [e.cached for e in events if isinstance(e, StepFinished)] == [True, False]
    assert third.digest != first.digest
    # --no-cache gives the same bytes.
    events.clear()
    fourth = build(store, ctx, events=events, no_cache=True)
    assert fourth.digest == third.digest
    assert not any(e.cached for e in events if isinstance(e, StepFinished))


def test_copy_destination_rules(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"f.txt": "f", "g.txt": "g", "dir/x": "x", "dir/sub/y": "y", "data.yaml": "d"},
        kubefile=(
            "FROM scratch\n"
            "COPY f.txt renamed.txt\n"
            "COPY f.txt g.txt multi/\n"
            "COPY dir target\n"
            "COPY *.yaml globbed/\n"
            "COPY f.txt /abs/\n"
        ),
    )
    manifest = build(store, ctx)
    names = [sorted(layer_members(store, manifest, i)) for i in range(5)]
    assert names[0] == ["renamed.txt"]
    assert names[1] == ["multi", "multi/f.txt", "multi/g.txt"]
    assert names[2] == ["target", "target/sub", "target/sub/y", "target/x"]
    assert names[3] == ["globbed", "globbed/data.yaml"]
    assert names[4] == ["abs", "abs/f.txt"]


def test_copy_into_existing_directory_of_base(store: Store, make_context: Callable[..., Path]) -> None:
    base = make_context({"m/a.yaml": "a"}, kubefile="FROM scratch\nCOPY m manifests/\n")
    build(store, base, tag="base:v1")
    child = make_context({"b.yaml": "b"}, kubefile="FROM base:v1\nCOPY b.yaml manifests\n")
    manifest = build(store, child, tag="child:v1")
    assert len(manifest.layers) == 2
    assert sorted(layer_members(store, manifest, 1)) == ["manifests", "manifests/b.yaml"]


def test_several_sources_need_a_directory(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context({"a": "a", "b": "b"}, kubefile="FROM scratch\nCOPY a b dest\n")
    with pytest.raises(
        ContextPathError, match=r"Kubefile:2:1: COPY: COPY with several sources needs a directory"
    ):
        build(store, ctx)


@pytest.mark.parametrize(
    ("files", "source", "message"),
    [
        ({}, "../outside", "is outside the build context"),
        ({"sub/f": "x"}, "sub/../../outside", "is outside the build context"),
        ({"link": Link("/etc")}, "link", "resolves outside the build context"),
        ({"link": Link("../../..")}, "link/etc/passwd", "resolves outside the build context"),
        ({"link": Link("/")}, "link/etc/passwd", "resolves outside the build context"),
        ({}, "missing.txt", "does not exist in the build context"),
    ],
)
def test_sources_outside_the_context_are_refused(
    store: Store, make_context: Callable[..., Path], files: dict[str, object], source: str, message: str
) -> None:
    ctx = make_context(files, kubefile=f"FROM scratch\nCOPY {source} dest/\n")
    with pytest.raises(ContextPathError, match=message) as info:
        build(store, ctx)
    assert str(info.value).startswith(f"{ctx / 'Kubefile'}:2:1: COPY:")
    assert store.refs.list() == []


def test_symlinks_inside_a_directory_are_kept(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"d/abs": Link("/etc/passwd"), "d/rel": Link("../x")}, kubefile="FROM scratch\nCOPY d d/\n"
    )
    members = layer_members(store, build(store, ctx), 0)
    assert members["d/abs"].issym() and members["d/abs"].linkname == "/etc/passwd"
    assert members["d/rel"].linkname == "../x"


@pytest.mark.parametrize("ignore_file", [".sealerignore", ".dockerignore"])
def test_ignore_files(store: Store, make_context: Callable[..., Path], ignore_file: str) -> None:
    ctx = make_context(
        {
            "app/keep.yaml": "k",
            "app/drop.log": "d",
            "app/logs/x.log": "x",
            "app/logs/important.log": "i",
            "app/tmp/t": "t",
            ignore_file: "**/*.log\n!app/logs/important.log\napp/tmp\n",
        },
        kubefile="FROM scratch\nCOPY app app/\n",
    )
    names = sorted(layer_members(store, build(store, ctx), 0))
    assert names == ["app", "app/keep.yaml", "app/logs", "app/logs/important.log"]


def test_build_args_and_arch_expansion(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"amd64/bin/tool": "amd", "arm64/bin/tool": "arm"},
        kubefile="ARG DIR=unused\nFROM scratch\nARG DEST=default\nENV WHERE=${DEST}\nCOPY ${ARCH}/bin ${WHERE}/\n",
    )
    manifest = build(store, ctx, build_args={"DEST": "opt"})
    assert sorted(layer_members(store, manifest, 0)) == ["opt", "opt/tool"]
    config = store.read_config(manifest.config)
    assert "WHERE=opt" in config.config.env


def test_multi_platform_builds_an_index(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"amd64/tool": "amd", "arm64/tool": "arm"},
        kubefile="FROM scratch\nKUBEVERSION v1.29.3\nCOPY ${ARCH}/tool bin/tool\n",
    )
    plats = (Platform("linux", "amd64"), Platform("linux", "arm64"))
    result = build_image(store, BuildOptions(context=ctx, tags=("multi:v1",), platforms=plats))
    assert result.descriptor.media_type == mediatypes.OCI_INDEX
    validate_image(store, "multi:v1")
    index = store.read_index(result.descriptor)
    assert [str(d.platform) for d in index.manifests] == ["linux/amd64", "linux/arm64"]
    contents = []
    for desc in index.manifests:
        manifest = store.read_manifest(desc)
        contents.append(layer_file(store, manifest, 0, "bin/tool"))
        meta = json.loads(layer_file(store, manifest, 1, "Metadata"))
        assert meta["arch"] == desc.platform.architecture  # type: ignore[union-attr]
    assert contents == [b"amd", b"arm"]


def test_from_local_image_inherits_apps(store: Store, make_context: Callable[..., Path]) -> None:
    base = make_context(
        {"nginx.yaml": "kind: Deployment\n"}, kubefile="FROM scratch\nAPP nginx local://nginx.yaml\n"
    )
    base_manifest = build(store, base, tag="apps:base")
    assert extension(base_manifest).applications[0].name == "nginx"
    child = make_context(
        {"x.yaml": "kind: Service\n"},
        kubefile='FROM apps:base\nCOPY x.yaml manifests/\nAPPCMDS nginx ["kubectl apply -f x"]\nLAUNCH ["nginx"]\n',
    )
    manifest = build(store, child, tag="apps:child")
    assert manifest.layers[0] == base_manifest.layers[0]
    ext = extension(manifest)
    assert [a.name for a in ext.applications] == ["nginx"]
    assert list(ext.launch.app_names) == ["nginx"]
    unknown = make_context({}, kubefile='FROM apps:base\nLAUNCH ["redis"]\n')
    with pytest.raises(KubefileError, match="redis"):
        build(store, unknown, tag="apps:bad")


def test_app_types(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {
            "kube/a.yaml": "a",
            "kube/b.yml": "b",
            "chart/Chart.yaml": "name: c",
            "chart/values.yaml": "v: 1",
            "chart/templates/d.yaml": "d",
            "chart/templates/_helpers.tpl": "t",
            "install.sh": "echo hi\n",
        },
        kubefile="FROM scratch\nAPP k local://kube\nAPP h local://chart\nAPP s local://install.sh\n",
    )
    manifest = build(store, ctx)
    apps = {a.name: a for a in extension(manifest).applications}
    assert {n: a.type for n, a in apps.items()} == {"k": "kube", "h": "helm", "s": "shell"}
    assert "application/apps/h/chart/Chart.yaml" in layer_members(store, manifest, 1)
    assert "application/apps/s/install.sh" in layer_members(store, manifest, 2)


def test_gzip_compression(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context({"f": "x" * 10000}, kubefile="FROM scratch\nCOPY f f\n")
    manifest = build(store, ctx, compression=Compression.GZIP)
    assert manifest.layers[0].media_type == mediatypes.OCI_LAYER_GZIP


def test_run_step_creates_and_deletes(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"etc/keep": "k", "etc/drop": "d", "opaque/old": "o"},
        kubefile=(
            "FROM scratch\nCOPY etc etc/\nCOPY opaque opaque/\n"
            "RUN rm etc/drop && echo new > etc/new && rm -rf opaque && mkdir opaque && echo n > opaque/fresh "
            "&& echo $ARCH > arch\n"
        ),
    )
    manifest = build(store, ctx)
    members = layer_members(store, manifest, 2)
    assert "etc/.wh.drop" in members
    assert "etc/new" in members
    assert "opaque/.wh..wh..opq" in members and "opaque/fresh" in members
    assert layer_file(store, manifest, 2, "arch") == b"amd64\n"


@pytest.mark.parametrize("mode", ["overlay", "snapshot"])
def test_run_modes_agree(tmp_path: Path, make_context: Callable[..., Path], mode: str) -> None:
    ctx = make_context(
        {"a/x": "x", "a/y": "y"},
        kubefile="FROM scratch\nCOPY a a/\nRUN rm a/x && mkdir -p b/c && echo z > b/c/z && chmod 0700 b && touch -d @0 b/c/z\n",
        name="runmode",
    )
    store = Store.open(tmp_path / f"root-{mode}")
    manifest = build(store, ctx, run_mode=mode)
    names = sorted(layer_members(store, manifest, 1))
    assert names == ["a", "a/.wh.x", "b", "b/c", "b/c/z"]


def test_failing_run_names_step_and_stores_nothing(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"f": "x"}, kubefile="FROM scratch\nCOPY f f\nRUN echo starting && echo boom >&2 && exit 3\n"
    )
    with pytest.raises(RunStepError) as info:
        build(store, ctx)
    err = info.value
    assert err.status == 3
    assert "Kubefile:3:1: RUN" in err.message and "exit code 3" in err.message and "boom" in err.message
    assert "starting" in err.output_tail
    assert store.refs.list() == []


def test_bad_kubefile_is_a_grammar_error(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context({}, kubefile="FROM scratch\nCOPPY a b\n")
    with pytest.raises(KubefileError) as info:
        build(store, ctx)
    assert str(info.value).startswith(f"{ctx / 'Kubefile'}:2:1:")


def test_unknown_runtime_label(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context({}, kubefile="FROM scratch\nLABEL cluster.alpha.sealer.io/cluster-runtime-type=k9s\n")
    with pytest.raises(InvalidArgument, match="unknown cluster runtime"):
        build(store, ctx)


def test_big_files_are_keyed_by_stat_small_ones_by_content(
    store: Store, make_context: Callable[..., Path]
) -> None:
    from builder.build.cache import CONTENT_HASH_MAX_BYTES

    big = os.urandom(1 << 16) * ((CONTENT_HASH_MAX_BYTES >> 16) + 1)
    ctx = make_context(
        {"big/blob": big, "small/f": "x"}, kubefile="FROM scratch\nCOPY big big/\nCOPY small small/\n"
    )
    first = build(store, ctx)
    events: list[BuildEvent] = []
    os.utime(ctx / "big" / "blob", (7, 7))
    os.utime(ctx / "small" / "f", (7, 7))
    again = build(store, ctx, events=events)
    # The touched big file is archived again (same bytes, same digest); the small one is a hit.
    assert [e.cached for e in events if isinstance(e, StepFinished)] == [False, True]
    assert again.digest == first.digest
