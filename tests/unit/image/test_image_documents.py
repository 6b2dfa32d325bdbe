"""Manifest, config and index: round trips, canonical bytes, tolerant reading."""

from __future__ import annotations

import json

import pytest

from builder.errors import ImageNotFound, InvalidManifest, UnsupportedMediaType
from builder.image.config import ContainerConfig, History, ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.index import Index
from builder.image.manifest import Manifest
from builder.image.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
)

D1 = Digest.from_bytes(b"one")
D2 = Digest.from_bytes(b"two")
CREATED = "1970-01-01T00:00:00Z"


def _manifest() -> Manifest:
    return Manifest(
        Descriptor(OCI_CONFIG, D1, 10),
        (Descriptor(OCI_LAYER_ZSTD, D2, 20),),
        {"z": "last", "a": "first"},
    )


def test_manifest_canonical_bytes_are_fixed() -> None:
    m = _manifest()
    expected = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        f'"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":10}},'
        f'"layers":[{{"mediaType":"{OCI_LAYER_ZSTD}","digest":"{D2}","size":20}}],'
        '"annotations":{"a":"first","z":"last"}}'
    )
    assert m.to_bytes().decode() == expected
    assert m.digest == Digest.from_bytes(expected.encode())
    # Same value, built in another order: same bytes.
    again = Manifest(Descriptor(OCI_CONFIG, D1, 10)).with_layer(Descriptor(OCI_LAYER_ZSTD, D2, 20))
    again = again.with_annotations({"a": "first"}).with_annotations({"z": "last"})
    assert again.to_bytes() == m.to_bytes()


def test_manifest_round_trip_and_descriptor() -> None:
    m = _manifest()
    parsed = Manifest.from_bytes(m.to_bytes())
    assert parsed == m
    assert parsed.digest == m.digest
    desc = m.descriptor(Platform("linux", "amd64"))
    assert (desc.media_type, desc.digest, desc.size) == (OCI_MANIFEST, m.digest, len(m.to_bytes()))
    assert desc.platform == Platform("linux", "amd64")


def test_parsed_manifest_keeps_foreign_bytes() -> None:
    m = _manifest()
    pretty = json.dumps(json.loads(m.to_bytes()), indent=3).encode()
    parsed = Manifest.from_bytes(pretty)
    assert parsed.to_bytes() == pretty
    assert parsed.digest == Digest.from_bytes(pretty)
    # Deriving drops the foreign bytes and re-encodes canonically.
    assert parsed.with_annotations({}).to_bytes() == m.to_bytes()


def test_manifest_functional_updates() -> None:
    m = _manifest()
    m2 = m.with_config(Descriptor(OCI_CONFIG, D2, 3))
    assert m.config.digest == D1 and m2.config.digest == D2
    assert m.with_annotations({"x": "y"}, replace=True).annotations == {"x": "y"}
    assert len(m.with_layer(Descriptor(OCI_LAYER_ZSTD, D1, 1)).layers) == 2
    assert len(m.layers) == 1


def test_docker_schema2_manifest_is_read() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": str(D1), "size": 5},
        "layers": [{"mediaType": DOCKER_LAYER_GZIP, "digest": str(D2), "size": 7}],
    }
    m = Manifest.from_bytes(json.dumps(doc).encode())
    assert m.media_type == DOCKER_MANIFEST
    assert m.layers[0].media_type == DOCKER_LAYER_GZIP


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"schemaVersion": 1, "name": "x", "fsLayers": []}, "schema 1"),
        (
            {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
            "schema 1",
        ),
        ({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}, "no config"),
        (
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []},
            "index",
        ),
        ({"schemaVersion": 3}, "schemaVersion"),
    ],
)
def test_bad_manifests(doc: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidManifest, match=fragment):
        Manifest.from_bytes(json.dumps(doc).encode())


def test_unsupported_and_malformed_manifests() -> None:
    with pytest.raises(UnsupportedMediaType):
        Manifest.from_bytes(b'{"schemaVersion":2,"mediaType":"text/plain","config":{},"layers":[]}')
    with pytest.raises(InvalidManifest, match="not valid JSON"):
        Manifest.from_bytes(b"{")
    with pytest.raises(InvalidManifest, match="duplicate"):
        Manifest.from_bytes(b'{"schemaVersion":2,"schemaVersion":2}')


# -- config -----------------------------------------------------------------------------------


