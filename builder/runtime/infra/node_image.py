"""The node image `make node-image` builds: a small filesystem for docker hosts, made offline
from the programs this machine's Debian packages installed (dash, coreutils, tar, zstd, gzip,
grep, sed, mawk, findutils, util-linux's setsid, procps' ps), each with the shared libraries
`ldd` names, imported into the Docker engine through the Engine API (`POST /images/create`
with `fromSrc`, what `docker import` does). No package mirror, no registry: what the machine
has is what the image gets.

What a node image needs (docs/containers.md): `sh`; GNU `tar` (delivery's `--numeric-owner`
and `--exclude`), `sha256sum`, `mkfifo`, `tee`, `readlink` and the other coreutils delivery and
the check phase use (`_delivery_shell`, `facts.probe_command`); `zstd` or `gzip`; `sleep`
(the container's long-running command); and whatever the image's scripts and runtime call.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path

from builder.errors import ClusterError

DEFAULT_NODE_IMAGE = "sealer-node:latest"

# The commands delivery, the check probe, the lifecycle scripts of examples/ and `sh -c` need.
NODE_COMMANDS = (
    "sh", "dash", "tar", "zstd", "gzip", "sha256sum", "mkfifo", "tee", "mv", "rm", "ln", "mkdir",
    "readlink", "cat", "cp", "chmod", "chown", "test", "[", "uname", "timeout", "printf", "echo",
    "grep", "sed", "awk", "mawk", "df", "dirname", "basename", "setsid", "sleep", "ls", "touch",
    "env", "id", "head", "tail", "wc", "sort", "find", "xargs", "kill", "ps", "hostname", "true",
    "false", "stat", "mktemp", "date", "cut", "tr", "sync", "rmdir", "seq", "realpath", "md5sum",
)  # fmt: skip
_ETC = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": b"root:x:0:\n",
    "etc/hostname": b"node\n",
}


def _libraries(binary: Path) -> set[Path]:
    """The shared objects `ldd` resolves for `binary` (none for a static one)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    libs: set[Path] = set()
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else (parts[0] if parts else "")
        if path.startswith("/"):
            libs.add(Path(path))
    return libs


def _add_file(tar: tarfile.TarFile, source: Path, name: str, added: set[str]) -> None:
    if name in added:
        return
    added.add(name)
    info = tarfile.TarInfo(name)
    info.mode = 0o755
    data = source.read_bytes()
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    tar.addfile(info)


def node_tree_tar(commands: Iterable[str] = NODE_COMMANDS) -> bytes:
    """The node image's filesystem as a tar: every command found on this machine in usr/bin
    (bin and sbin link there, as merged-/usr Debian), with its libraries at their paths."""
    buf = io.BytesIO()
    added: set[str] = set()
    missing = []
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("usr", "usr/bin", "usr/lib", "usr/lib64", "etc", "root", "tmp", "var", "var/lib", "proc",
                  "sys", "dev", "run"):  # fmt: skip
            _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        for link, target in (
            ("bin", "usr/bin"),
            ("sbin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ):
            _add_link(tar, link, target)
        libs: set[Path] = set()
        for command in commands:
            found = shutil.which(command)
            if found is None:
                missing.append(command)
                continue
            real = Path(os.path.realpath(found))
            _add_file(tar, real, f"usr/bin/{command}", added)
            libs |= _libraries(real)
        if "sh" in missing or "tar" in missing:
            raise ClusterError(f"this machine has no {' or '.join(c for c in ('sh', 'tar') if c in missing)}")
        dirs: set[str] = set()
        for lib in sorted(libs):
            name = str(lib).lstrip("/")
            # merged /usr: /lib/x and /lib64/x are usr/lib/x and usr/lib64/x in the image
            if name.startswith(("lib/", "lib64/")):
                name = "usr/" + name
            parent = str(Path(name).parent)
            for i in range(2, len(Path(parent).parts) + 1):
                d = "/".join(Path(parent).parts[:i])
                if d not in dirs and d not in ("usr/lib", "usr/lib64"):
                    dirs.add(d)
                    _add_dir(tar, d)
            _add_file(tar, Path(os.path.realpath(lib)), name, added)
        for name, data in _ETC.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_node_image(
    client: object, tag: str = DEFAULT_NODE_IMAGE, commands: Iterable[str] = NODE_COMMANDS
) -> str:
    """Import the node tree of `commands` into the engine `client` (a docker.DockerClient) as
    `tag`; returns the image id."""
    import docker

    assert isinstance(client, docker.DockerClient)
    repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    client.api.import_image_from_data(
        node_tree_tar(commands), repository=repository, tag=version, changes=['CMD ["sleep", "infinity"]']
    )
    return str(client.images.get(tag).id)


def main() -> int:
    """`make node-image`: build it in the engine at DOCKER_HOST (or the default socket)."""
    import sys

    from builder.errors import SealerError
    from builder.registry.docker_daemon import connect_engine

    tag = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_NODE_IMAGE
    try:
        client = connect_engine()
        image_id = build_node_image(client, tag)
    except SealerError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 1
    print(f"{tag} {image_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
