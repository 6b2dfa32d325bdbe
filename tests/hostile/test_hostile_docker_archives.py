"""Hostile docker archives (`manifest.json` + configs + layer tars): each is refused with one
line naming the archive, and nothing gets a name, also when another image in it was fine."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from builder.errors import DigestMismatch, LayoutInvalid, SealerError
from builder.store.archive import load
from builder.store.layout import MAX_DOCUMENT_BYTES, Store
from tests.unit.store._tiny import make_tar

LAYER = make_tar({"etc/a.conf": b"a" * 100})
DIFF_ID = "sha256:" + hashlib.sha256(LAYER).hexdigest()
GOOD_LAYER = make_tar({"etc/good.conf": b"fine"})
# 40 MiB of zeros in a tar: ~1 kB of zstd, past 200x + 32 MiB (builder/layers/unpack.py's bound).
_ZEROS = make_tar({"zeros": bytes(40 << 20)})
BOMB = zstandard.ZstdCompressor(level=3).compress(_ZEROS)
BOMB_DIFF_ID = "sha256:" + hashlib.sha256(_ZEROS).hexdigest()
del _ZEROS


def _config(diff_ids: list[str]) -> bytes:
    return json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()


Entry = tuple[str, bytes | str | None, bytes]  # name, content (str: symlink target), type


@dataclass(frozen=True)
class Case:
    id: str
    entries: Callable[[], list[tuple[str, object]]]
    error: type[SealerError]
    message: str  # regex after "{path}"


def _reg(name: str, data: bytes) -> tuple[str, object]:
    return (name, data)


def _link(name: str, target: str, hard: bool = False) -> tuple[str, object]:
    return (name, ("hard" if hard else "sym", target))


def _manifest(*items: dict[str, object]) -> tuple[str, object]:
    return _reg("manifest.json", json.dumps(list(items)).encode())


def _image(layers: list[str], tags: list[str] | None = None, config: str = "c.json") -> dict[str, object]:
    return {"Config": config, "RepoTags": tags if tags is not None else ["evil:v1"], "Layers": layers}


def _good() -> list[tuple[str, object]]:
    """A valid image named good:v1, listed first: it must not get a name either."""
    diff = "sha256:" + hashlib.sha256(GOOD_LAYER).hexdigest()
    return [_reg("good.json", _config([diff])), _reg("good.tar", GOOD_LAYER)]


GOOD = _image(["good.tar"], ["good:v1"], "good.json")

CASES = [
    Case("symlink-out", lambda: [_manifest(GOOD, _image(["l/layer.tar"])), *_good(), _reg("c.json", _config([DIFF_ID])),
         _link("l/layer.tar", "../../../etc/passwd")], LayoutInvalid, r": entry 'l/layer\.tar' links outside the archive"),
    Case("symlink-absolute", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", _config([DIFF_ID])),
         _link("l.tar", "/etc/passwd")], LayoutInvalid, r": entry 'l\.tar' links outside the archive"),
    Case("hardlink-out", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", _config([DIFF_ID])),
         _link("l.tar", "../x.tar", hard=True)], LayoutInvalid, r": entry 'l\.tar' links outside the archive"),
    Case("link-to-link", lambda: [_manifest(_image(["a.tar"])), _reg("c.json", _config([DIFF_ID])),
         _link("a.tar", "b.tar"), _link("b.tar", "c.tar"), _reg("c.tar", LAYER)],
         LayoutInvalid, r": entry 'a\.tar' links to 'b\.tar', which is not a regular file in the archive"),
    Case("config-link-to-missing", lambda: [_manifest(_image(["l.tar"])), _link("c.json", "nowhere.json"),
         _reg("l.tar", LAYER)], LayoutInvalid, r": entry 'c\.json' links to 'nowhere\.json', which is not a regular file in the archive"),
    Case("duplicate-layer", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", _config([DIFF_ID])),
         _reg("l.tar", LAYER), _reg("l.tar", LAYER)], LayoutInvalid, r": entry 'l\.tar' appears twice"),
    Case("layer-not-its-diff-id", lambda: [_manifest(GOOD, _image(["l.tar"])), *_good(), _reg("c.json", _config([DIFF_ID])),
         _reg("l.tar", make_tar({"etc/a.conf": b"b" * 100}))], DigestMismatch, r": layer 'l\.tar' does not match its diff_id \(.*\)"),
    Case("gzip-layer-not-its-diff-id", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", _config([DIFF_ID])),
         _reg("l.tar", gzip.compress(GOOD_LAYER))], DigestMismatch, r": layer 'l\.tar' does not match its diff_id \(.*\)"),
    Case("corrupt-gzip-layer", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", _config([DIFF_ID])),
         _reg("l.tar", gzip.compress(LAYER)[:-12] + b"\0" * 12)], LayoutInvalid, r": layer 'l\.tar' is corrupt \(.*\)"),
    Case("missing-layer", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", _config([DIFF_ID]))],
         LayoutInvalid, r" lacks entry 'l\.tar'"),
    Case("missing-config", lambda: [_manifest(_image(["l.tar"])), _reg("l.tar", LAYER)],
         LayoutInvalid, r" lacks the image config 'c\.json'"),
    Case("huge-config", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", b" " * (MAX_DOCUMENT_BYTES + 1))],
         LayoutInvalid, rf": c\.json is larger than {MAX_DOCUMENT_BYTES} bytes"),
    Case("config-not-a-config", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", b'{"os": "linux"}')],
         LayoutInvalid, r": image config 'c\.json' is invalid: .*"),
    Case("layer-count", lambda: [_manifest(_image(["l.tar", "l.tar"])), _reg("c.json", _config([DIFF_ID])),
         _reg("l.tar", LAYER)], LayoutInvalid, r": image config 'c\.json' lists 1 diff_ids, manifest\.json 2 layers"),
    Case("manifest-not-json", lambda: [_reg("manifest.json", b"[{")], LayoutInvalid, r": manifest\.json is not JSON \(.*\)"),
    Case("manifest-shape", lambda: [_reg("manifest.json", b'[{"Config": 1}]')], LayoutInvalid,
         r": manifest\.json entries need Config \(string\), RepoTags and Layers \(lists of strings\)"),
    Case("manifest-empty", lambda: [_reg("manifest.json", b"[]")], LayoutInvalid,
         r": manifest\.json must be a non-empty list of images"),
    Case("bad-repo-tag", lambda: [_manifest(_image(["l.tar"], ["../../evil"])), _reg("c.json", _config([DIFF_ID])),
         _reg("l.tar", LAYER)], LayoutInvalid, r": RepoTag '\.\./\.\./evil' is not a valid image name"),
    Case("zstd-bomb", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", _config([BOMB_DIFF_ID])), _reg("l.tar", BOMB)],
         LayoutInvalid, r": layer 'l\.tar' expands past 200x its compressed size \(\d+ bytes\): refused as a decompression bomb"),
    Case("fifo-layer", lambda: [_manifest(_image(["l.tar"])), _reg("c.json", _config([DIFF_ID])), ("l.tar", "fifo")],
         LayoutInvalid, r": entry 'l\.tar' is not a regular file"),
]  # fmt: skip


def _write(path: Path, entries: list[tuple[str, object]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            elif content == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            else:
                kind, target = content  # type: ignore[misc]
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = target
                tar.addfile(info)
    return path


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_docker_archive_is_refused(tmp_path: Path, case: Case) -> None:
    path = _write(tmp_path / "evil.tar", case.entries())
    store = Store.open(tmp_path / "store")
    with pytest.raises(case.error) as info:
        load(store, path)
    message = str(info.value)
    assert "\n" not in message
    assert re.fullmatch(re.escape(str(path)) + case.message, message), message
    assert store.refs.list() == []


def test_links_inside_the_archive_are_followed(tmp_path: Path) -> None:
    """What docker and skopeo write: `ID/layer.tar -> ../DIFFID.tar`, one hop, by name."""
    path = _write(
        tmp_path / "ok.tar",
        [_manifest(_image(["id/layer.tar"])), _reg("c.json", _config([DIFF_ID])), _reg("l.tar", LAYER),
         _link("id/layer.tar", "../l.tar")],
    )  # fmt: skip
    store = Store.open(tmp_path / "store")
    assert load(store, path) == ["docker.io/library/evil:v1"]
