"""The controller-side check of an image's layer stack before any host's `tar -x` sees it.

Hosts unpack layers with plain tar, which follows symlinks already on disk in an entry's parent
path (GNU tar 1.34 replaces a symlink a dir entry lands on, but `--keep-directory-symlink`,
older tars and busybox keep it and apply the dir's mode through it), and knows nothing of OCI
whiteouts. So before anything travels, every layer is streamed here (decompressed, no file
written) and the merged tree is tracked across layers with whiteouts applied. Entries come
checked by `builder.layers.safety.EntryReader`, the policy the store's extraction applies too;
this module enforces the policy's stateful rules on the tree, with its messages (UnsafePath,
BadWhiteout; naming layer digest and entry), because a host's tar must never see them: any entry
or whiteout whose parent path goes through a symlink made by this or a lower layer (`lib -> /etc`
in layer 1, `lib/passwd` in layer 3), a path named twice in one layer with different types (tar
would apply a dir entry's mode through an earlier symlink of that layer), hardlinks to what is
missing, not a file, or removed before the layer's `tar -x`.

What the host needs to honour whiteouts with plain shell is recorded per layer (`LayerPlan`):
`whiteouts`, the paths to `rm -rf` before extracting the layer (whiteout targets, and lower
paths whose type this layer changes, so tar never replaces one type by another), and `opaques`,
the directories to empty first. The diff_id of each layer is recomputed from the stream; the
blob digest is checked by the store's verifying reader. `*.tmpl` files below etc/, charts/,
manifests/ and statics/ are collected as they stand after all layers (item 4 of issue 4).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from builder.errors import BadWhiteout, LayerError, UnsafePath
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.layers.safety import Entry, EntryReader, bad_hardlink, retyped, through_non_dir, through_symlink

TEMPLATE_SUFFIX = ".tmpl"
TEMPLATE_DIRS = ("etc", "charts", "manifests", "statics")
MAX_TEMPLATE_BYTES = 1 << 20  # templates are held in memory and rendered per host
_CHUNK = 4 << 20

_DIR, _FILE, _LINK = "d", "f", "l"
_NODE_KINDS = {"file": _FILE, "hardlink": _FILE, "dir": _DIR, "symlink": _LINK}


@dataclass(frozen=True, slots=True)
class LayerPlan:
    """One checked layer and what the host removes before extracting it (rootfs-relative)."""

    descriptor: Descriptor
    diff_id: Digest
    whiteouts: tuple[str, ...] = ()  # rm -rf before extraction: whiteout targets, type changes
    opaques: tuple[str, ...] = ()  # directories emptied (of lower content) before extraction


@dataclass(frozen=True, slots=True)
class StackCheck:
    layers: tuple[LayerPlan, ...]
    templates: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # the KEPT_FILES the image has


# Small rootfs files the controller reads when it plans a run (the runtime plugins' config
# defaults, Metadata, init-registry.sh, the audit policy; and the hooks, `is_plugin_path`): kept
# by the one pass that checks the stack, so planning never unpacks a layer to find them.
# Rootfs files whose presence is all the plans read (a binary: too large to keep), kept as b""
# when the image has them as a regular file or hardlink: bin/haproxy, the kubeadm workers' load
# balancer when the image ships its own (the check phase then needs none on the host), and
# bin/registry, distribution's registry for the cluster registry (else the host's docker-registry),
# and bin/cri-dockerd, which an image must ship to run on docker (container_runtime.py).
# The scripts of sealer's own image contract are kept the same way (plugins/sealer_image.py:
# they tell such an image and its container runtime), its etc/kubeadm.yml with its text.
SEALER_IMAGE_SCRIPTS = frozenset(
    {
        "scripts/init-kube.sh",
        "scripts/containerd.sh",
        "scripts/docker.sh",
        "scripts/uninstall-containerd.sh",
        "scripts/uninstall-docker.sh",
    }
)
PRESENT_FILES = frozenset({"bin/haproxy", "bin/registry", "bin/cri-dockerd"}) | SEALER_IMAGE_SCRIPTS
KEPT_FILES = PRESENT_FILES | {
    "Metadata",
    "etc/kubeadm.yaml",
    "etc/kubeadm.yml",
    "etc/k0s.yaml",
    "scripts/init-registry.sh",
    "statics/audit-policy.yml",
}


def _kept(path: str) -> bool:
    return path in KEPT_FILES or is_template_path(path) or is_plugin_path(path)


def is_plugin_path(path: str) -> bool:
    """An image's hook file sealer reads: `plugins/*.yaml` (or .yml), directly in plugins/."""
    top, sep, name = path.partition("/")
    return top == "plugins" and bool(sep) and "/" not in name and name.endswith((".yaml", ".yml"))


