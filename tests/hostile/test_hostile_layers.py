"""The hostile-layer corpus: one case per hostile input, each refused with a known error.

Every case extracts into `dest` next to an `outside` dir holding a canary `passwd`, then checks
the error class, the one-line message, and that nothing outside `dest` changed. Both whiteout
modes are run: the store's diff dirs ("overlay") and the hosts' flat rootfs ("apply").
Symlinks point at `outside` rather than /etc so that a regression cannot clobber the machine.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.errors import BadWhiteout, LayerError, UnsafePath
from builder.image.digest import Digest
from builder.layers.compression import open_decompressed
from builder.layers.overlay import DiffDirs
from builder.layers.tarreader import MAX_META_SIZE, extract_layer
from builder.layers.unpack import UnpackOptions, unpack_layer
from tests.hostile._bombs import zstd_bomb

OUTSIDE = "@OUTSIDE@"  # replaced by the absolute path of the outside dir


def _info(
    name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "", pax: dict[str, str] | None = None
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    info.pax_headers = pax or {}
    return info


Member = tuple[tarfile.TarInfo, bytes | None]


def _tar(*members: Member, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _raw_header(
    name: str, *, size_field: bytes | None = None, size: int = 0, kind: bytes = tarfile.REGTYPE
) -> bytes:
    """A ustar header with a hand-made size field and a correct checksum."""
    block = bytearray(tarfile.TarInfo(name).tobuf(tarfile.USTAR_FORMAT))
    block[124:136] = size_field if size_field is not None else b"%011o\x00" % size
    block[156:157] = kind
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def truncated_data() -> bytes:
    return _raw_header("big", size=1000) + b"a" * 100


def truncated_header() -> bytes:
    return _tar((_info("ok"), b"fine"))[: 1024 + 100]


def absurd_pax_size() -> bytes:
    return _tar((_info("huge", pax={"size": "9" * 20}), None))


def negative_size() -> bytes:
    return _raw_header("neg", size_field=b"\xff" * 12) + bytes(1024)


def huge_pax_record() -> bytes:
    return _raw_header("././@PaxHeader", size=MAX_META_SIZE + 512, kind=tarfile.XHDTYPE) + bytes(1024)


def bad_checksum() -> bytes:
    block = bytearray(_raw_header("f"))
    block[0:1] = b"g"
    return bytes(block) + bytes(1024)


def gnu_longname_dotdot() -> bytes:
    return _tar((_info("../" + "x" * 120), b"evil"), fmt=tarfile.GNU_FORMAT)


def sparse() -> bytes:
    return _tar((_info("s", pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}), b""))


@dataclass(frozen=True)
class Case:
    id: str
    data: Callable[[], bytes] | tuple[Member, ...]
    error: type[LayerError]
    message: str

    def tar(self, outside: Path) -> bytes:
        if callable(self.data):
            return self.data()
        members = []
        for info, payload in self.data:
            info = _info(
                info.name,
                info.type,
                linkname=info.linkname.replace(OUTSIDE, str(outside)),
                pax=info.pax_headers,
            )
            members.append((info, payload))
        return _tar(*members)


CASES = [
    Case(
        "dotdot", ((_info("../escape"), b"evil"),), UnsafePath, "layer entry '../escape' has a '..' component"
    ),
    Case(
        "dotdot-middle",
        ((_info("a/../../escape"), b"evil"),),
        UnsafePath,
        "layer entry 'a/../../escape' has a '..' component",
    ),
    Case(
        "absolute",
        ((_info("/abs-escape"), b"evil"),),
        UnsafePath,
        "layer entry '/abs-escape' is an absolute path",
    ),
    Case(
        "write-through-symlink",
        ((_info("link", tarfile.SYMTYPE, linkname=OUTSIDE), None), (_info("link/passwd"), b"pwned")),
        UnsafePath,
        "layer entry 'link/passwd' goes through 'link', a symlink or not a directory",
    ),
    Case(
        "write-through-relative-symlink",
        ((_info("link", tarfile.SYMTYPE, linkname="../outside"), None), (_info("link/passwd"), b"pwned")),
        UnsafePath,
        "layer entry 'link/passwd' goes through 'link', a symlink or not a directory",
    ),
    Case(
        "dir-under-symlink",
        ((_info("link", tarfile.SYMTYPE, linkname=OUTSIDE), None), (_info("link/sub/x"), b"pwned")),
        UnsafePath,
        "layer entry 'link/sub/x' goes through 'link', a symlink or not a directory",
    ),
    Case(
        "symlink-to-etc-then-file",
        (
            (_info("etc", tarfile.SYMTYPE, linkname="/etc"), None),
            (_info("etc/sealer-hostile-probe"), b"pwned"),
        ),
        UnsafePath,
        "layer entry 'etc/sealer-hostile-probe' goes through 'etc', a symlink or not a directory",
    ),
    Case(
        "hardlink-dotdot",
        ((_info("h", tarfile.LNKTYPE, linkname="../outside/passwd"), None),),
        UnsafePath,
        "layer entry 'h': hardlink target '../outside/passwd' has a '..' component",
    ),
    Case(
        "hardlink-absolute",
        ((_info("h", tarfile.LNKTYPE, linkname="/etc/passwd"), None),),
        UnsafePath,
        "layer entry 'h': hardlink target '/etc/passwd' is an absolute path",
    ),
    Case(
        "hardlink-missing",
        ((_info("h", tarfile.LNKTYPE, linkname="not/there"), None),),
        LayerError,
        "layer entry 'h' is a hardlink to 'not/there', which does not exist",
    ),
    Case(
        "hardlink-to-escaping-symlink",
        (
            (_info("s", tarfile.SYMTYPE, linkname=OUTSIDE + "/passwd"), None),
            (_info("h", tarfile.LNKTYPE, linkname="s"), None),
        ),
        UnsafePath,
        "layer entry 'h' is a hardlink to 's', which is not a regular file",
    ),
    Case(
        "hardlink-through-symlink",
        (
            (_info("s", tarfile.SYMTYPE, linkname=OUTSIDE), None),
            (_info("h", tarfile.LNKTYPE, linkname="s/passwd"), None),
        ),
        UnsafePath,
        "layer entry 'h': hardlink target goes through 's', a symlink or not a directory",
    ),
    Case(
        "char-device",
        ((_info("dev/null", tarfile.CHRTYPE), None),),
        UnsafePath,
        "layer entry 'dev/null' is a character device (device nodes are refused)",
    ),
    Case(
        "block-device",
        ((_info("dev/sda", tarfile.BLKTYPE), None),),
        UnsafePath,
        "layer entry 'dev/sda' is a block device (device nodes are refused)",
    ),
    Case(
        "fifo",
        ((_info("pipe", tarfile.FIFOTYPE), None),),
        UnsafePath,
        "layer entry 'pipe' is a fifo (refused)",
    ),
    Case(
        "whiteout-dotdot-name",
        ((_info("d/.wh..."), b""),),
        BadWhiteout,
        "whiteout 'd/.wh...' names '..', not an entry of its directory",
    ),
    Case(
        "whiteout-dot-name",
        ((_info(".wh.."), b""),),
        BadWhiteout,
        "whiteout '.wh..' names '.', not an entry of its directory",
    ),
    Case(
        "whiteout-outside",
        ((_info("../outside/.wh.passwd"), b""),),
        BadWhiteout,
        "whiteout '../outside/.wh.passwd' has a '..' component",
    ),
    Case(
        "whiteout-absolute",
        ((_info("/etc/.wh.passwd"), b""),),
        BadWhiteout,
        "whiteout '/etc/.wh.passwd' is an absolute path",
    ),
    Case(
        "whiteout-through-symlink",
        ((_info("link", tarfile.SYMTYPE, linkname=OUTSIDE), None), (_info("link/.wh.passwd"), b"")),
        BadWhiteout,
        "whiteout 'link/.wh.passwd' goes through 'link', a symlink or not a directory",
    ),
    Case(
        "opaque-through-symlink",
        ((_info("link", tarfile.SYMTYPE, linkname=OUTSIDE), None), (_info("link/.wh..wh..opq"), b"")),
        BadWhiteout,
        "whiteout 'link/.wh..wh..opq' goes through 'link', a symlink or not a directory",
    ),
    Case(
        "truncated-data",
        truncated_data,
        LayerError,
        "layer truncated: layer entry 'big' needs 1000 bytes, stream ended after 100",
    ),
    Case(
        "truncated-header",
        truncated_header,
        LayerError,
        "layer truncated: header needs 512 bytes, stream ended after 100",
    ),
    Case(
        "absurd-pax-size", absurd_pax_size, LayerError, f"layer entry 'huge' has an invalid size {'9' * 20}"
    ),
    Case("negative-size", negative_size, LayerError, "layer entry 'neg' has an invalid size -1"),
    Case(
        "huge-pax-record",
        huge_pax_record,
        LayerError,
        f"layer has a tar metadata record of {MAX_META_SIZE + 512} bytes (limit {MAX_META_SIZE})",
    ),
    Case("bad-checksum", bad_checksum, LayerError, "invalid tar header at offset 0: bad checksum"),
    Case(
        "pax-path-dotdot",
        ((_info("benign", pax={"path": "../pax-escape"}), b"evil"),),
        UnsafePath,
        "layer entry '../pax-escape' has a '..' component",
    ),
    Case(
        "pax-path-nul",
        ((_info("benign", pax={"path": "a\x00b"}), b"evil"),),
        UnsafePath,
        "layer entry 'a\\x00b' contains a NUL byte",
    ),
    Case(
        "pax-linkpath-dotdot",
        (
            (_info("f"), b"x"),
            (_info("h", tarfile.LNKTYPE, linkname="f", pax={"linkpath": "../outside/passwd"}), None),
        ),
        UnsafePath,
        "layer entry 'h': hardlink target '../outside/passwd' has a '..' component",
    ),
    Case(
        "gnu-longname-dotdot",
        gnu_longname_dotdot,
        UnsafePath,
        f"layer entry '../{'x' * 120}' has a '..' component",
    ),
    Case("sparse-file", sparse, LayerError, "layer entry 's' is a sparse file (not supported)"),
]


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            st = full.lstat()
            out[str(full.relative_to(root))] = (st.st_mode, full.read_bytes() if full.is_file() else b"")
    return out


@pytest.mark.parametrize("mode", ["apply", "overlay"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_layer_is_refused(tmp_path: Path, case: Case, mode: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("canary\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    before = _snapshot(outside)
    siblings = sorted(os.listdir(tmp_path))
    etc_before = sorted(os.listdir("/etc"))
    with pytest.raises(LayerError) as info:
        extract_layer(io.BytesIO(case.tar(outside)), dest, whiteouts=mode)  # type: ignore[arg-type]
    assert type(info.value) is case.error
    assert str(info.value) == case.message
    assert "\n" not in str(info.value)
    assert _snapshot(outside) == before
    assert sorted(os.listdir(tmp_path)) == siblings
    assert sorted(os.listdir("/etc")) == etc_before


def test_duplicate_entries_later_wins_without_escaping(tmp_path: Path) -> None:
    """Not refused: tar semantics. A symlink replaced by a dir is a dir, and nothing follows it."""
    dest = tmp_path / "dest"
    dest.mkdir()
    data = _tar(
        (_info("x", tarfile.SYMTYPE, linkname=str(tmp_path)), None),
        (_info("x", tarfile.DIRTYPE), None),
        (_info("x/f"), b"inside"),
        (_info("y"), b"one"),
        (_info("y"), b"two"),
    )
    extract_layer(io.BytesIO(data), dest, whiteouts="apply")
    assert (dest / "x").is_dir() and not (dest / "x").is_symlink()
    assert (dest / "x/f").read_bytes() == b"inside"
    assert (dest / "y").read_bytes() == b"two"
    assert not (tmp_path / "f").exists()


# --- bounds on the amount unpacked (builder.layers.unpack) -----------------------------------

_WRONG_ID = Digest("sha256", "0" * 64)
_SMALL = _tar((_info("f"), b"data"))


def _bomb() -> tuple[bytes, Digest]:
    return zstd_bomb(4 << 20)  # 4 MiB of zeros in ~200 bytes


def _corrupt(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes(b ^ 0xFF for b in blob[middle : middle + 16]) + blob[middle + 16 :]


# id -> (blob, diff_id, options, message regex; {what} is the layer, {dest} the staging dir)
BOUNDED: dict[str, tuple[Callable[[], tuple[bytes, Digest | None]], UnpackOptions, str]] = {
    "ratio": (
        _bomb,
        UnpackOptions(max_ratio=10, ratio_floor_bytes=1 << 20),
        r"{what} expands past 10x its compressed size \((\d+) bytes -> more than 1\.0 MiB\): "
        r"refused as a decompression bomb",
    ),
    "diff-id": (
        lambda: (_SMALL, _WRONG_ID),
        UnpackOptions(),
        rf"{{what}} does not match its diff_id: the uncompressed tar is {Digest.from_bytes(_SMALL)}, "
        rf"the image config says {_WRONG_ID}",
    ),
    "disk": (
        lambda: (_SMALL, None),
        UnpackOptions(min_free_bytes=1 << 62),
        r"{what}: stopped unpacking after 0 bytes, {dest} has [0-9.]+ MiB free \(keeping [0-9.]+ MiB\)",
    ),
    "inodes": (
        lambda: (_SMALL, None),
        UnpackOptions(min_free_inodes=1 << 62),
        r"{what}: stopped unpacking after 0 bytes, {dest} has \d+ free inodes \(keeping \d+\)",
    ),
    "corrupt-zstd": (
        lambda: (_corrupt(_bomb()[0]), None),
        UnpackOptions(),
        r"{what} cannot be decompressed: .+",
    ),
}


@pytest.mark.parametrize("case_id", list(BOUNDED))
def test_bounded_unpack_is_refused_and_leaves_nothing(tmp_path: Path, case_id: str) -> None:
    """A layer that expands too far, fills the disk or is not its diff_id: one line, nothing left."""
    make, options, expected = BOUNDED[case_id]
    blob, diff_id = make()
    what = f"layer {Digest.from_bytes(blob)}"
    dirs = DiffDirs(tmp_path / "overlay2")
    with pytest.raises(LayerError) as info:
        dirs.materialize(
            "l1",
            lambda: io.BytesIO(blob),
            compressed_size=len(blob),
            diff_id=diff_id,
            what=what,
            options=options,
        )
    message = str(info.value)
    assert type(info.value) is LayerError
    assert re.fullmatch(expected.format(what=re.escape(what), dest=r"\S+"), message), message
    assert "\n" not in message
    assert os.listdir(tmp_path / "overlay2") == []  # the staging dir went too


def test_bounded_unpack_passes_a_layer_within_bounds(tmp_path: Path) -> None:
    """The same checks let an honest layer through: right diff_id, below the cap."""
    blob, diff_id = zstd_bomb(1 << 20)
    dest = tmp_path / "dest"
    dest.mkdir()
    stats = unpack_layer(
        open_decompressed(io.BytesIO(blob)),
        dest,
        whiteouts="apply",
        what="layer x",
        compressed_size=len(blob),
        diff_id=diff_id,
    )
    assert stats.bytes == 1 << 20 and (dest / "zeros").stat().st_size == 1 << 20
