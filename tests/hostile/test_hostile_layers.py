"""The hostile-layer corpus: one case per hostile input, fed to both readers of the layer policy.

Every case (a stack of layers, lowest first) is extracted layer by layer into a flat rootfs
("apply"; one-layer cases also into a fresh overlay diff dir, as the store does) and checked by
the runtime's stack check (what runs before a host's `tar -x`), next to an `outside` dir holding
a canary `passwd`. Both must refuse with the same error class and one-line message, or both
accept; then the host's side is played for real (the plan's removals, then the hosts' `tar -x`)
and must build the same rootfs as the extraction. Nothing outside changes in any case. Symlinks
point at `outside` rather than /etc so that a regression cannot clobber the machine.
"""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from builder.errors import BadWhiteout, LayerError, UnsafePath
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.mediatypes import OCI_LAYER_TAR
from builder.layers.compression import open_decompressed
from builder.layers.overlay import DiffDirs
from builder.layers.tarreader import MAX_META_SIZE, extract_layer
from builder.layers.unpack import UnpackOptions, unpack_layer
from builder.runtime._delivery_shell import _TAR_X, removals
from builder.runtime._stackcheck import StackCheck, check_stack
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


Layer = tuple[Member, ...] | Callable[[], bytes]


def _raw_member(
    name: bytes, kind: bytes = tarfile.REGTYPE, data: bytes = b"", linkname: bytes = b"", mode: int = 0o644
) -> bytes:
    """A ustar member with hand-made name bytes (not UTF-8, say) or mode field, and a correct checksum."""
    block = bytearray(tarfile.TarInfo("x").tobuf(tarfile.USTAR_FORMAT))
    block[0:100] = name.ljust(100, b"\x00")
    block[100:108] = b"%07o\x00" % mode
    block[157:257] = linkname.ljust(100, b"\x00")
    block[124:136] = b"%011o\x00" % len(data)
    block[156:157] = kind
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block) + data + bytes(-len(data) % 512)


def gnu_sparse_type() -> bytes:
    return _raw_header("s", kind=tarfile.GNUTYPE_SPARSE) + bytes(1024)


def volume_label() -> bytes:
    return _raw_header("v", kind=b"V") + bytes(1024)


def huge_base256_size() -> bytes:
    return _raw_header("big", size_field=b"\x80" + bytes(2) + (1 << 64).to_bytes(9, "big")) + bytes(1024)


def dir_with_data() -> bytes:
    """A dir header claiming 512 bytes: Go and Python read them as the next header, GNU tar may not."""
    return _raw_header("d", size=512, kind=tarfile.DIRTYPE) + _raw_header("../smuggled") + bytes(1024)


def after_zero_block() -> bytes:
    """A lone zero block, then more entries: `tar -i` (or a reader ignoring zero blocks) sees them."""
    ok = _tar((_info("ok"), b"fine"))
    return ok[:1024] + bytes(512) + _raw_member(b"../hidden", data=b"evil") + bytes(1024)


def global_pax_path() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"path": "../g"}) as tf:
        tf.addfile(_info("f"), io.BytesIO(b""))
    return out.getvalue()


def non_utf8_names() -> bytes:
    return (
        _raw_member(b"caf\xe9", data=b"latin-1 name")
        + _raw_member(b"d\xff", tarfile.DIRTYPE)
        + _raw_member(b"d\xff/l", tarfile.SYMTYPE, linkname=b"../caf\xe9")
        + bytes(1024)
    )


def non_utf8_dotdot() -> bytes:
    return _raw_member(b"\xfe/../../escape", data=b"evil") + bytes(1024)


def padded_with_zeros() -> bytes:
    return _tar((_info("f"), b"x")) + bytes(20480)


def _mode(info: tarfile.TarInfo, mode: int) -> tarfile.TarInfo:
    info.mode = mode
    return info


def _dir(name: str, mode: int = 0o755) -> Member:
    return (_mode(_info(name, tarfile.DIRTYPE), mode), None)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    return (_info(name, kind, linkname=target), None)


def _file(name: str, data: bytes = b"x", **pax: str) -> Member:
    return (_info(name, pax=pax or None), data)


DEEP = "d/" * 1500  # 1500 levels, 3000 bytes: within PATH_MAX, past Python's recursion limit


