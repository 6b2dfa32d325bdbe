"""The shell that delivery runs on a host: every command text in one place, so that `deliver`
and `plan_commands` (dry-run) read the same list.

A host needs sh, GNU tar, coreutils (tee, sha256sum, mkfifo, mv, rm, ln, mkdir, readlink) and
zstd or gzip for compressed layers (without them the controller decompresses); openssl, where
there is one, hashes faster than sha256sum. Layout under
`root` (default /var/lib/sealer):

    blobs/sha256/<hex>                 layer blobs as received, verified on arrival, shared
    blobs/sha256/.partial-<hex>        a blob arriving (never at a digest path)
    data/<cluster>/rootfs -> rootfs-<id>   the switch: a symlink, replaced atomically
    data/<cluster>/rootfs-<id>/        the unpacked tree of the wanted list whose digest is <id>
    data/<cluster>/.staging-<id>/      the tree being built (renamed to rootfs-<id> when whole)
    data/<cluster>/applied             the wanted list the current rootfs was built from
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

VERIFY_FAILED = 97  # exit status of a blob whose sha256 on the host is not its digest
MAX_COMMAND_CHARS = 96 << 10  # removal lists longer than this are split over several commands
# GNU tar's exclude patterns are unanchored and `*` matches `/` (`--wildcards-match-slash` is the
# default for exclusions), so `.wh.*` matches any member whose component starts `.wh.`; the
# `*/.wh.*` form is kept for tars that anchor. The stack check refuses members *below* a `.wh.`
# component, so nothing the image meant to ship is excluded.
_TAR_X = "tar -x --numeric-owner --exclude='.wh.*' --exclude='*/.wh.*'"
_DECOMPRESS = {"zstd": "zstd -dcq", "gzip": "gzip -dc"}


def q(text: str) -> str:
    return shlex.quote(text)


@dataclass(frozen=True, slots=True)
class Paths:
    root: str
    cluster: str

    @property
    def blobs(self) -> str:
        return f"{self.root}/blobs/sha256"

    @property
    def data(self) -> str:
        return f"{self.root}/data/{self.cluster}"

    @property
    def rootfs(self) -> str:
        return f"{self.data}/rootfs"

    def staging(self, rootfs_id: str) -> str:
        return f"{self.data}/.staging-{rootfs_id}"

    def blob(self, hex_: str) -> str:
        return f"{self.blobs}/{hex_}"

    def partial(self, hex_: str) -> str:
        return f"{self.blobs}/.partial-{hex_}"


# --- probe ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    applied: tuple[str, ...]
    link: str
    has_tree: bool
    blobs: frozenset[str]
    tools: frozenset[str] = field(default_factory=frozenset)


def probe(p: Paths, rootfs_id: str) -> str:
    """One cheap command: the applied list, the symlink, whether rootfs-<id> is whole, the
    blobs present and the decompressors there are."""
    return (
        f'if [ -f {q(p.data)}/applied ]; then while IFS= read -r l; do echo "applied $l"; done'
        f" < {q(p.data)}/applied; fi; "
        f'echo "link $(readlink {q(p.rootfs)} 2>/dev/null)"; '
        f"if [ -d {q(p.data)}/rootfs-{rootfs_id} ]; then echo tree; fi; "
        f'for f in {q(p.blobs)}/*; do if [ -f "$f" ]; then echo "blob ${{f##*/}}"; fi; done; '
        'for t in zstd gzip; do if command -v $t >/dev/null 2>&1; then echo "tool $t"; fi; done; exit 0'
    )


def parse_probe(stdout: str) -> Probe:
    applied: list[str] = []
    link = ""
    tree = False
    blobs: set[str] = set()
    tools: set[str] = set()
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "applied":
            applied.append(value)
        elif key == "link":
            link = value
        elif key == "tree":
            tree = True
        elif key == "blob":
            blobs.add(value)
        elif key == "tool":
            tools.add(value)
    return Probe(tuple(applied), link, tree, frozenset(blobs), frozenset(tools))


# --- building the staging tree ----------------------------------------------------------------------


def prepare(p: Paths, rootfs_id: str) -> str:
    """A fresh staging dir; leftovers of a failed attempt (staging dirs, fifos) go first."""
    return (
        f"set -e; mkdir -p {q(p.blobs)} {q(p.data)}; "
        f"rm -rf {q(p.data)}/.staging-* {q(p.data)}/.fifo-*; mkdir -m 755 {q(p.staging(rootfs_id))}"
    )


def removals(staging: str, whiteouts: Sequence[str], opaques: Sequence[str]) -> list[str]:
    """`rm -rf` of a layer's whiteout targets and of its opaque dirs' contents, before the layer
    is extracted (so its own entries survive, as the OCI layer spec says). The stack check made
    sure no path goes through a symlink; rm never follows one it removes."""
    words = [f"{q(staging)}/{q(path)}" for path in whiteouts]
    for d in opaques:
        base = f"{q(staging)}/{q(d)}" if d else q(staging)
        words += [f"{base}/*", f"{base}/.[!.]*", f"{base}/..?*"]
    out: list[str] = []
    batch: list[str] = []
    size = 0
    for word in words:
        if batch and size + len(word) > MAX_COMMAND_CHARS:
            out.append("rm -rf -- " + " ".join(batch))
            batch, size = [], 0
        batch.append(word)
        size += len(word) + 1
    if batch:
        out.append("rm -rf -- " + " ".join(batch))
    return out


def _verify(hex_: str, what: str, drop: str = "") -> str:
    """Compare the sha256 in "$F.sum" with `hex_`; on a mismatch remove `drop` and exit 97."""
    cleanup = f"rm -f {drop}; " if drop else ""
    return (
        f'read h rest < "$F.sum"; rm -f "$F.sum"; if [ "$h" != {hex_} ]; then {cleanup}'
        f'echo "{what} sha256:{hex_} arrived as sha256:$h" >&2; exit {VERIFY_FAILED}; fi'
    )


def extract_blob(p: Paths, staging: str, hex_: str, compression: str) -> str:
    """Extract a blob already on the host."""
    tar = f"{_TAR_X} -C {q(staging)}"
    if compression:
        return f"set -e; {_DECOMPRESS[compression]} {q(p.blob(hex_))} | {tar} -f -"
    return f"set -e; {tar} -f {q(p.blob(hex_))}"


# openssl's sha256 uses the CPU's SHA extensions (3.4x coreutils' sha256sum here, which matters
# with the 2 cores shared by all hosts); sha256sum is the fallback every host has. Both print the
# hex digest first.
_SHA256 = "if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi"


def _hashing_fifo(p: Paths, name: str) -> str:
    """$F: a fifo whose bytes are hashed into $F.sum, in parallel with the extraction."""
    return (
        f'set -e; F={q(p.data)}/.fifo-{name}; rm -f "$F" "$F.sum"; mkfifo "$F"; '
        f'{{ {_SHA256}; }} < "$F" > "$F.sum" & '
    )


def upload_extract(p: Paths, staging: str, hex_: str, compression: str) -> str:
    """stdin: a blob. Kept as .partial-<hex>, extracted in the same pass and hashed through a
    fifo while it arrives; only a blob whose sha256 is its digest is renamed to blobs/<hex>.
    A mismatch deletes it and the whole staging tree is dropped by the next attempt."""
    decompress = f" | {_DECOMPRESS[compression]}" if compression else ""
    return (
        f"{_hashing_fifo(p, hex_)}P={q(p.partial(hex_))}; "
        f'tee -- "$P" "$F"{decompress} | {_TAR_X} -C {q(staging)} -f -; wait $!; rm -f "$F"; '
        + _verify(hex_, "blob", '"$P"')
        + f'; mv -f -- "$P" {q(p.blob(hex_))}'
    )


def stream_extract(p: Paths, staging: str, diff_id_hex: str) -> str:
    """stdin: a plain tar the controller decompressed (the host has no decompressor for it);
    nothing is kept, the stream is checked against the layer's diff_id as it passes."""
    return (
        f"{_hashing_fifo(p, diff_id_hex)}"
        f'tee -- "$F" | {_TAR_X} -C {q(staging)} -f -; wait $!; rm -f "$F"; '
        f"{_verify(diff_id_hex, 'layer stream')}"
    )


