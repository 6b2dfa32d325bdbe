"""`make bench` (registry part): push and pull of the benchmark ClusterImage against peers,
timed in the same run on the same machine, against one local docker-registry (plain HTTP on
127.0.0.1, storage on local disk, wiped before every push).

Contenders (each a child process; wall, CPU and peak RSS from wait4 rusage; best of N):
  (a) sealer push (builder.registry) of bench/cluster:v1
  (b) skopeo copy oci:STORE/oci:NAME docker://REGISTRY/... (same image, same registry)
  (c) curl: POST an upload session, then one monolithic PUT of the largest blob, twice:
      `--data-binary @file` (curl reads the file into memory first) and `-T file` (streamed)
  (d) sealer pull into a fresh store + unpack of every layer into a rootfs dir
      (tarreader.extract_layer, whiteouts applied, over open_decompressed)
  (e) umoci unpack of a gzip copy of the image (skopeo copy --dest-compress-format gzip);
      only the unpack is timed
Results go to bench/results/registry.json and .md. `python -m bench.run_registry` runs it all;
`python -m bench.run_registry push|pull ...` are the child modes it times.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench._measure import Timing, measure
from bench.gen_context import generate
from bench.run_build import RESULTS, SEALER, WORK

IMAGE = "bench/cluster:v1"
FULL_IMAGE = "docker.io/bench/cluster:v1"
RUNS = 3


class LocalRegistry:
    """docker-registry on 127.0.0.1:PORT with storage under `workdir`, restartable empty."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.storage = workdir / "storage"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            f"http:\n  addr: {self.host}\n  secret: bench\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self.proc = subprocess.Popen(
            ["/usr/bin/docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.URLError):
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).close()
                return
            time.sleep(0.05)
        raise SystemExit(f"docker-registry did not start on {self.host}")

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def fresh(self) -> None:
        """Stop, wipe the storage, start again: every push starts from an empty registry."""
        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)
        self.start()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- child modes (what is timed) --------------------------------------------------------------


def child_push(store_root: str, name: str, dest: str) -> None:
    from builder.registry.client import RegistryClient
    from builder.store.layout import Store

    store = Store.open(store_root, create=False)
    print(RegistryClient().push(store, name, dest).digest)


def child_pull(store_root: str, ref: str, rootfs: str) -> None:
    from builder.layers.compression import open_decompressed
    from builder.layers.tarreader import extract_layer
    from builder.registry.client import RegistryClient
    from builder.store.layout import Store

    # A new store and rootfs under the given dirs for every run (see _fresh_dir).
    store = Store.open(tempfile.mkdtemp(dir=store_root))
    rootfs = tempfile.mkdtemp(dir=rootfs)
    desc = RegistryClient().pull(store, ref)
    for _, manifest in store.manifests_for(desc):
        for layer in manifest.layers:
            with store.blobs.open(layer.digest, expected_size=layer.size) as raw:
                extract_layer(open_decompressed(raw), rootfs, whiteouts="apply")


# -- the benchmark -----------------------------------------------------------------------------


def _ensure_image(store: Path) -> None:
    env = {**os.environ, "SEALER_ROOT": str(store)}
    index = store / "oci" / "index.json"
    if index.exists() and FULL_IMAGE in index.read_text():
        return
    ctx = generate(WORK / "context")
    subprocess.run([*SEALER, "build", "-q", "-t", IMAGE, str(ctx)], env=env, check=True)


def _largest_blob(store: Path) -> tuple[Path, str, int]:
    from builder.store.layout import Store

    s = Store.open(store, create=False)
    desc = s.resolve(IMAGE)
    manifest = s.manifests_for(desc)[0][1]
    layer = max(manifest.layers, key=lambda d: d.size)
    return s.blobs.path(layer.digest), str(layer.digest), layer.size