@dataclass(frozen=True)
class Case:
    """Layers, lowest first, and the outcome: refused (`error`, `message`) or handled (`tree`).

    `message` is the refusal as both paths word it, `{where}` standing for "layer" (extraction)
    or "layer N (sha256:...):" (the stack check, which may add where a symlink came from).
    `tree` lists paths that must exist after all layers ("!path": must not), checked on the
    extracted rootfs and on the one a host's `tar -x` builds from the stack check's plan.
    """

    id: str
    layers: tuple[Layer, ...]
    error: type[LayerError] | None = None
    message: str = ""
    tree: tuple[str, ...] = ()

    def tars(self, outside: Path) -> list[bytes]:
        out = []
        for layer in self.layers:
            if callable(layer):
                out.append(layer())
                continue
            members = []
            for info, payload in layer:
                copy = _info(
                    info.name,
                    info.type,
                    linkname=info.linkname.replace(OUTSIDE, str(outside)),
                    pax=info.pax_headers,
                )
                copy.mode = info.mode
                members.append((copy, payload))
            out.append(_tar(*members))
        return out


def R(id: str, error: type[LayerError], message: str, *layers: Layer) -> Case:
    return Case(id, layers, error, message)


def H(id: str, tree: tuple[str, ...], *layers: Layer) -> Case:
    return Case(id, layers, tree=tree)


