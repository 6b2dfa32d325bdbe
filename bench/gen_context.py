"""Generate the benchmark's ClusterImage-like build context, seeded and reproducible.

About 670 MB: 12 binaries of 12 to 130 MB (compressible about as Go binaries are, ~3x with
zstd -3; the 130 MB one nearly incompressible, like k3s), ~3000 small text files of 1 to 20 KB
in nested directories (manifests, charts, configs), a few symlinks and scripts, and a Kubefile.
The same seed gives the same bytes on any machine.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

VERSION = "2"
BINARIES_MB = (12, 18, 24, 30, 36, 42, 48, 54, 60, 66, 120)  # + one 130 MB incompressible
BIG_MB = 130
SMALL_FILES = 3000
_WORDS = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "spec",
    "template",
    "containers",
    "image",
    "ports",
    "labels",
    "selector",
    "replicas",
    "resources",
    "limits",
    "requests",
    "cpu",
    "memory",
    "volumeMounts",
    "env",
    "value",
    "configMap",
    "secret",
    "service",
    "deployment",
    "daemonset",
    "kube-system",
    "calico",
    "coredns",
    "etcd",
    "kubelet",
    "kubeadm",
    "cluster",
    "node",
    "master",
]

KUBEFILE = """FROM scratch
LABEL cluster.alpha.sealer.io/cluster-runtime-type=kubernetes
KUBEVERSION v1.29.3
COPY bin bin/
COPY statics statics/
COPY manifests manifests/
COPY charts charts/
COPY etc etc/
COPY scripts scripts/
"""

# The same build for buildah (bench/run_build.py): KUBEVERSION has no Containerfile form.
CONTAINERFILE = "".join(
    line for line in KUBEFILE.splitlines(keepends=True) if not line.startswith("KUBEVERSION")
)


def _binary_like(rng: random.Random, size: int) -> bytes:
    """Bytes with LZ-style repetition: random runs mixed with copies of earlier spans."""
    out = bytearray(rng.randbytes(4096))
    while len(out) < size:
        if rng.random() < 0.45:
            out += rng.randbytes(rng.randint(64, 2048))
        else:
            length = rng.randint(32, 4096)
            start = rng.randint(max(0, len(out) - (1 << 20)), len(out) - 1)
            chunk = out[start : start + length]
            out += chunk
    return bytes(out[:size])


def _text(rng: random.Random, size: int, name: str) -> bytes:
    """A valid YAML ConfigMap of about `size` bytes (no container images: nothing to bundle)."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", f"  name: {name}", "data:"]
    total = sum(len(line) + 1 for line in lines)
    n = 0
    while total < size:
        value = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
        line = f"  key{n}: {value}"
        lines.append(line)
        total += len(line) + 1
        n += 1
    return ("\n".join(lines) + "\n").encode()


def generate(root: Path, seed: int = 20261127, scale: float = 1.0) -> Path:
    """Write the context under `root` (re-used when the same version, seed and scale are there).

    `scale` shrinks the binaries and the number of small files (`make bench-quick`: 0.1)."""
    marker = root / ".generated"
    stamp = f"{VERSION}:{seed}" + (f":{scale}" if scale != 1.0 else "")
    if marker.exists() and marker.read_text() == stamp:
        return root
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    (root / "bin").mkdir(parents=True)
    names = [
        "kubeadm",
        "kubectl",
        "kubelet",
        "crictl",
        "containerd",
        "ctr",
        "runc",
        "helm",
        "etcdctl",
        "nerdctl",
        "conntrack",
    ]
    for name, mb in zip(names, BINARIES_MB, strict=True):
        (root / "bin" / name).write_bytes(_binary_like(rng, int((mb << 20) * scale)))
        os.chmod(root / "bin" / name, 0o755)
    (root / "bin" / "k3s").write_bytes(rng.randbytes(int((BIG_MB << 20) * scale)))
    os.chmod(root / "bin" / "k3s", 0o755)
    tops = ["manifests", "charts", "etc", "statics"]
    for i in range(int(SMALL_FILES * scale)):
        top = tops[i % len(tops)]
        depth = rng.randint(1, 3)
        parts = [f"d{rng.randint(0, 12)}" for _ in range(depth)]
        d = root.joinpath(top, *parts)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.yaml").write_bytes(_text(rng, rng.randint(1024, 20 * 1024), f"f{i}"))
    (root / "scripts").mkdir()
    for name in ("init.sh", "clean.sh", "init-registry.sh", "clean-registry.sh"):
        path = root / "scripts" / name
        path.write_text(f"#!/bin/sh\nset -e\necho {name}\n")
        os.chmod(path, 0o755)
    os.symlink("kubectl", root / "bin" / "kc")
    os.symlink("../bin/kubeadm", root / "scripts" / "kubeadm")
    os.symlink("config.yaml", root / "etc" / "current.yaml")
    (root / "etc" / "config.yaml").write_text("mode: bench\n")
    (root / "Kubefile").write_text(KUBEFILE)
    marker.write_text(stamp)
    return root
