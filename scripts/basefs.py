"""`make basefs RUNTIME=k3s BIN_DIR=DIR [VERSION=v1.29.4] [TAG=NAME]`: a runtime's base ClusterImage from the
upstream files the user supplies (nothing is downloaded at build time).

    python scripts/basefs.py RUNTIME BIN_DIR [--version V] [--tag NAME] [--root STORE] [--no-cache]

basefs/<runtime>/ is the build context (the context root is the rootfs root) without the
upstream binaries and image tarballs; its `upstream.yaml` says which files of BIN_DIR go where:

    runtime: k3s
    version: v1.29.4                       # the Kubernetes version when --version is not given
    tag: sealer.io/k3s:{version}           # the image name when --tag is not given
    files:
      - source: k3s                        # a glob matched in BIN_DIR: exactly one file
        dest: bin/k3s                      # in the context; a trailing "/" means "into this dir"
        mode: "0755"                       # optional
        optional: false                    # optional; true: copied when present
        about: the k3s binary from the release page

The version reaches the Kubefile as the build argument KUBE_VERSION (`ARG KUBE_VERSION` then
`KUBEVERSION ${KUBE_VERSION}`), so the image's Metadata names the version of the binaries it
carries: build a newer image with `--version v1.30.0` and that release's files. The context is
copied to a temporary directory beside the files and built there, so basefs/ itself never
holds upstream files. A missing or ambiguous file fails with one line naming
upstream.yaml, the entry and what to put in BIN_DIR; nothing is built then.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import BuildError, SealerError
from builder.store.layout import Store

BASEFS = Path(__file__).resolve().parents[1] / "basefs"
UPSTREAM_FILE = "upstream.yaml"
VERSION_ARG = "KUBE_VERSION"
_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")


class BasefsError(BuildError):
    reference = "basefs-error"


@dataclass(frozen=True, slots=True)
class UpstreamFile:
    source: str
    dest: str
    mode: int | None
    optional: bool
    about: str


@dataclass(frozen=True, slots=True)
class Upstream:
    runtime: str
    version: str
    tag: str  # may contain {version}
    files: tuple[UpstreamFile, ...]

    def image_name(self, version: str | None = None) -> str:
        return self.tag.replace("{version}", version or self.version)


def runtimes(basefs: Path = BASEFS) -> list[str]:
    return sorted(p.parent.name for p in basefs.glob(f"*/{UPSTREAM_FILE}"))


def read_upstream(runtime: str, basefs: Path = BASEFS) -> Upstream:
    path = basefs / runtime / UPSTREAM_FILE
    if not path.is_file():
        raise BasefsError(
            f"no basefs for runtime {runtime!r} ({path} is missing)",
            hint=f"known runtimes: {', '.join(runtimes(basefs))}",
        )
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, Mapping) or not isinstance(data.get("files"), list):
        raise BasefsError(f"{path}: expected a mapping with runtime, tag and a list of files")
    files = []
    for i, entry in enumerate(data["files"]):
        if not isinstance(entry, Mapping) or not entry.get("source") or not entry.get("dest"):
            raise BasefsError(f"{path}: files[{i}] needs source and dest")
        mode = entry.get("mode")
        files.append(
            UpstreamFile(
                source=str(entry["source"]),
                dest=str(entry["dest"]),
                mode=int(str(mode), 8) if mode is not None else None,
                optional=bool(entry.get("optional", False)),
                about=str(entry.get("about", "")),
            )
        )
    if not _VERSION.match(str(data.get("version", ""))):
        raise BasefsError(f"{path}: version must look like v1.29.4")
    return Upstream(str(data.get("runtime", runtime)), str(data["version"]), str(data["tag"]), tuple(files))


def assemble(runtime: str, bin_dir: Path, context: Path, basefs: Path = BASEFS) -> Upstream:
    """Copy basefs/<runtime> into `context` (which must not exist) and place BIN_DIR's files."""
    upstream = read_upstream(runtime, basefs)
    where = basefs / runtime / UPSTREAM_FILE
    if not bin_dir.is_dir():
        raise BasefsError(f"BIN_DIR {bin_dir} is not a directory", hint=f"see {where} for what it holds")
    placed: list[tuple[Path, UpstreamFile]] = []
    for f in upstream.files:
        matches = sorted(p for p in bin_dir.glob(f.source) if p.is_file())
        if not matches and f.optional:
            continue
        if len(matches) != 1:
            found = "nothing" if not matches else ", ".join(p.name for p in matches)
            raise BasefsError(
                f"{where}: {f.source} -> {f.dest}: {found} in {bin_dir} matches (need exactly one)",
                hint=f"put {f.about or f.source} in {bin_dir}",
            )
        placed.append((matches[0], f))
    shutil.copytree(basefs / runtime, context, symlinks=True)
    (context / UPSTREAM_FILE).unlink()
    for source, f in placed:
        dest = context / f.dest
        if f.dest.endswith("/"):
            dest = dest / source.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        if f.mode is not None:
            dest.chmod(f.mode)
    return upstream


def build_basefs(
    runtime: str,
    bin_dir: Path,
    store: Store,
    tag: str | None = None,
    *,
    version: str | None = None,
    no_cache: bool = False,
    basefs: Path = BASEFS,
) -> str:
    """Build the basefs image of `runtime` from `bin_dir` into `store`; returns its name.
    `version` (default: upstream.yaml's) is the Kubernetes version of the files in `bin_dir`."""
    if version is not None and not _VERSION.match(version):
        raise BasefsError(f"version {version!r}: expected vMAJOR.MINOR.PATCH, e.g. v1.29.4")
    with tempfile.TemporaryDirectory(prefix=f"basefs-{runtime}-", dir=store.tmp_dir) as tmp:
        context = Path(tmp) / "context"
        upstream = assemble(runtime, bin_dir, context, basefs)
        name = tag or upstream.image_name(version)
        options = BuildOptions(
            context=context,
            tags=(name,),
            build_args={VERSION_ARG: version or upstream.version},
            no_cache=no_cache,
            bundle_images=False,
        )
        build_image(store, options)
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime", help=f"one of: {', '.join(runtimes())}")
    parser.add_argument("bin_dir", type=Path, help="the upstream files (see basefs/RUNTIME/README.md)")
    parser.add_argument("--version", help="Kubernetes version of the files (default: upstream.yaml's)")
    parser.add_argument("--tag", help="image name (default: upstream.yaml's tag)")
    parser.add_argument("--root", help="store directory (default: as sealer's --root)")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    try:
        store = Store.open(args.root)
        name = build_basefs(
            args.runtime, args.bin_dir, store, args.tag, version=args.version, no_cache=args.no_cache
        )
    except SealerError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 1
    print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