def is_template_path(path: str) -> bool:
    """A rootfs path sealer renders: `*.tmpl` below etc/, charts/, manifests/ or statics/."""
    top, sep, _ = path.partition("/")
    return bool(sep) and top in TEMPLATE_DIRS and path.endswith(TEMPLATE_SUFFIX) and path != top + "/.tmpl"


class _Node:
    __slots__ = ("children", "kind", "layer")

    def __init__(self, kind: str, layer: int) -> None:
        self.kind = kind
        self.layer = layer  # index of the layer that made this node
        self.children: dict[str, _Node] | None = {} if kind == _DIR else None


class _Hashing(io.RawIOBase):
    """Counts and hashes what is read through it (the diff_id of the decompressed stream)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha.update(data)
        return n


class _Checker:
    def __init__(self) -> None:
        self.root = _Node(_DIR, -1)
        self.kept: dict[str, bytes] = {}
        self.digests: list[str] = []
        self.buf = memoryview(bytearray(_CHUNK))

    # --- the merged tree ------------------------------------------------------------------------

    def _where(self, layer: int) -> str:
        return f"layer {layer + 1} ({self.digests[layer]})" if layer >= 0 else "the root"

    def _parent(
        self,
        parts: tuple[str, ...],
        label: str,
        error: type[LayerError],
        *,
        create: int | None,
        strict: bool = False,
    ) -> _Node | None:
        """The dir node holding `parts[-1]`, never through a symlink; missing dirs are made when
        `create` is a layer index (tar makes them, and that layer then holds them), else None is
        returned, as for a non-directory unless `strict`."""
        node = self.root
        for i, name in enumerate(parts[:-1]):
            assert node.children is not None
            child = node.children.get(name)
            if child is None:
                if create is None:
                    return None
                child = node.children[name] = _Node(_DIR, create)
            elif child.kind == _LINK:
                path = "/".join(parts[: i + 1])
                raise through_symlink(label, path, error, f" made by {self._where(child.layer)}")
            elif child.kind != _DIR:
                if create is None and not strict:
                    return None
                raise through_non_dir(label, "/".join(parts[: i + 1]), error)
            elif create is not None:
                child.layer = create
            node = child
        return node

    def _forget_kept(self, prefix: str) -> None:
        for path in [p for p in self.kept if p == prefix or p.startswith(prefix + "/")]:
            del self.kept[path]

    # --- one layer ------------------------------------------------------------------------------

    def layer(self, index: int, desc: Descriptor, diff_id: Digest, stream: BinaryIO) -> LayerPlan:
        self.digests.append(str(desc.digest))
        where = f"layer {index + 1} ({desc.digest})"
        hashing = _Hashing(stream)
        reader = EntryReader(io.BufferedReader(hashing, _CHUNK), self.buf, f"{where}:")
        entries: list[Entry] = []
        removals: list[Entry] = []
        contents: dict[int, bytes] = {}
        while (e := reader.next()) is not None:
            if e.kind in ("whiteout", "opaque", "skip") or not e.parts:  # skip: AUFS bookkeeping
                reader.skip_data(e)
                if e.kind in ("whiteout", "opaque"):
                    removals.append(e)
                continue
            rel = "/".join(e.parts)
            if e.kind == "file" and rel in PRESENT_FILES:
                reader.skip_data(e)
                contents[len(entries)] = b""
            elif e.kind == "file" and _kept(rel):
                if e.size > MAX_TEMPLATE_BYTES:
                    what = "a template" if is_template_path(rel) else "a config file sealer reads"
                    raise LayerError(f"{e.label} is {what} of {e.size} bytes (limit {MAX_TEMPLATE_BYTES})")
                contents[len(entries)] = reader.read_data(e)
            else:
                reader.skip_data(e)
            entries.append(e)
        reader.finish()
        got = Digest("sha256", hashing.sha.hexdigest())
        if got != diff_id:
            raise LayerError(f"{where} decompresses to {got}, the image config says diff_id {diff_id}")
        whiteouts = self._remove([e for e in removals if e.kind == "whiteout"])
        opaques = self._empty([e for e in removals if e.kind == "opaque"])
        whiteouts += self._add(index, entries, contents)
        for e in removals:  # against this layer's tree too: a host's rm must not follow a symlink
            self._parent(
                (*e.parts, "") if e.kind == "opaque" else e.parts,
                e.label,
                BadWhiteout,
                create=None,
                strict=True,
            )
        return LayerPlan(desc, diff_id, tuple(whiteouts), tuple(opaques))

    def _remove(self, removed: list[Entry]) -> list[str]:
        """Whiteouts, against the lower layers' tree (OCI: they never hide their own layer)."""
        out: list[str] = []
        for e in removed:
            rel = "/".join(e.parts)
            parent = self._parent(e.parts, e.label, BadWhiteout, create=None)
            if parent is None or parent.children is None or e.parts[-1] not in parent.children:
                continue  # nothing below to delete
            del parent.children[e.parts[-1]]
            self._forget_kept(rel)
            out.append(rel)
        return out

    def _empty(self, opaque: list[Entry]) -> list[str]:
        out: list[str] = []
        for e in opaque:
            rel = "/".join(e.parts)
            if not e.parts:
                node: _Node | None = self.root
            else:
                parent = self._parent(e.parts, e.label, BadWhiteout, create=None)
                node = None if parent is None or parent.children is None else parent.children.get(e.parts[-1])
                if node is not None and node.kind == _LINK:
                    raise through_symlink(e.label, rel, BadWhiteout, f" made by {self._where(node.layer)}")
            if node is None or node.children is None or not node.children:
                continue
            node.children.clear()
            if rel:
                self._forget_kept(rel)
            else:
                self.kept.clear()
            out.append(rel)
        return out

    def _add(self, index: int, entries: list[Entry], contents: dict[int, bytes]) -> list[str]:
        changed: list[str] = []
        lower_links: dict[str, str] = {}  # hardlink targets of lower layers -> the link's label
        for i, e in enumerate(entries):
            rel = "/".join(e.parts)
            kind = _NODE_KINDS[e.kind]
            if e.kind == "hardlink":
                linked = "/".join(e.link)
                target = self._parent(
                    e.link, f"{e.label}: hardlink target", UnsafePath, create=None, strict=True
                )
                node = None if target is None or target.children is None else target.children.get(e.link[-1])
                if node is None or node.kind != _FILE:
                    raise bad_hardlink(e.label, linked)
                if node.layer != index:
                    lower_links[linked] = e.label
            parent = self._parent(e.parts, e.label, UnsafePath, create=index)
            assert parent is not None and parent.children is not None
            old = parent.children.get(e.parts[-1])
            if old is not None and old.kind != kind:
                if old.layer == index:
                    raise retyped(e.label)
                changed.append(rel)  # the host removes the lower one first: tar never replaces types
                old = None
            if old is None or old.kind != _DIR:
                parent.children[e.parts[-1]] = _Node(kind, index)
            elif old.kind == _DIR:
                old.layer = index
            if old is None or old.kind != _DIR:
                # a directory entry over a directory merges (overlay semantics): the templates
                # below it stay; anything else replaces what was at this path
                self._forget_kept(rel)
            if i in contents:
                self.kept[rel] = contents[i]
            elif e.kind == "hardlink" and rel in PRESENT_FILES:
                self.kept[rel] = b""
            elif e.kind == "hardlink" and _kept(rel):
                linked = "/".join(e.link)
                if linked not in self.kept:
                    if is_template_path(rel):
                        raise LayerError(f"{e.label} is a template hardlinked to {linked!r}, not a template")
                    raise LayerError(
                        f"{e.label} is hardlinked to {linked!r}: sealer reads {rel} before delivery "
                        "and needs it as a regular file"
                    )
                self.kept[rel] = self.kept[linked]
        for path in changed if lower_links else ():  # removed before `tar -x` makes the link
            for linked, label in lower_links.items():
                if linked == path or linked.startswith(path + "/"):
                    raise bad_hardlink(label, linked)
        return changed

    def finish(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """(templates, the other kept files), each sorted by path."""
        templates = {p: v for p, v in sorted(self.kept.items()) if is_template_path(p)}
        for path in templates:
            parts = tuple(path[: -len(TEMPLATE_SUFFIX)].split("/"))
            parent = self._parent(parts, path, UnsafePath, create=None)
            node = None if parent is None or parent.children is None else parent.children.get(parts[-1])
            if node is not None and node.kind == _DIR:
                raise LayerError(f"template {path!r} would render onto {'/'.join(parts)!r}, a directory")
        return templates, {p: v for p, v in sorted(self.kept.items()) if not is_template_path(p)}


def check_stack(layers: Iterable[tuple[Descriptor, Digest, Callable[[], BinaryIO]]]) -> StackCheck:
    """Check a layer stack, lowest first: (descriptor, diff_id, opener of the decompressed
    stream). Raises LayerError (UnsafePath, BadWhiteout) naming the layer and the entry."""
    checker = _Checker()
    plans: list[LayerPlan] = []
    for index, (desc, diff_id, opener) in enumerate(layers):
        with opener() as stream:
            plans.append(checker.layer(index, desc, diff_id, stream))
    return StackCheck(tuple(plans), *checker.finish())
