"""`make bench` (registry part): push and pull of the benchmark ClusterImage against peers,
timed in the same run on the same machine, against one local docker-registry (plain HTTP on
127.0.0.1, storage on local disk, wiped before every push).

Each contender is a child of bench/_measure.py's launcher (its own peak RSS, never the
harness's), ROUNDS interleaved rounds with the first one rotated; medians and ranges.

Push (the registry emptied before each run):
  - curl: POST an upload session, then one monolithic PUT of the largest blob, `-T file`
    (streamed: the baseline) and `--data-binary @file` (curl reads the file into memory first);
  - `sealer push` (the CLI) of bench/cluster:v1;
  - `skopeo copy oci:STORE/oci:NAME docker://REGISTRY/...` (same image, same registry).
Pull (from the registry holding sealer's push, and a gzip copy that skopeo pushed):
  - `sealer pull` (the CLI) into a fresh store, against `skopeo copy docker:// oci:` of the same
    zstd image into a fresh OCI dir;
  - sealer pull + unpack of every layer into a fresh store's overlay2 diff dirs (`python -m
    bench._pull_child`: `RegistryClient.pull` with `DiffDirUnpacker`, each layer
    unpacked as it downloads, diff_id checked, published once its digest matched: what a build
    FROM a registry image with a RUN does), against `skopeo copy docker:// oci:` + `umoci
    unpack` of the gzip copy (umoci 0.4.7 reads no zstd), and against `umoci unpack` alone of a
    local gzip copy (the target's peer).
Results go to bench/results/registry.json and .md. `python -m bench.run_registry` runs it all;
`python -m bench._pull_child ...` is the pull + unpack child it times (without the harness's
imports; `python -m bench.run_registry pull ...`, the child mode of older revisions, runs it too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench._before import Before, before
from bench._measure import (
    Contender,
    Summary,
    before_lines,
    compile_bytecode,
    facts_line,
    ratio,
    run_facts,
    run_rounds,
    summarize,
    table,
    write_results,
)
from bench.gen_context import generate
from bench.run_build import SEALER, WORK

IMAGE = "bench/cluster:v1"
FULL_IMAGE = "docker.io/bench/cluster:v1"
ROUNDS = 5
TARGETS = {
    "push_x_curl": 1.1,
    "push_faster_than_skopeo": True,
    "umoci_unpack_x_pull_unpack": 2.5,
    "peak_rss_mb": 100,
}
NAMES = {
    "curl": "curl PUT largest blob (-T file, streamed)",
    "curl_mem": "curl PUT largest blob (--data-binary @file)",
    "curl_image": "curl -T of every blob (3 at once) + manifest PUT",
    "push": "sealer push",
    "skopeo_push": "skopeo copy oci: -> docker://",
    "pull": "sealer pull",
    "skopeo_pull": "skopeo copy docker:// -> oci:",
    "pull_unpack": "sealer pull + unpack",
    "skopeo_umoci": "skopeo copy docker:// -> oci: (gzip copy) + umoci unpack",
    "umoci": "umoci unpack (local gzip copy)",
}


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


def child_pull(store_root: str, ref: str, rootfs: str) -> None:
    """The child mode this benchmark timed before bench/_pull_child.py (its arguments kept, so
    a `make bench BEFORE=` of this revision still runs); `rootfs` is unused."""
    from bench._pull_child import pull_and_unpack

    pull_and_unpack(store_root, ref)


# -- the benchmark -----------------------------------------------------------------------------


def _ensure_image(store: Path, ctx: Path) -> None:
    env = {**os.environ, "SEALER_ROOT": str(store)}
    index = store / "oci" / "index.json"
    if index.exists() and FULL_IMAGE in index.read_text():
        return
    subprocess.run([*SEALER, "build", "-q", "-t", IMAGE, str(ctx)], env=env, check=True)


def _largest_blob(store: Path) -> tuple[Path, str, int]:
    from builder.store.layout import Store

    s = Store.open(store, create=False)
    desc = s.resolve(IMAGE)
    manifest = s.manifests_for(desc)[0][1]
    layer = max(manifest.layers, key=lambda d: d.size)
    return s.blobs.path(layer.digest), str(layer.digest), layer.size


def _curl_whole_image(store: Path, host: str) -> str:
    """curl doing what a push does, no more: every blob POSTed and PUT with `-T`, three at once
    and largest first (as `sealer push`), then the manifest PUT."""
    from builder.store.layout import Store

    s = Store.open(store, create=False)
    desc = s.resolve(IMAGE)
    manifest = s.manifests_for(desc)[0][1]
    blobs = sorted([manifest.config, *manifest.layers], key=lambda d: -d.size)
    script = WORK / "curl-blob.sh"  # $1: the registry, $2: a blob file named by its hex digest
    script.write_text(
        "set -e\n"
        'loc=$(curl -sf -i -X POST "http://$1/v2/bench/curlimg/blobs/uploads/" | tr -d "\\r" '
        "| sed -n 's/^[Ll]ocation: //p')\n"
        'curl -sf -X PUT -H "Content-Type: application/octet-stream" -T "$2" "$loc&digest=sha256:$(basename "$2")"\n'
    )
    paths = " ".join(str(s.blobs.path(d.digest)) for d in blobs)
    return (
        f"printf '%s\\n' {paths} | xargs -P 3 -n 1 sh {script} {host} && "
        f"curl -sf -X PUT -H 'Content-Type: {desc.media_type}' --data-binary @{s.blobs.path(desc.digest)} "
        f"http://{host}/v2/bench/curlimg/manifests/v1"
    )


def _push_contenders(
    reg: LocalRegistry, store: Path, big_path: Path, big_digest: str, old: Before | None
) -> list[Contender]:
    env = {**os.environ, "SEALER_ROOT": str(store)}
    curl_put = (
        f"loc=$(curl -sf -i -X POST http://{reg.host}/v2/bench/curl/blobs/uploads/ "
        "| tr -d '\\r' | sed -n 's/^[Ll]ocation: //p'); "
        "curl -sf -X PUT -H 'Content-Type: application/octet-stream' "
        f'{{body}} "$loc&digest={big_digest}"'
    )
    push = [*SEALER, "push", "-q", IMAGE, f"{reg.host}/{IMAGE}"]
    extra = (
        [] if old is None else [Contender(old.label(NAMES["push"]), push, env=old.env(env), before=reg.fresh)]
    )
    return [
        Contender(NAMES["curl"], curl_put.format(body=f"-T {big_path}"), before=reg.fresh),
        Contender(NAMES["curl_mem"], curl_put.format(body=f"--data-binary @{big_path}"), before=reg.fresh),
        Contender(NAMES["curl_image"], _curl_whole_image(store, reg.host), before=reg.fresh),
        Contender(NAMES["push"], push, env=env, before=reg.fresh),
        Contender(
            NAMES["skopeo_push"],
            ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{store}/oci:{FULL_IMAGE}",
             f"docker://{reg.host}/bench/skopeo:v1"],
            before=reg.fresh,
        ),
        *extra,
    ]  # fmt: skip


def _pull_contenders(
    reg: LocalRegistry, scratch: Path, gz_layout: Path, old: Before | None
) -> list[Contender]:
    # Every run writes into a new directory and nothing is deleted until the end: ext4 avoids
    # re-using inodes freed in the last ~30 s, and creating files right after a big delete costs
    # 2-3x more (perf: ext4_create -> recently_deleted), which made this benchmark measure what
    # the disk was doing rather than the pullers and unpackers.
    new = f'"$(mktemp -d -p {scratch})"'
    src = f"docker://{reg.host}/{IMAGE}"
    gz_src = f"docker://{reg.host}/bench/gzip:v1"
    skopeo = "skopeo copy -q --src-tls-verify=false"
    sealer = " ".join(SEALER)
    pull_unpack = [sys.executable, "-m", "bench._pull_child", str(scratch), f"{reg.host}/{IMAGE}"]
    # The code before runs its own child mode (older trees have no bench/_pull_child.py).
    old_pull_unpack = [*ME, "pull", str(scratch), f"{reg.host}/{IMAGE}", str(scratch)]
    extra = (
        []
        if old is None
        else [Contender(old.label(NAMES["pull_unpack"]), old.shell(" ".join(old_pull_unpack)))]
    )
    return [
        Contender(NAMES["pull"], f"SEALER_ROOT={new} {sealer} pull -q {reg.host}/{IMAGE} >/dev/null"),
        Contender(NAMES["skopeo_pull"], f"{skopeo} {src} oci:{new}:v1"),
        Contender(NAMES["pull_unpack"], pull_unpack),
        Contender(
            NAMES["skopeo_umoci"],
            f"d={new}; {skopeo} {gz_src} oci:$d/oci:v1 && umoci unpack --rootless --image $d/oci:v1 $d/bundle >/dev/null",
        ),
        Contender(NAMES["umoci"], f"umoci unpack --rootless --image {gz_layout}:v1 {new}/b >/dev/null"),
        *extra,
    ]


ME = [sys.executable, "-m", "bench.run_registry"]


def main(quick: bool = False) -> dict[str, float | bool]:
    compile_bytecode()
    scale = 0.1 if quick else 1.0
    store = WORK / ("store-quick" if quick else "store")
    _ensure_image(store, generate(WORK / ("context-quick" if quick else "context"), scale=scale))
    reg = LocalRegistry(WORK / "registry", _free_port())
    big_path, big_digest, big_size = _largest_blob(store)
    image_bytes = sum(p.stat().st_size for p in (store / "oci" / "blobs").rglob("*") if p.is_file())
    scratch, gz_layout = WORK / "pull-scratch", WORK / "gzip-layout"
    rounds = 3 if quick else ROUNDS
    # Warm the page cache so every contender reads the blobs from memory.
    subprocess.run(f"cat {store}/oci/blobs/sha256/* > /dev/null", shell=True, check=True)
    try:
        old = None if quick else before()
        runs = run_rounds(_push_contenders(reg, store, big_path, big_digest, old), rounds)
        reg.fresh()
        env = {**os.environ, "SEALER_ROOT": str(store)}
        subprocess.run(
            [*SEALER, "push", "-q", IMAGE, f"{reg.host}/{IMAGE}"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(gz_layout, ignore_errors=True)
        subprocess.run(
            ["skopeo", "copy", "-q", "--dest-compress", "--dest-compress-format", "gzip",
             f"oci:{store}/oci:{FULL_IMAGE}", f"oci:{gz_layout}:v1"],
            check=True,
        )  # fmt: skip
        subprocess.run(
            ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{gz_layout}:v1", f"docker://{reg.host}/bench/gzip:v1"],
            check=True,
        )  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        runs |= run_rounds(_pull_contenders(reg, scratch, gz_layout, old), rounds)
    finally:
        reg.stop()
        for d in (scratch, gz_layout, reg.workdir):
            shutil.rmtree(d, ignore_errors=True)
    stats = summarize(runs)
    by = {key: stats[name] for key, name in NAMES.items()}
    checks: dict[str, float | bool] = {
        "push_x_curl": ratio(by["push"].median_s, by["curl"].median_s),
        "push_x_curl_whole_image": ratio(by["push"].median_s, by["curl_image"].median_s),
        "push_faster_than_skopeo": by["push"].median_s < by["skopeo_push"].median_s,
        "umoci_unpack_x_pull_unpack": ratio(by["umoci"].median_s, by["pull_unpack"].median_s),
        "skopeo_umoci_x_pull_unpack": ratio(by["skopeo_umoci"].median_s, by["pull_unpack"].median_s),
        "skopeo_pull_x_pull": ratio(by["skopeo_pull"].median_s, by["pull"].median_s),
        "peak_rss_mb": max(by[k].peak_rss_mb for k in ("push", "pull", "pull_unpack")),
    }
    if old is not None:  # the same checks for the code before, from the same rounds
        push_old, pull_old = stats[old.label(NAMES["push"])], stats[old.label(NAMES["pull_unpack"])]
        checks[f"before {old.rev}: push_x_curl"] = ratio(push_old.median_s, by["curl"].median_s)
        checks[f"before {old.rev}: umoci_unpack_x_pull_unpack"] = ratio(
            by["umoci"].median_s, pull_old.median_s
        )
        checks[f"before {old.rev}: peak_rss_mb"] = max(push_old.peak_rss_mb, pull_old.peak_rss_mb)
    if not quick:
        order = [*by.values()]
        if old is not None:
            order[5:5] = [push_old]
            order.append(pull_old)
        _report(order, checks, image_bytes, big_size, rounds, push_rows=5 if old is None else 6)
    return checks


def _report(
    order: list[Summary],
    checks: dict[str, float | bool],
    image_bytes: int,
    big_size: int,
    rounds: int,
    *,
    push_rows: int,
) -> None:
    facts = run_facts(rounds)
    report = {
        **facts,
        "image_bytes": image_bytes,
        "largest_blob_bytes": big_size,
        "summaries": [s.__dict__ for s in order],
        "checks": checks,
        "targets": TARGETS,
    }
    lines = [
        f"Image: {image_bytes / 1e6:.0f} MB in blobs (largest {big_size / 1e6:.0f} MB), {facts_line(facts)}; "
        "registry: docker-registry, plain HTTP, 127.0.0.1",
        "",
        *table(order[:push_rows], baseline=order[0]),
        "",
        *table(order[push_rows:]),
        "",
        f"On medians: push / curl -T {checks['push_x_curl']}x (target <= {TARGETS['push_x_curl']}); push / curl of "
        f"the whole image {checks['push_x_curl_whole_image']}x; push faster "
        f"than skopeo: {checks['push_faster_than_skopeo']}; umoci unpack / (pull + unpack) "
        f"{checks['umoci_unpack_x_pull_unpack']}x (target >= {TARGETS['umoci_unpack_x_pull_unpack']}); "
        f"(skopeo + umoci) / (pull + unpack) {checks['skopeo_umoci_x_pull_unpack']}x; skopeo pull / sealer pull "
        f"{checks['skopeo_pull_x_pull']}x; peak RSS {checks['peak_rss_mb']} MB (target <= {TARGETS['peak_rss_mb']})",
        *before_lines(checks),
    ]
    write_results("registry", report, lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "pull":
        child_pull(*sys.argv[2:5])
    else:
        main()