CASES = [
    # --- paths -----------------------------------------------------------------------------------
    R("dotdot", UnsafePath, "{where} entry '../escape' has a '..' component", (_file("../escape"),)),
    R("dotdot-middle", UnsafePath, "{where} entry 'a/../../escape' has a '..' component", (_file("a/../../escape"),)),
    R("absolute", UnsafePath, "{where} entry '/abs-escape' is an absolute path", (_file("/abs-escape"),)),
    R("pax-path-dotdot", UnsafePath, "{where} entry '../pax-escape' has a '..' component",
      (_file("benign", path="../pax-escape"),)),
    R("pax-path-nul", UnsafePath, "{where} entry 'a\\x00b' contains a NUL byte", (_file("benign", path="a\x00b"),)),
    R("gnu-longname-dotdot", UnsafePath, f"{{where}} entry '../{'x' * 120}' has a '..' component",
      gnu_longname_dotdot),
    R("pax-component-too-long", UnsafePath, f"{{where}} entry 'd/{'n' * 256}' has a component longer than 255 bytes",
      (_file("d/" + "n" * 256),)),
    R("pax-path-too-long", UnsafePath, f"{{where}} entry '{'a/' * 2100}f' is longer than 4096 bytes",
      (_file("a/" * 2100 + "f"),)),
    R("non-utf8-dotdot", UnsafePath, "{where} entry '\\udcfe/../../escape' has a '..' component", non_utf8_dotdot),
    R("root-as-symlink", UnsafePath, "{where} entry '.' makes the root a non-directory", (_link(".", OUTSIDE),)),
    R("below-whiteout-name", BadWhiteout, "{where} entry '.wh.d/file' lies below a whiteout name",
      (_file(".wh.d/file"),)),
    # --- types -----------------------------------------------------------------------------------
    R("char-device", UnsafePath, "{where} entry 'dev/null' is a character device (device nodes are refused)",
      ((_info("dev/null", tarfile.CHRTYPE), None),)),
    R("char-device-0-0", UnsafePath, "{where} entry 'x' is a character device (device nodes are refused)",
      ((_info("x", tarfile.CHRTYPE, pax={"SCHILY.devmajor": "0", "SCHILY.devminor": "0"}), None),)),
    R("block-device", UnsafePath, "{where} entry 'dev/sda' is a block device (device nodes are refused)",
      ((_info("dev/sda", tarfile.BLKTYPE), None),)),
    R("fifo", UnsafePath, "{where} entry 'pipe' is a fifo (refused)", ((_info("pipe", tarfile.FIFOTYPE), None),)),
    R("sparse-file", LayerError, "layer entry 's' is a sparse file (not supported)", sparse),
    R("gnu-sparse-type", LayerError, "layer entry 's' is a sparse file (not supported)", gnu_sparse_type),
    R("volume-label", LayerError, "{where} entry 'v' has unsupported tar type b'V'", volume_label),
    R("dir-with-data", LayerError,
      "{where} entry 'd' is a header-only type with 512 bytes of data (refused: tar tools disagree)", dir_with_data),
    R("symlink-empty-target", UnsafePath, "{where} entry 's' is a symlink to '', an empty or NUL-holding target",
      ((_info("s", tarfile.SYMTYPE), None),)),
    R("symlink-nul-target", UnsafePath, "{where} entry 's' is a symlink to 'a\\x00b', an empty or NUL-holding target",
      ((_info("s", tarfile.SYMTYPE, linkname="a", pax={"linkpath": "a\x00b"}), None),)),
    # --- duplicates within a layer -----------------------------------------------------------------
    R("dup-symlink-then-dir", UnsafePath, "{where} entry 'x' names a path this layer already made as another type",
      (_link("x", OUTSIDE), _dir("x"), _file("x/passwd"))),
    R("dup-implicit-dir-then-file", UnsafePath,
      "{where} entry 'd' names a path this layer already made as another type", (_file("d/x"), _file("d"))),
    R("dup-file-then-symlink", UnsafePath, "{where} entry 'f' names a path this layer already made as another type",
      (_file("f"), _link("f", OUTSIDE))),
    # --- parents: symlinks and non-directories, in this layer or below -----------------------------
    R("write-through-symlink", UnsafePath, "{where} entry 'link/passwd' goes through 'link', a symlink",
      (_link("link", OUTSIDE), _file("link/passwd"))),
    R("write-through-relative-symlink", UnsafePath, "{where} entry 'link/passwd' goes through 'link', a symlink",
      (_link("link", "../outside"), _file("link/passwd"))),
    R("dir-under-symlink", UnsafePath, "{where} entry 'link/sub/x' goes through 'link', a symlink",
      (_link("link", OUTSIDE), _file("link/sub/x"))),
    R("symlink-to-etc-then-file", UnsafePath,
      "{where} entry 'etc/sealer-hostile-probe' goes through 'etc', a symlink",
      (_link("etc", "/etc"), _file("etc/sealer-hostile-probe"))),
    R("symlink-in-lower-layer", UnsafePath, "{where} entry 'lib/passwd' goes through 'lib', a symlink",
      (_link("lib", OUTSIDE),), (_file("lib/passwd"),)),
    R("symlink-chain-across-layers", UnsafePath, "{where} entry 'a/passwd' goes through 'a', a symlink",
      (_link("a", "b"),), (_link("b", OUTSIDE),), (_file("a/passwd"),)),
    R("symlink-deep-in-lower-dir", UnsafePath, "{where} entry 'd/l/passwd' goes through 'd/l', a symlink",
      (_dir("d"), _link("d/l", "../../outside")), (_dir("d"), _file("d/l/passwd"))),
    R("file-under-lower-file", UnsafePath, "{where} entry 'f/x' goes through 'f', which is not a directory",
      (_file("f"),), (_file("f/x"),)),
    # --- hardlinks -----------------------------------------------------------------------------------
    R("hardlink-dotdot", UnsafePath, "{where} entry 'h': hardlink target '../outside/passwd' has a '..' component",
      (_link("h", "../outside/passwd", tarfile.LNKTYPE),)),
    R("hardlink-absolute", UnsafePath, "{where} entry 'h': hardlink target '/etc/passwd' is an absolute path",
      (_link("h", "/etc/passwd", tarfile.LNKTYPE),)),
    R("pax-linkpath-dotdot", UnsafePath,
      "{where} entry 'h': hardlink target '../outside/passwd' has a '..' component",
      (_file("f"), (_info("h", tarfile.LNKTYPE, linkname="f", pax={"linkpath": "../outside/passwd"}), None))),
    R("hardlink-missing", UnsafePath, "{where} entry 'h' is a hardlink to 'not/there', which is missing or not a regular file",
      (_link("h", "not/there", tarfile.LNKTYPE),)),
    R("hardlink-to-self-missing", UnsafePath, "{where} entry 'h' is a hardlink to 'h', which is missing or not a regular file",
      (_link("h", "h", tarfile.LNKTYPE),)),
    R("hardlink-to-dir", UnsafePath, "{where} entry 'h' is a hardlink to 'd', which is missing or not a regular file",
      (_dir("d"), _link("h", "d", tarfile.LNKTYPE))),
    R("hardlink-to-escaping-symlink", UnsafePath,
      "{where} entry 'h' is a hardlink to 's', which is missing or not a regular file",
      (_link("s", OUTSIDE + "/passwd"), _link("h", "s", tarfile.LNKTYPE))),
    R("hardlink-through-symlink", UnsafePath, "{where} entry 'h': hardlink target goes through 's', a symlink",
      (_link("s", OUTSIDE), _link("h", "s/passwd", tarfile.LNKTYPE))),
    R("hardlink-then-whiteout-of-target", UnsafePath,
      "{where} entry 'h' is a hardlink to 'f', which is missing or not a regular file",
      (_file("f"),), (_link("h", "f", tarfile.LNKTYPE), _file(".wh.f", b""))),
    R("whiteout-then-hardlink-to-target", UnsafePath,
      "{where} entry 'h' is a hardlink to 'f', which is missing or not a regular file",
      (_file("f"),), (_file(".wh.f", b""), _link("h", "f", tarfile.LNKTYPE))),
    R("hardlink-then-opaque-parent", UnsafePath,
      "{where} entry 'h' is a hardlink to 'd/f', which is missing or not a regular file",
      (_dir("d"), _file("d/f")), (_link("h", "d/f", tarfile.LNKTYPE), _file("d/.wh..wh..opq", b""))),
    R("hardlink-then-target-retyped", UnsafePath,
      "{where} entry 'h' is a hardlink to 'f', which is missing or not a regular file",
      (_file("f"),), (_link("h", "f", tarfile.LNKTYPE), _link("f", "elsewhere"))),
    R("hardlink-gnu-longlink-dotdot", UnsafePath,
      f"{{where}} entry 'h': hardlink target '../{'y' * 120}' has a '..' component",
      lambda: _tar((_info("h", tarfile.LNKTYPE, linkname="../" + "y" * 120), None), fmt=tarfile.GNU_FORMAT)),
    # --- whiteouts -----------------------------------------------------------------------------------
    R("whiteout-dotdot-name", BadWhiteout, "{where} whiteout 'd/.wh...' names '..', not an entry of its directory",
      (_file("d/.wh...", b""),)),
    R("whiteout-dot-name", BadWhiteout, "{where} whiteout '.wh..' names '.', not an entry of its directory",
      (_file(".wh..", b""),)),
    R("whiteout-outside", BadWhiteout, "{where} whiteout '../outside/.wh.passwd' has a '..' component",
      (_file("../outside/.wh.passwd", b""),)),
    R("whiteout-absolute", BadWhiteout, "{where} whiteout '/etc/.wh.passwd' is an absolute path",
      (_file("/etc/.wh.passwd", b""),)),
    R("whiteout-below-whiteout", BadWhiteout, "{where} whiteout '.wh.d/.wh.x' lies below a whiteout name",
      (_file(".wh.d/.wh.x", b""),)),
    R("whiteout-through-symlink", BadWhiteout, "{where} whiteout of 'link/passwd' goes through 'link', a symlink",
      (_link("link", OUTSIDE), _file("link/.wh.passwd", b""))),
    R("opaque-through-symlink", BadWhiteout, "{where} opaque marker of 'link' goes through 'link', a symlink",
      (_link("link", OUTSIDE), _file("link/.wh..wh..opq", b""))),
    R("opaque-over-lower-symlink", BadWhiteout, "{where} opaque marker of 'lib' goes through 'lib', a symlink",
      (_link("lib", OUTSIDE),), (_file("lib/.wh..wh..opq", b""),)),
    R("opaque-over-lower-symlink-made-dir", BadWhiteout, "{where} opaque marker of 'lib' goes through 'lib', a symlink",
      (_link("lib", OUTSIDE),), (_dir("lib"), _file("lib/.wh..wh..opq", b""))),
    R("whiteout-below-lower-symlink-made-dir", BadWhiteout,
      "{where} whiteout of 'lib/passwd' goes through 'lib', a symlink",
      (_link("lib", OUTSIDE),), (_dir("lib"), _file("lib/.wh.passwd", b""))),
    R("whiteout-below-lower-file", BadWhiteout, "{where} whiteout of 'f/x' goes through 'f', which is not a directory",
      (_file("f"),), (_file("f/.wh.x", b""),)),
    # --- sizes, numbers, the stream ------------------------------------------------------------------
    R("truncated-data", LayerError, "layer truncated: {where} entry 'big' needs 924 more bytes", truncated_data),
    R("truncated-header", LayerError, "layer truncated: header needs 512 bytes, stream ended after 100",
      truncated_header),
    R("absurd-pax-size", LayerError, f"layer entry 'huge' has an invalid size {'9' * 20}", absurd_pax_size),
    R("size-over-1tib", LayerError, f"layer entry 'huge' has an invalid size {(1 << 40) + 1}",
      (_file("huge", size=str((1 << 40) + 1)),)),
    R("base256-size", LayerError, f"layer entry 'big' has an invalid size {1 << 64}", huge_base256_size),
    R("negative-size", LayerError, "layer entry 'neg' has an invalid size -1", negative_size),
    R("huge-pax-record", LayerError,
      f"layer has a tar metadata record of {MAX_META_SIZE + 512} bytes (limit {MAX_META_SIZE})", huge_pax_record),
    R("bad-checksum", LayerError, "invalid tar header at offset 0: bad checksum", bad_checksum),
    R("pax-mtime-inf", LayerError, "layer entry 'f' has a malformed PAX number", (_file("f", mtime="inf"),)),
    R("pax-uid-too-big", LayerError, "{where} entry 'f' has owner 4294967295:0 (limit 4294967294)",
      (_file("f", uid="4294967295"),)),
    R("global-pax-path", LayerError,
      "layer has a global PAX header setting 'path' at offset 0 (refused: tar tools disagree on it)", global_pax_path),
    R("entries-after-zero-block", LayerError,
      "{where} has data after its end-of-archive block at offset 1024", after_zero_block),
    # --- handled safely ------------------------------------------------------------------------------
    H("hardlink-kept-after-later-whiteout", ("h", "!f"), (_file("f", b"data"), _link("h", "f", tarfile.LNKTYPE)),
      (_file(".wh.f", b""),)),
    H("opaque-keeps-own-files-in-implicit-dirs", ("d/sub/new", "!d/sub/old", "!d/gone"),
      (_dir("d"), _dir("d/sub"), _file("d/sub/old"), _file("d/gone")),
      (_file("d/sub/new"), _file("d/.wh..wh..opq", b""))),
    H("whiteout-spares-own-entry", ("f",), (_file("f", b"old"),), (_file("f", b"new"), _file(".wh.f", b""))),
    H("lower-symlink-replaced-by-dir", ("lib/passwd",), (_link("lib", OUTSIDE),), (_dir("lib"), _file("lib/passwd"))),
    H("lower-symlink-whiteout-then-dir", ("lib/passwd",), (_link("lib", OUTSIDE),),
      (_file(".wh.lib", b""), _file("lib/passwd"))),
    H("dup-same-type-later-wins", ("y",), (_file("y", b"one"), _file("y", b"two"), _dir("d"), _dir("d", 0o700))),
    H("setuid-setgid-sticky", ("su", "sg", "tmp"),
      ((_mode(_info("su"), 0o4755), b"x"), (_mode(_info("sg"), 0o2755), b"x"), _dir("tmp", 0o1777))),
    H("device-bits-in-mode", ("f",), lambda: _raw_member(b"f", data=b"regular", mode=0o20644) + bytes(1024)),
    H("long-names", ("l" * 150 + "/f", "p" * 200), lambda: _tar((_info("l" * 150 + "/f"), b"gnu"), fmt=tarfile.GNU_FORMAT),
      (_file("p" * 200, b"pax"),)),
    H("deep-path", (DEEP + "f",), (_file(DEEP + "f"),)),
    H("whiteout-of-deep-tree", ("!d",), (_file(DEEP + "f"),), (_file(".wh.d", b""),)),
    H("opaque-over-deep-tree-keeps-own", (DEEP + "g", "!" + DEEP + "f"), (_file(DEEP + "f"),),
      (_file(DEEP + "g"), _file("d/.wh..wh..opq", b""))),
    H("non-utf8-names", ("caf\udce9", "d\udcff/l"), non_utf8_names),
    H("zero-padding-after-end", ("f",), padded_with_zeros),
    H("aufs-metadata-skipped", ("f", "!.wh..wh.plnk"), (_file(".wh..wh.plnk/12.34", b"aufs"), _file("f"))),
]  # fmt: skip