def test_empty_config_and_derivation() -> None:
    base = ImageConfig.empty(Platform("linux", "arm64", "v8"), CREATED)
    assert base.platform == Platform("linux", "arm64", "v8")
    assert json.loads(base.to_bytes()) == {
        "created": CREATED,
        "architecture": "arm64",
        "variant": "v8",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    c = (
        base.with_layer(D1, History(CREATED, "COPY . ."))
        .with_history(History(CREATED, "LABEL a=b"))
        .with_labels({"a": "b"})
        .with_env(["PATH=/bin", "A=1"])
        .with_env({"A": "2"})
        .with_cmd(["kubectl", "apply"])
    )
    assert c.diff_ids == (D1,)
    assert [h.empty_layer for h in c.history] == [False, True]
    assert c.config.env == ("PATH=/bin", "A=2")
    assert c.config.labels == {"a": "b"}
    assert c.config.cmd == ("kubectl", "apply")
    assert base.diff_ids == ()  # the original is unchanged
    parsed = ImageConfig.from_bytes(c.to_bytes())
    assert parsed == c
    assert parsed.digest == c.digest
    assert c.descriptor().media_type == OCI_CONFIG


def test_config_canonical_bytes_stable() -> None:
    a = ImageConfig.empty(Platform("linux", "amd64"), CREATED).with_labels({"b": "2", "a": "1"})
    b = ImageConfig.empty(Platform("linux", "amd64"), CREATED).with_labels({"a": "1"}).with_labels({"b": "2"})
    assert a.to_bytes() == b.to_bytes()
    assert b'"Labels":{"a":"1","b":"2"}' in a.to_bytes()


def test_docker_config_tolerated_and_extras_kept() -> None:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2022-12-14T13:02:50.93707+08:00",
        "docker_version": "20.10.7",
        "container_config": {"Hostname": "abc"},
        "config": {
            "Env": None,
            "Cmd": None,
            "Labels": None,
            "User": "root",
            "ExposedPorts": {"80/tcp": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": [str(D1)]},
        "history": [{"created": CREATED, "created_by": "/bin/sh"}],
    }
    c = ImageConfig.from_bytes(json.dumps(doc).encode())
    assert c.config.env == () and c.config.cmd is None and c.config.labels == {}
    assert c.config.extra == {"User": "root", "ExposedPorts": {"80/tcp": {}}}
    assert c.extra["docker_version"] == "20.10.7"
    derived = json.loads(c.with_labels({"x": "y"}).to_bytes())
    assert derived["docker_version"] == "20.10.7"
    assert derived["config"]["User"] == "root"
    assert derived["config"]["Labels"] == {"x": "y"}


@pytest.mark.parametrize(
    "doc",
    [
        {"os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "tar"}},
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["md5:x"]}},
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "config": {"Env": "A=1"}},
    ],
)
def test_bad_configs(doc: dict[str, object]) -> None:
    with pytest.raises(InvalidManifest):
        ImageConfig.from_bytes(json.dumps(doc).encode())


def test_container_config_defaults() -> None:
    assert ContainerConfig().to_json() == {}
    assert ContainerConfig(cmd=()).to_json() == {"Cmd": []}


# -- index ------------------------------------------------------------------------------------


def _index() -> Index:
    return Index(
        (
            Descriptor(OCI_MANIFEST, D1, 1, platform=Platform("linux", "amd64")),
            Descriptor(OCI_MANIFEST, D2, 2, platform=Platform("linux", "arm64", "v8")),
        )
    )


def test_index_round_trip_and_select() -> None:
    idx = _index()
    parsed = Index.from_bytes(idx.to_bytes())
    assert parsed == idx and parsed.digest == idx.digest
    assert idx.select(Platform("linux", "arm64")).digest == D2
    assert idx.select(Platform("linux", "amd64")).digest == D1
    with pytest.raises(ImageNotFound, match=r"available: linux/amd64, linux/arm64/v8"):
        idx.select(Platform("linux", "s390x"))


def test_index_reads_docker_manifest_list_and_rejects_manifest() -> None:
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": []}
    assert Index.from_bytes(json.dumps(doc).encode()).media_type == DOCKER_MANIFEST_LIST
    with pytest.raises(InvalidManifest, match="found a manifest"):
        Index.from_bytes(_manifest().to_bytes())


def test_index_with_manifest_replaces_same_platform() -> None:
    idx = _index().with_manifest(Descriptor(OCI_MANIFEST, D1, 9, platform=Platform("linux", "arm64", "v8")))
    assert [m.size for m in idx.manifests] == [1, 9]


def test_a_lone_surrogate_is_refused_at_parse() -> None:
    """'\\udcff' is valid JSON but no text: a base config holding one crashed the build at write."""
    import json

    from builder.errors import InvalidManifest
    from builder.image.config import ImageConfig

    doc = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    bad = json.dumps({**doc, "config": {"Labels": {"a": "\udcff"}}}).encode()
    with pytest.raises(InvalidManifest, match="lone UTF-16 surrogate"):
        ImageConfig.from_bytes(bad)
    good = json.dumps({**doc, "config": {"Labels": {"a": "\U0001f600"}}}).encode()
    assert ImageConfig.from_bytes(good).config.labels == {"a": "\U0001f600"}