def verify_partial(p: Paths, hex_: str) -> str:
    """Check a `.partial-<hex>` already on the host and rename it (the on-arrival check alone)."""
    return (
        f'set -e; P={q(p.partial(hex_))}; F="$P"; sha256sum < "$P" > "$F.sum"; '
        + _verify(hex_, "blob", '"$P"')
        + f'; mv -f -- "$P" {q(p.blob(hex_))}'
    )


def switch(p: Paths, rootfs_id: str, wanted: Sequence[str], *, built: bool) -> str:
    """Rename the staging tree into place, replace the symlink atomically (`mv -T` of a new
    link over it), record the applied list, then drop older trees."""
    tree = f"rootfs-{rootfs_id}"
    lines = " ".join(q(w) for w in wanted)
    move = f"mv -T .staging-{rootfs_id} {tree}; " if built else ""
    return (
        f"set -e; cd -- {q(p.data)}; "
        'if [ -e rootfs ] && [ ! -L rootfs ]; then echo "$PWD/rootfs is not a symlink" >&2; exit 1; fi; '
        f"{move}rm -rf rootfs.tmp; ln -s {tree} rootfs.tmp; mv -T rootfs.tmp rootfs; "
        f"printf '%s\\n' {lines} > applied.tmp; mv -f applied.tmp applied; "
        f'for t in rootfs-* .staging-*; do if [ -e "$t" ] && [ "$t" != {tree} ]; then rm -rf -- "$t"; fi; done'
    )


def remove(p: Paths) -> str:
    """data/<cluster> goes; then blobs no remaining data/*/applied list names (and partials)."""
    return (
        f"set -e; rm -rf -- {q(p.data)}; keep=' '; "
        f'for a in {q(p.root)}/data/*/applied; do if [ -f "$a" ]; then '
        'while IFS= read -r l; do keep="$keep${l#sha256:} "; done < "$a"; fi; done; '
        f'for f in {q(p.blobs)}/* {q(p.blobs)}/.partial-*; do if [ -e "$f" ]; then n=${{f##*/}}; '
        'case "$keep" in *" $n "*) ;; *) rm -f -- "$f";; esac; fi; done'
    )