def _snapshot(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Every path below `root`: type, mode, owner, link count, and content or link target.
    Walked without recursion (os.walk recurses: the deep-path case is 1500 levels)."""
    out: dict[bytes, tuple[object, ...]] = {}
    todo = [b""]
    base = os.fsencode(root)
    while todo:
        rel = todo.pop()
        for name in os.listdir(os.path.join(base, rel) if rel else base):
            path = os.path.join(rel, name) if rel else name
            full = os.path.join(base, path)
            st = os.lstat(full)
            body: bytes = b""
            if stat.S_ISLNK(st.st_mode):
                body = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    body = f.read()
            else:
                todo.append(path)
            nlink = 0 if stat.S_ISDIR(st.st_mode) else st.st_nlink
            out[path] = (st.st_mode, st.st_uid, st.st_gid, nlink, body)
    return out


def _outside_world(tmp_path: Path) -> tuple[object, ...]:
    return _snapshot(tmp_path / "outside"), sorted(os.listdir(tmp_path)), sorted(os.listdir("/etc"))


def _stack(tars: list[bytes]) -> StackCheck:
    def layer(tar: bytes) -> tuple[Descriptor, Digest, Callable[[], BinaryIO]]:
        digest = Digest.from_bytes(tar)
        return Descriptor(OCI_LAYER_TAR, digest, len(tar)), digest, lambda: io.BytesIO(tar)

    return check_stack(layer(t) for t in tars)


def _host_rootfs(root: Path, tars: list[bytes], plan: StackCheck) -> None:
    """What a host does with the stack check's plan: the removals, then plain `tar -x`."""
    for tar, layer in zip(tars, plan.layers, strict=True):
        for command in removals(str(root), layer.whiteouts, layer.opaques):
            subprocess.run(["sh", "-c", command], check=True, timeout=30)
        subprocess.run(["sh", "-c", f"{_TAR_X} -C {root} -f -"], input=tar, check=True, timeout=30)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_layer_policy_both_paths_agree(tmp_path: Path, case: Case) -> None:
    """Extraction (apply, and overlay for one layer) and the runtime's stack check agree: both refuse
    with the same class and one-line message, or both accept and build the same rootfs."""
    try:
        _both_paths(tmp_path, case)
    finally:  # pytest's cleanup of old tmp dirs recurses: a 1500-level tree must not reach it
        subprocess.run(
            ["rm", "-rf", "--", *(str(tmp_path / n) for n in ("apply", "overlay", "host"))], check=True
        )


def _both_paths(tmp_path: Path, case: Case) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("canary\n")
    for name in ("apply", "overlay", "host"):
        (tmp_path / name).mkdir()
    before = _outside_world(tmp_path)
    tars = case.tars(outside)
    stack_where = f"layer {len(tars)} ({Digest.from_bytes(tars[-1])}):"
    errors: dict[str, LayerError] = {}
    try:
        for tar in tars:
            extract_layer(io.BytesIO(tar), tmp_path / "apply", whiteouts="apply")
    except LayerError as err:
        errors["apply"] = err
    if len(tars) == 1:
        try:
            extract_layer(io.BytesIO(tars[0]), tmp_path / "overlay", whiteouts="overlay")
        except LayerError as err:
            errors["overlay"] = err
    try:
        plan = _stack(tars)
    except LayerError as err:
        errors["stack"] = err
    assert _outside_world(tmp_path) == before
    if case.error is None:
        assert errors == {}
        _host_rootfs(tmp_path / "host", tars, plan)
        assert _snapshot(tmp_path / "apply") == _snapshot(tmp_path / "host")
        for path in case.tree:
            assert os.path.lexists(tmp_path / "apply" / path.lstrip("!")) != path.startswith("!"), path
        assert _outside_world(tmp_path) == before
        return
    assert sorted(errors) == sorted(["apply", "stack", *(["overlay"] if len(tars) == 1 else [])])
    for path, err in errors.items():
        message = str(err)
        assert type(err) is case.error, (path, message)
        assert "\n" not in message
        if path == "stack":
            expected = re.escape(case.message.format(where=stack_where))
            assert re.fullmatch(expected + r"( made by layer \d+ \(sha256:[0-9a-f]{64}\))?", message), message
        else:
            assert message == case.message.format(where="layer"), path


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


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
