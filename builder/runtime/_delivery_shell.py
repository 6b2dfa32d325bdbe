"""The shell that delivery runs on a host: every command text in one place, so that `deliver`
and `plan_commands` (dry-run) read the same list.

A host needs sh, GNU tar, coreutils (tee, sha256sum, mkfifo, mv, rm, ln, mkdir, readlink) and
zstd or gzip for compressed layers (without them the controller decompresses); openssl, where
there is one, hashes faster than sha256sum. Layout under
`root` (default /var/lib/sealer):

    blobs/sha256/<hex>                 layer blobs as received, verified on arrival, shared
                                       (only with keep_blobs: by default no blob is kept)
    blobs/sha256/.partial-<hex>        a blob arriving (never at a digest path; keep_blobs only)
    data/<cluster>/rootfs -> rootfs-<id>   the switch: a symlink, replaced atomically
    data/<cluster>/rootfs-<id>/        the unpacked tree of the wanted list whose digest is <id>
    data/<cluster>/.staging-<id>/      the tree being built (renamed to rootfs-<id> when whole)
    data/<cluster>/.staging-<id>.layers  its progress: the digests unpacked and verified, in order
    data/<cluster>/applied             the wanted list the current rootfs was built from
    data/<cluster>/<target>/...        the same layout for another tree of the cluster (an app's
                                       rootfs on master0: target `apps/<name>`); `Paths.target`

A cluster with a spec.dataRoot D (`Paths.data_root`) has D/<cluster> in place of data/<cluster>
and its blobs in D/.blobs/sha256 (a cluster name never starts with '.'): nothing of it is
under `root`.

Every command that unpacks a layer into the staging tree appends the layer's digest to the
progress file as its last step, after the layer's check on arrival passed; a layer whose check
fails removes the staging tree and its progress file (what it unpacked is not trusted).
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
    target: str = ""  # a directory under data/<cluster> to deliver into instead (apps/<name>)
    data_root: str = ""  # the cluster's spec.dataRoot, in place of root/data ("": none)

    @property
    def clusters(self) -> str:
        """The directory holding the clusters' data dirs."""
        return self.data_root or f"{self.root}/data"

    @property
    def blobs(self) -> str:
        return f"{self.data_root}/.blobs/sha256" if self.data_root else f"{self.root}/blobs/sha256"

    @property
    def data(self) -> str:
        base = f"{self.clusters}/{self.cluster}"
        return f"{base}/{self.target}" if self.target else base

    @property
    def rootfs(self) -> str:
        return f"{self.data}/rootfs"

    def staging(self, rootfs_id: str) -> str:
        return f"{self.data}/.staging-{rootfs_id}"

    def progress(self, rootfs_id: str) -> str:
        return f"{self.data}/.staging-{rootfs_id}.layers"

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
    has_staging: bool = False  # .staging-<id>/ exists
    staged: tuple[str, ...] = ()  # its progress file, one digest a line


def probe(p: Paths, rootfs_id: str) -> str:
    """One cheap command: the applied list, the symlink, whether rootfs-<id> is whole, whether
    .staging-<id> exists and its progress, the blobs present and the decompressors there are."""
    staging, progress = q(p.staging(rootfs_id)), q(p.progress(rootfs_id))
    return (
        f'if [ -f {q(p.data)}/applied ]; then while IFS= read -r l; do echo "applied $l"; done'
        f" < {q(p.data)}/applied; fi; "
        f'echo "link $(readlink {q(p.rootfs)} 2>/dev/null)"; '
        f"if [ -d {q(p.data)}/rootfs-{rootfs_id} ]; then echo tree; fi; "
        f"if [ -d {staging} ] && [ -f {progress} ]; then echo staging; "
        f'while IFS= read -r l; do echo "staged $l"; done < {progress}; fi; '
        f'for f in {q(p.blobs)}/*; do if [ -f "$f" ]; then echo "blob ${{f##*/}}"; fi; done; '
        'for t in zstd gzip; do if command -v $t >/dev/null 2>&1; then echo "tool $t"; fi; done; exit 0'
    )


def parse_probe(stdout: str) -> Probe:
    applied: list[str] = []
    link = ""
    tree = False
    blobs: set[str] = set()
    tools: set[str] = set()
    staging = False
    staged: list[str] = []
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
        elif key == "staging":
            staging = True
        elif key == "staged":
            staged.append(value)
    return Probe(
        tuple(applied),
        link,
        tree,
        frozenset(blobs),
        frozenset(tools),
        staging,
        tuple(staged) if staging else (),
    )


# --- building the staging tree ----------------------------------------------------------------------


