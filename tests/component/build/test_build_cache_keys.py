"""The build cache serves a layer only for the same inputs: a chmod (same bytes, new mode) and
an in-place edit of the same size with its mtime put back (only the ctime moves) each build a
new layer. Both were planted as bugs that survived every test (issue 11, item 6); the tests
build twice through `build_image`, so they hold wherever the cache-key code lives."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from builder.build.events import BuildEvent, StepFinished
from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.image.descriptor import Platform
from builder.image.manifest import Manifest
from builder.store.layout import Store
from tests.component.build.test_build import layer_file, layer_members
from tests.validate import validate_image

AMD64 = (Platform("linux", "amd64"),)
KUBEFILE = "FROM scratch\nCOPY etc etc/\n"


def _build(store: Store, ctx: Path, events: list[BuildEvent]) -> Manifest:
    events.clear()
    result = build_image(store, BuildOptions(context=ctx, tags=("c:1",), platforms=AMD64), events.append)
    validate_image(store, "c:1")
    return store.read_manifest(result.manifests[0])


def _cached(events: list[BuildEvent]) -> list[bool]:
    return [e.cached for e in events if isinstance(e, StepFinished)]


def test_a_chmod_alone_builds_a_new_layer(store: Store, make_context: Callable[..., Path]) -> None:
    ctx = make_context({"etc/tool.sh": "echo hi\n"}, kubefile=KUBEFILE)
    os.chmod(ctx / "etc" / "tool.sh", 0o644)
    events: list[BuildEvent] = []
    first = _build(store, ctx, events)
    assert layer_members(store, first, 0)["etc/tool.sh"].mode == 0o644
    assert _cached(events) == [False]

    os.chmod(ctx / "etc" / "tool.sh", 0o755)
    second = _build(store, ctx, events)
    assert _cached(events) == [False]
    assert layer_members(store, second, 0)["etc/tool.sh"].mode == 0o755
    assert second.digest != first.digest


def test_a_same_size_edit_with_its_mtime_restored_builds_a_new_layer(
    store: Store, make_context: Callable[..., Path]
) -> None:
    ctx = make_context({"etc/conf": "version=1\n"}, kubefile=KUBEFILE)
    path = ctx / "etc" / "conf"
    events: list[BuildEvent] = []
    first = _build(store, ctx, events)
    before = path.stat()

    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(b"version=2\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )

    second = _build(store, ctx, events)
    assert _cached(events) == [False]
    assert layer_file(store, second, 0, "etc/conf") == b"version=2\n"
    assert second.digest != first.digest
