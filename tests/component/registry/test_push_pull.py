"""Push and pull against a real docker-registry (plain HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import NotFound
from builder.image.descriptor import Platform
from builder.image.mediatypes import OCI_INDEX, OCI_MANIFEST
from builder.registry.client import RegistryClient, RegistryOptions, is_loopback
from builder.registry.events import (
    BlobDone,
    BlobMounted,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    ManifestDone,
    RegistryEvent,
)
from builder.store.layout import Store
from tests.component.registry._images import add_image, add_index
from tests.registry_fixtures import RegistryServer
from tests.validate import validate_image

pytestmark = pytest.mark.component


def _client(events: list[RegistryEvent] | None = None, **options: object) -> RegistryClient:
    return RegistryClient(RegistryOptions(**options), on_event=events.append if events is not None else None)  # type: ignore[arg-type]


def _sent(events: list[RegistryEvent]) -> int:
    return sum(e.transferred for e in events if isinstance(e, BlobDone))


def test_push_pull_round_trip_and_second_push_moves_nothing(registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    layers = [{"etc/a.conf": b"a" * 5000}, {"bin/tool": b"#!/bin/sh\necho hi\n"}, {"Metadata": b"{}"}]
    desc = add_image(src, "app:v1", layers, compression="zstd")
    events: list[RegistryEvent] = []
    client = _client(events)
    ref = f"{registry.host}/sealer/app:v1"

    pushed = client.push(src, "app:v1", ref)
    assert pushed.digest == desc.digest and pushed.media_type == OCI_MANIFEST
    started = [e for e in events if isinstance(e, BlobStarted)]
    assert len(started) == 4  # config + 3 layers
    assert {e.direction for e in started} == {"push"}
    assert any(isinstance(e, BlobProgress) for e in events)
    assert _sent(events) == sum(e.size for e in started)
    assert [e for e in events if isinstance(e, ManifestDone)][-1].digest == str(desc.digest)
    assert client.exists(ref) and not client.exists(f"{registry.host}/sealer/app:nope")
    assert client.resolve(ref).digest == desc.digest

    events.clear()
    client.push(src, "app:v1", ref)
    assert _sent(events) == 0
    assert len([e for e in events if isinstance(e, BlobSkipped)]) == 4

    dst = Store.open(tmp_path / "dst")
    got = _client().pull(dst, ref)
    assert got.digest == desc.digest
    validate_image(dst, ref)
    assert dst.resolve(ref).digest == desc.digest
    # the manifest bytes are exactly what we pushed
    assert dst.blobs.read_bytes(desc.digest) == src.blobs.read_bytes(desc.digest)
    # pull again: every blob is already there
    events.clear()
    _client(events).pull(dst, ref, tag_as="local/copy:v2")
    assert _sent(events) == 0 and dst.resolve("local/copy:v2").digest == desc.digest


def test_push_defaults_to_the_image_name(registry: RegistryServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    name = f"{registry.host}/team/tool:1.0"
    desc = add_image(store, name)
    assert _client().push(store, name).digest == desc.digest
    assert _client().resolve(name).digest == desc.digest


def test_index_push_and_platform_pull(registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    top = add_index(src, "multi:v1")
    ref = f"{registry.host}/multi:v1"
    client = _client()
    assert client.push(src, "multi:v1", ref).digest == top.digest
    index = src.read_index(top)

    every = Store.open(tmp_path / "all")
    got = client.pull(every, ref, all_platforms=True)
    assert got.digest == top.digest and got.media_type == OCI_INDEX
    validate_image(every, ref)

    one = Store.open(tmp_path / "one")
    arm = client.pull(one, ref, platform=Platform.parse("linux/arm64"))
    assert arm.media_type == OCI_MANIFEST
    assert arm.digest == index.select(Platform("linux", "arm64")).digest
    validate_image(one, ref)
    amd = index.select(Platform("linux", "amd64"))
    assert not one.blobs.has(amd.digest)  # only the chosen platform came down


def test_mount_across_repositories(registry: RegistryServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    add_image(store, "base:v1", [{"big": b"x" * 100_000}, {"small": b"y"}])
    events: list[RegistryEvent] = []
    client = _client(events)
    client.push(store, "base:v1", f"{registry.host}/one/base:v1")
    events.clear()
    client.push(store, "base:v1", f"{registry.host}/two/base:v1")
    mounted = [e for e in events if isinstance(e, BlobMounted)]
    assert len(mounted) == 3 and {e.source for e in mounted} == {"one/base"}
    assert _sent(events) == 0
    cache = json.loads((store.cache_dir / "registry-blobs.json").read_text())
    assert all("two/base" in repos for repos in cache[registry.host].values())
    # a fresh store pulls from the mounted repository
    other = Store.open(tmp_path / "o")
    client.pull(other, f"{registry.host}/two/base:v1")
    validate_image(other, f"{registry.host}/two/base:v1")


def test_unknown_tag_and_repository_are_not_found(registry: RegistryServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    add_image(store, "app:v1")
    _client().push(store, "app:v1", f"{registry.host}/app:v1")
    for ref in (f"{registry.host}/app:nope", f"{registry.host}/never/pushed:v1"):
        with pytest.raises(NotFound) as info:
            _client().pull(store, ref)
        assert ref in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(NotFound):
            _client().resolve(ref)
    assert store.refs.get(f"{registry.host}/app:nope") is None


def test_loopback_rule() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5000")
    assert is_loopback("127.3.4.5")
    assert not is_loopback("registry.example.com:5000") and not is_loopback("10.0.0.1:5000")