def prepare(p: Paths, rootfs_id: str, *, resume: bool = False, keep_blobs: bool = False) -> str:
    """The staging dir and its progress file. Fresh: every leftover of a failed attempt (staging
    dirs, progress files, fifos) goes first. `resume`: .staging-<id> and its progress are kept
    (the controller found the progress a prefix of the wanted list), other leftovers go."""
    dirs = f"{q(p.blobs)} {q(p.data)}" if keep_blobs else q(p.data)
    if resume:
        mine = f".staging-{rootfs_id}"
        return (
            f"set -e; mkdir -p {dirs}; cd -- {q(p.data)}; rm -f .fifo-*; for t in .staging-*; do case $t in "
            f'{q(mine)}|{q(mine + ".layers")}) ;; *) rm -rf -- "$t";; esac; done'
        )
    return (
        f"set -e; mkdir -p {dirs}; "
        f"rm -rf {q(p.data)}/.staging-* {q(p.data)}/.fifo-*; mkdir -m 755 {q(p.staging(rootfs_id))}; "
        f": > {q(p.progress(rootfs_id))}"
    )


def _record(p: Paths, rootfs_id: str, digest: str) -> str:
    """The last step of a layer: its digest appended to the staging progress."""
    return f"echo {q(digest)} >> {q(p.progress(rootfs_id))}"


def _untrusted(p: Paths, rootfs_id: str) -> str:
    """What a layer failing its check leaves behind: the staging tree it was unpacked into."""
    return f"{q(p.staging(rootfs_id))} {q(p.progress(rootfs_id))}"


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
    cleanup = f"rm -rf -- {drop}; " if drop else ""
    return (
        f'read h rest < "$F.sum"; rm -f "$F.sum"; if [ "$h" != {hex_} ]; then {cleanup}'
        f'echo "{what} sha256:{hex_} arrived as sha256:$h" >&2; exit {VERIFY_FAILED}; fi'
    )


def extract_blob(p: Paths, rootfs_id: str, hex_: str, compression: str) -> str:
    """Extract a blob already on the host (verified when it arrived)."""
    tar = f"{_TAR_X} -C {q(p.staging(rootfs_id))}"
    record = _record(p, rootfs_id, f"sha256:{hex_}")
    if compression:
        return f"set -e; {_DECOMPRESS[compression]} {q(p.blob(hex_))} | {tar} -f -; {record}"
    return f"set -e; {tar} -f {q(p.blob(hex_))}; {record}"


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


def upload_extract(p: Paths, rootfs_id: str, hex_: str, compression: str, *, keep_blobs: bool = False) -> str:
    """stdin: a blob, extracted as it arrives and hashed through a fifo in the same pass; its
    digest is recorded in the staging progress only when the sha256 matches. A mismatch removes
    the staging tree and its progress (and the partial blob). With `keep_blobs` the blob is also
    written to .partial-<hex> and renamed to blobs/<hex> once it matched."""
    decompress = f" | {_DECOMPRESS[compression]}" if compression else ""
    tar = f"{_TAR_X} -C {q(p.staging(rootfs_id))} -f -"
    record = _record(p, rootfs_id, f"sha256:{hex_}")
    if not keep_blobs:
        return (
            f'{_hashing_fifo(p, hex_)}tee -- "$F"{decompress} | {tar}; wait $!; rm -f "$F"; '
            + _verify(hex_, "blob", _untrusted(p, rootfs_id))
            + f"; {record}"
        )
    return (
        f"{_hashing_fifo(p, hex_)}P={q(p.partial(hex_))}; "
        f'tee -- "$P" "$F"{decompress} | {tar}; wait $!; rm -f "$F"; '
        + _verify(hex_, "blob", f'"$P" {_untrusted(p, rootfs_id)}')
        + f'; mv -f -- "$P" {q(p.blob(hex_))}; {record}'
    )


def stream_extract(p: Paths, rootfs_id: str, diff_id_hex: str, digest: str) -> str:
    """stdin: a plain tar the controller decompressed (the host has no decompressor for it);
    nothing is kept, the stream is checked against the layer's diff_id as it passes, and the
    layer's (blob) `digest` recorded in the staging progress."""
    return (
        f"{_hashing_fifo(p, diff_id_hex)}"
        f'tee -- "$F" | {_TAR_X} -C {q(p.staging(rootfs_id))} -f -; wait $!; rm -f "$F"; '
        f"{_verify(diff_id_hex, 'layer stream', _untrusted(p, rootfs_id))}; {_record(p, rootfs_id, digest)}"
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
    link over it), record the applied list, then drop older trees (and staging progress files)."""
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
    """data/<cluster> (or its target) goes; then blobs no remaining applied list names (the
    clusters' data/*/applied and their apps' data/*/apps/*/applied), and partials."""
    return (
        f"set -e; rm -rf -- {q(p.data)}; keep=' '; "
        f'for a in {q(p.clusters)}/*/applied {q(p.clusters)}/*/apps/*/applied; do if [ -f "$a" ]; then '
        'while IFS= read -r l; do keep="$keep${l#sha256:} "; done < "$a"; fi; done; '
        f'for f in {q(p.blobs)}/* {q(p.blobs)}/.partial-*; do if [ -e "$f" ]; then n=${{f##*/}}; '
        'case "$keep" in *" $n "*) ;; *) rm -f -- "$f";; esac; fi; done'
    )
