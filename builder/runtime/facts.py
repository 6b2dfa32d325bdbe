"""What the `check` phase learns about each host, frozen: later phases plan from it.

One probe command per host prints its architecture, hostname, the tools delivery and the
scripts need, and the free space where the rootfs goes; `parse_probe` reads that into a
`HostFacts`. A dry-run does not connect: `Facts.assumed` takes the image's platform for every
host and says so.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from builder.errors import HostError
from builder.image.descriptor import Platform

# Tools every host needs: sh runs the scripts, tar + sha256sum unpack and verify layers, and
# one of zstd/gzip decompresses them (without either the controller decompresses: slower).
REQUIRED_TOOLS = ("sh", "tar", "sha256sum")
DECOMPRESSORS = ("zstd", "gzip")
# Tools a runtime plugin may need on some hosts (`RuntimePlugin.host_problems` says which): the
# kubeadm workers' local API load balancer; and the cluster registry's binary on the registry
# hosts when the image has no bin/registry (registry_service.host_problems).
RUNTIME_TOOLS = ("haproxy", "docker-registry")
# Fan-out delivery's fetchers download layer blobs with one of these (fanout.fetch_problems).
FETCH_TOOLS = ("curl", "wget")
PROBED_TOOLS = (*REQUIRED_TOOLS, *DECOMPRESSORS, *RUNTIME_TOOLS, *FETCH_TOOLS)
# Headroom over the image's compressed size: layers unpack to ~2-3x, blobs wait on disk first.
SPACE_FACTOR = 3
SPACE_MIN_BYTES = 16 << 20


def probe_command(root: str) -> str:
    """The probe: `arch=`, `hostname=`, `tool=` lines, then `free_kb=` for the nearest existing
    directory at or above `root`."""
    tools = " ".join(PROBED_TOOLS)
    q = shlex.quote(root)
    return (
        'echo "arch=$(uname -m)"; echo "hostname=$(uname -n)"; '
        f"for t in {tools}; do command -v $t >/dev/null 2>&1 && echo tool=$t; done; "
        f'd={q}; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; '
        'echo "free_kb=$(df -Pk "$d" | awk \'NR==2 {print $4}\')"'
    )


@dataclass(frozen=True, slots=True)
class HostFacts:
    host: str
    platform: Platform
    hostname: str = ""
    tools: frozenset[str] = frozenset(PROBED_TOOLS)
    free_bytes: int | None = None
    assumed: bool = False  # True: not probed (dry-run)

    @property
    def decompressor(self) -> str | None:
        return next((t for t in DECOMPRESSORS if t in self.tools), None)


@dataclass(frozen=True, slots=True)
class Facts:
    """Facts per host address; `assumed` when nothing was probed (dry-run)."""

    hosts: Mapping[str, HostFacts] = field(default_factory=dict)
    assumed: bool = False

    def __getitem__(self, host: str) -> HostFacts:
        return self.hosts[host]

    def __iter__(self) -> Iterator[str]:
        return iter(self.hosts)

    def __contains__(self, host: object) -> bool:
        return host in self.hosts

    @classmethod
    def assume(cls, hosts: list[str] | tuple[str, ...], platform: Platform) -> Facts:
        return cls({h: HostFacts(h, platform, assumed=True) for h in hosts}, assumed=True)

    def merged(self, other: Facts) -> Facts:
        return Facts({**self.hosts, **other.hosts}, assumed=self.assumed and other.assumed)


def parse_probe(host: str, stdout: str) -> HostFacts:
    values: dict[str, str] = {}
    tools: set[str] = set()
    for line in stdout.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        if key == "tool":
            tools.add(value)
        else:
            values[key] = value
    arch = values.get("arch", "")
    if not arch:
        raise HostError(f"{host}: the probe printed no architecture (uname -m)", host=host, step="check")
    try:
        parsed = Platform.parse(f"linux/{arch}")
    except Exception:  # an unknown machine name: kept verbatim, the arch check reports it
        parsed = Platform("linux", arch)
    variant = {"arm64": "v8", "arm": "v7"}.get(parsed.architecture)
    free_kb = values.get("free_kb", "")
    return HostFacts(
        host=host,
        platform=Platform(parsed.os, parsed.architecture, variant),
        hostname=values.get("hostname", ""),
        tools=frozenset(tools),
        free_bytes=int(free_kb) * 1024 if free_kb.isdigit() else None,
    )


def problems(facts: HostFacts, platform: Platform, image_bytes: int) -> list[str]:
    """What stops delivery to this host, one phrase each (empty: good to go)."""
    out: list[str] = []
    if facts.platform.architecture != platform.architecture:
        out.append(f"architecture {facts.platform.architecture} but the image is {platform}")
    missing = [t for t in REQUIRED_TOOLS if t not in facts.tools]
    if missing:
        out.append(f"missing {', '.join(missing)}")
    needed = max(image_bytes * SPACE_FACTOR, SPACE_MIN_BYTES)
    if facts.free_bytes is not None and facts.free_bytes < needed:
        out.append(f"{facts.free_bytes >> 20} MiB free where the rootfs goes, needs about {needed >> 20} MiB")
    return out