def main() -> None:
    store = WORK / "store"
    _ensure_image(store)
    reg = LocalRegistry(WORK / "registry", _free_port())
    big_path, big_digest, big_size = _largest_blob(store)
    image_bytes = sum(p.stat().st_size for p in (store / "oci" / "blobs").rglob("*") if p.is_file())
    pull_root, rootfs = WORK / "pull-store", WORK / "pull-rootfs"
    gz_layout, bundle = WORK / "gzip-layout", WORK / "umoci-bundle"
    me = [sys.executable, "-m", "bench.run_registry"]
    # Warm the page cache so every contender reads the blobs from memory.
    subprocess.run(f"cat {store}/oci/blobs/sha256/* > /dev/null", shell=True, check=True)
    try:
        reg.fresh()
        dest = f"{reg.host}/bench/cluster:v1"
        curl_put = (
            f"loc=$(curl -sf -i -X POST http://{reg.host}/v2/bench/curl/blobs/uploads/ "
            "| tr -d '\\r' | sed -n 's/^[Ll]ocation: //p'); "
            "curl -sf -X PUT -H 'Content-Type: application/octet-stream' "
            f'{{body}} "$loc&digest={big_digest}"'
        )
        timings = [
            measure("curl PUT largest blob (--data-binary @file)", curl_put.format(body=f"--data-binary @{big_path}"),
                    runs=RUNS, before=reg.fresh),
            measure("curl PUT largest blob (-T file, streamed)", curl_put.format(body=f"-T {big_path}"),
                    runs=RUNS, before=reg.fresh),
            measure("sealer push", [*me, "push", str(store), IMAGE, dest], runs=RUNS, before=reg.fresh),
            measure(
                "skopeo copy oci: -> docker://",
                ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{store}/oci:{FULL_IMAGE}",
                 f"docker://{reg.host}/bench/skopeo:v1"],
                runs=RUNS, before=reg.fresh,
            ),
        ]  # fmt: skip
        reg.fresh()
        subprocess.run([*me, "push", str(store), IMAGE, dest], check=True, stdout=subprocess.DEVNULL)

        # Every run unpacks into a new directory and nothing is deleted until the end: ext4
        # avoids re-using inodes freed in the last ~30 s, and creating files right after a big
        # delete costs 2-3x more (perf: ext4_create -> recently_deleted), which made this
        # benchmark measure what the disk was doing rather than the unpackers.
        for d in (pull_root, rootfs, bundle):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        timings.append(
            measure("sealer pull + unpack", [*me, "pull", str(pull_root), dest, str(rootfs)], runs=RUNS)
        )
        shutil.rmtree(gz_layout, ignore_errors=True)
        subprocess.run(
            ["skopeo", "copy", "-q", "--dest-compress", "--dest-compress-format", "gzip",
             f"oci:{store}/oci:{FULL_IMAGE}", f"oci:{gz_layout}:v1"],
            check=True,
        )  # fmt: skip

        umoci = f'umoci unpack --rootless --image {gz_layout}:v1 "$(mktemp -d -p {bundle})/b"'
        timings.append(measure("umoci unpack (gzip copy)", umoci, runs=RUNS))
    finally:
        reg.stop()
        for d in (pull_root, rootfs, bundle, gz_layout, reg.workdir):
            shutil.rmtree(d, ignore_errors=True)
    _report(timings, image_bytes, big_size)


def _report(timings: list[Timing], image_bytes: int, big_size: int) -> None:
    by = {t.name: t for t in timings}
    curl = min(
        by["curl PUT largest blob (--data-binary @file)"].wall_s,
        by["curl PUT largest blob (-T file, streamed)"].wall_s,
    )
    push, skopeo = by["sealer push"], by["skopeo copy oci: -> docker://"]
    pull, umoci = by["sealer pull + unpack"], by["umoci unpack (gzip copy)"]
    checks = {
        "push_x_curl": round(push.wall_s / curl, 2),
        "push_faster_than_skopeo": push.wall_s < skopeo.wall_s,
        "umoci_unpack_x_pull_unpack": round(umoci.wall_s / pull.wall_s, 2),
        "peak_rss_mb": max(push.peak_rss_mb, pull.peak_rss_mb),
    }
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "image_bytes": image_bytes,
        "largest_blob_bytes": big_size,
        "timings": [asdict(t) for t in timings],
        "checks": checks,
        "targets": {"push_x_curl": 1.2, "push_faster_than_skopeo": True, "umoci_unpack_x_pull_unpack": 2.0,
                    "peak_rss_mb": 100},
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "registry.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"Image: {image_bytes / 1e6:.0f} MB in blobs (largest {big_size / 1e6:.0f} MB), {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {report['date']}; registry: docker-registry, plain HTTP, 127.0.0.1",
        "",
        "| what | wall s | CPU s | peak RSS MB |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t.name} | {t.wall_s} | {t.cpu_s} | {t.peak_rss_mb} |" for t in timings]
    lines += [
        "",
        f"push / best curl PUT: {checks['push_x_curl']}x (target <= 1.2); push faster than skopeo: "
        f"{checks['push_faster_than_skopeo']}; umoci unpack / (pull + unpack): {checks['umoci_unpack_x_pull_unpack']}x "
        f"(target >= 2); peak RSS {checks['peak_rss_mb']} MB (target <= 100)",
    ]
    (RESULTS / "registry.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "push":
        child_push(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "pull":
        child_pull(*sys.argv[2:5])
    else:
        main()
