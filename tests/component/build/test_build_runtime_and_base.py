"""What a build says about its runtime label and its base: `none` is a runtime (the image's
scripts only: no Metadata file), an unknown runtime stops the build at its LABEL line before
any layer is built, a FROM that is neither in the store nor pullable names its Kubefile line
and what to do, and bundling is a numbered step like the others."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from builder.build.events import BuildEvent, EventSink, StepStarted, ignore_events
from builder.build.executor import BuildResult
from builder.build.executor import build_image as build_without_registry
from builder.build.plan import BuildOptions
from builder.cli.build import registry_puller
from builder.errors import ImageNotFound, NotFound, RegistryError, RegistryUnavailable, UsageError
from builder.image import mediatypes
from builder.image.descriptor import Platform
from builder.image.extension import ImageExtension
from builder.image.metadata import RUNTIME_LABELS
from builder.runtime.plugins import known_runtimes
from builder.store.layout import Store
from kubefile_grammar.errors import InvalidArgument
from tests.conftest import SealerRunner
from tests.registry_fixtures import RegistryServer
from tests.validate import validate_image

AMD64 = (Platform("linux", "amd64"),)
LABEL = mediatypes.LABEL_CLUSTER_RUNTIME
UNREACHABLE = "127.0.0.1:9"  # discard port: connection refused at once, never a network


def build_image(store: Store, options: BuildOptions, on_event: EventSink = ignore_events) -> BuildResult:
    """A build with the registry access `sealer build` gives it."""
    return build_without_registry(store, options, on_event, pull=registry_puller(None))


def options(ctx: Path, **kw: object) -> BuildOptions:
    return BuildOptions(context=ctx, tags=("t:v1",), platforms=AMD64, **kw)  # type: ignore[arg-type]


def test_the_labels_the_build_takes_are_the_runtimes_run_knows() -> None:
    assert known_runtimes() == RUNTIME_LABELS


def test_runtime_none_builds_a_cluster_image_without_metadata(
    store: Store, make_context: Callable[..., Path]
) -> None:
    ctx = make_context(
        {"scripts/init.sh": "echo hi\n"},
        kubefile=f'FROM scratch\nCOPY scripts scripts/\nLABEL {LABEL}=none\nCMDS ["true"]\n',
    )
    build_image(store, options(ctx))
    validate_image(store, "t:v1")
    manifest = store.read_manifest(store.resolve("t:v1"))
    config = store.read_config(manifest.config)
    assert config.config.labels[LABEL] == "none"
    assert len(manifest.layers) == 1  # the COPY: no Metadata layer (its ClusterRuntime has no `none`)
    ext = ImageExtension.from_json(manifest.annotations[mediatypes.ANNOTATION_SEALER_EXTENSION])
    assert ext.type == "kube-installer"  # a cluster image whose scripts are the whole install


def test_an_unknown_runtime_stops_at_its_label_line_before_any_layer(
    store: Store, make_context: Callable[..., Path]
) -> None:
    ctx = make_context({"a.txt": "a\n"}, kubefile=f"FROM scratch\nCOPY a.txt ./\nLABEL a=b {LABEL}=k9s\n")
    events: list[BuildEvent] = []
    with pytest.raises(InvalidArgument) as info:
        build_image(store, options(ctx), events.append)
    assert str(info.value) == f"{ctx / 'Kubefile'}:3:1: LABEL {LABEL}=k9s: unknown cluster runtime"
    assert info.value.hint == "use one of kubernetes, k3s, k0s, none (none: only the image's scripts)"
    assert not [e for e in events if isinstance(e, StepStarted)]  # the COPY never ran
    assert not any((store.root / "oci/blobs/sha256").glob("*"))
    with pytest.raises(UsageError, match=f"^--label {LABEL}=k9s: unknown cluster runtime$"):
        build_image(store, options(make_context({}, kubefile="FROM scratch\n"), labels={LABEL: "k9s"}))


def test_from_an_unreachable_registry_names_the_line_and_what_to_do(
    store: Store, make_context: Callable[..., Path]
) -> None:
    base = f"{UNREACHABLE}/nope/base:v1"
    ctx = make_context({"a.txt": "a\n"}, kubefile=f"ARG X=1\nFROM {base}\nCOPY a.txt ./\n")
    with pytest.raises(RegistryUnavailable) as info:
        build_image(store, options(ctx))
    where = f"{ctx / 'Kubefile'}:2:1: FROM {base}"
    assert info.value.message.startswith(
        f"{where}: not in the local store, and pulling it failed: {UNREACHABLE}"
    )
    assert "\n" not in info.value.message
    assert f"sealer pull {base}" in (info.value.hint or "") and "--pull never" in (info.value.hint or "")
    with pytest.raises(ImageNotFound) as never:
        build_image(store, options(ctx, pull="never"))
    assert never.value.message == f"{where}: not in the local store (--pull never)"
    assert (
        never.value.hint == f"sealer pull {base}, or build it first; `sealer images` lists the local images"
    )
    assert store.refs.list() == []


def test_from_an_image_the_registry_does_not_have(
    store: Store, make_context: Callable[..., Path], registry: RegistryServer
) -> None:
    base = f"{registry.host}/nope/base:v1"
    ctx = make_context({}, kubefile=f"FROM {base}\n")
    with pytest.raises(NotFound) as info:
        build_image(store, options(ctx))
    assert info.value.message.startswith(
        f"{ctx / 'Kubefile'}:1:1: FROM {base}: not in the local store, and pulling"
    )


def test_the_cli_prints_one_line_and_exits_1(sealer: SealerRunner, make_context: Callable[..., Path]) -> None:
    ctx = make_context({}, kubefile=f"FROM {UNREACHABLE}/nope/base:v1\n")
    result = sealer("build", "-t", "t:v1", str(ctx), expect=1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: {ctx / 'Kubefile'}:1:1: FROM {UNREACHABLE}/nope"
    )


def test_bundling_is_a_numbered_step(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context(
        {"list/imageList": f"{UNREACHABLE}/nothing/here:v1\n", "a.txt": "a\n"},
        kubefile="FROM scratch\nCOPY a.txt ./\nCOPY list manifests/\n",
    )
    events: list[BuildEvent] = []
    with pytest.raises(RegistryError):
        build_image(store, options(ctx), events.append)
    started = [(e.index, e.total, e.text.split(" ", 1)[0]) for e in events if isinstance(e, StepStarted)]
    assert started == [(1, 2, "COPY"), (2, 2, "COPY"), (3, 3, "BUNDLE")]  # was (0, 0, "BUNDLE")
