"""`make bench` (delivery part): `deliver()` of the benchmark image to 3 fixture hosts at once,
against OpenSSH doing the same work in the same run, plus the no-op re-run.

Needs root, like the component tests: the hosts are tests/hosts.py's (network + mount
namespaces, each with its own sshd on 10.250.0.0/24), made fresh for this run and removed after.

Contenders, interleaved and each the best of ROUNDS after one unrecorded warm-up round (the disk
here is slow and noisy for file creation, and much faster for whoever runs first on it), every
host's /var/lib/sealer emptied before each run:
- sealer: a child process running `deliver()` (SSH driver) of the image to the 3 hosts (the
  default: hosts keep no blobs);
- sealer keep_blobs: the same with `keep_blobs=True` (every host also writes each blob to its
  blob cache while unpacking it): what the option costs;
- baseline: for each host at once, each compressed layer blob streamed as
  `ssh -c aes128-gcm@openssh.com -i KEY ... root@HOST 'zstd -d | tar -x -C DIR'`, one after
  the other per host;
- re-run: `deliver()` again onto the delivered hosts (must move 0 bytes).
Each runs as a child: wall time, CPU time and the child's peak RSS (wait4 rusage). The stack
check is cached in the store; its cold cost is timed apart. Results: bench/results/delivery.{json,md}.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._measure import ChildRun, Timing, run_child
from bench.gen_context import generate

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RESULTS = HERE / "results"
STORE = WORK / "store"
IMAGE = "bench/cluster:v1"
CLUSTER = "bench"
ROUNDS = 5
TARGETS = {"x_baseline": 1.2, "rerun_s": 2.0, "peak_rss_mb": 150}


def _ensure_image() -> None:
    env = {**os.environ, "SEALER_ROOT": str(STORE)}
    check = subprocess.run(
        [sys.executable, "-m", "builder.cli", "images", "-q"], env=env, capture_output=True, text=True
    )
    if check.returncode == 0 and check.stdout.strip():
        return
    ctx = generate(WORK / "context")
    subprocess.run(
        [sys.executable, "-m", "builder.cli", "build", "-q", "-t", IMAGE, str(ctx)], env=env, check=True
    )


# --- the child: one deliver() ------------------------------------------------------------------------


def child(spec: dict[str, Any]) -> None:
    from builder.image.descriptor import Platform
    from builder.runtime.delivery import deliver, prepare_image
    from builder.runtime.infra import SSHCredentials, SSHDriver
    from builder.store.layout import Store

    store = Store.open(spec["store"], create=False)
    image = prepare_image(store, IMAGE, Platform.parse(spec["platform"]))
    creds = SSHCredentials(
        user="root", key_files=(spec["key"],), known_hosts=spec["known_hosts"], use_agent=False
    )

    async def go() -> dict[str, int]:
        async with SSHDriver(creds) as driver:
            results = await deliver(
                driver, store, image, CLUSTER, {a: {} for a in spec["hosts"]}, keep_blobs=spec["keep_blobs"]
            )
        return {h: r.bytes_sent for h, r in results.items()}

    print(json.dumps(asyncio.run(go())))


# --- the parent ------------------------------------------------------------------------------------


def _baseline_script(hosts: Any, blobs: list[Path]) -> str:
    lines = []
    for h in hosts:
        ssh = " ".join(shlex.quote(a) for a in hosts.openssh_args(h))
        ssh = ssh.replace("ssh ", "ssh -c aes128-gcm@openssh.com ", 1)
        steps = " && ".join(
            f"{ssh} 'zstd -d | tar -x -C /var/lib/sealer/baseline' < {shlex.quote(str(b))}" for b in blobs
        )
        lines.append(f"({ssh} 'mkdir -p /var/lib/sealer/baseline' && {steps}) &")
    return "\n".join(["set -e", *lines, "for j in $(jobs -p); do wait $j || exit 1; done"])


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the delivery benchmark needs root (it makes network namespaces and sshd hosts)")
    sys.path.insert(0, str(HERE.parent))
    from builder.image.descriptor import Platform
    from builder.runtime.delivery import prepare_image
    from builder.store.layout import Store
    from tests.hosts import HostLab

    _ensure_image()
    store = Store.open(STORE, create=False)
    plat = Platform.host()
    shutil.rmtree(store.cache_dir / "delivery", ignore_errors=True)
    started = time.perf_counter()
    image = prepare_image(store, IMAGE, plat)
    check_s = time.perf_counter() - started
    blobs = [store.blobs.path(layer.descriptor.digest) for layer in image.layers]
    blob_bytes = sum(layer.descriptor.size for layer in image.layers)
    assert all(layer.descriptor.media_type.endswith("+zstd") for layer in image.layers)

    base_dir = WORK / "hosts"
    shutil.rmtree(base_dir, ignore_errors=True)
    base_dir.mkdir(parents=True)
    lab = HostLab.open(base_dir)
    try:
        hosts = lab.make_hosts(3)
        spec = {
            "store": str(STORE),
            "platform": str(plat),
            "key": str(hosts.client_key),
            "known_hosts": str(hosts.known_hosts),
            "hosts": hosts.addresses,
            "keep_blobs": False,
        }
        deliver_argv = [sys.executable, "-m", "bench.run_delivery", "--child", json.dumps(spec)]
        keep_argv = [*deliver_argv[:-1], json.dumps({**spec, "keep_blobs": True})]
        baseline_argv = ["bash", "-c", _baseline_script(hosts, blobs)]

        def fresh() -> None:
            for h in hosts:
                for d in h.path("/var/lib/sealer").iterdir():
                    shutil.rmtree(d) if d.is_dir() and not d.is_symlink() else d.unlink()
            subprocess.run(["sync"], check=True)
            time.sleep(1)  # let the journal settle: the previous round's deletes and writeback

        best: dict[str, ChildRun] = {}
        runs: dict[str, int] = {}
        walls: dict[str, list[float]] = {}
        contenders = [("baseline", baseline_argv), ("sealer", deliver_argv), ("keep", keep_argv)]

        def record(name: str, result: ChildRun) -> None:
            runs[name] = runs.get(name, 0) + 1
            walls.setdefault(name, []).append(round(result.wall_s, 2))
            if name not in best or result.wall_s < best[name].wall_s:
                best[name] = result

        # A warm-up round, not recorded: the first runs on the quiet disk of a fresh machine
        # state are up to 2x faster than any later one, and only the contender that happens to go
        # first gets them (it made "best of" compare a quiet-disk baseline with a busy-disk run).
        for _name, argv in contenders:
            fresh()
            run_child(argv)
        for round_ in range(ROUNDS):
            # Rotate who goes first: the first run after a quiet disk is the fastest.
            shift = round_ % len(contenders)
            for name, argv in contenders[shift:] + contenders[:shift]:
                fresh()
                record(name, run_child(argv))
                if name == "sealer":  # the re-run onto what it just delivered
                    result = run_child(deliver_argv)
                    sent = sum(json.loads(result.stdout).values())
                    if sent != 0:
                        raise SystemExit(f"the re-run moved {sent} bytes")
                    record("rerun", result)
        fresh()
    finally:
        lab.close()
        shutil.rmtree(base_dir, ignore_errors=True)

    def timing(key: str, label: str) -> Timing:
        run = best[key]
        sent = sum(json.loads(run.stdout).values()) if key != "baseline" else None
        return Timing(
            label, round(run.wall_s, 3), round(run.cpu_s, 3), round(run.peak_rss_mb, 1), runs[key], sent
        )

    timings = [
        timing("baseline", "baseline: ssh -c aes128-gcm 'zstd -d | tar -x' per blob, 3 hosts at once"),
        timing("sealer", "sealer deliver() to 3 hosts (fresh)"),
        timing("keep", "sealer deliver(keep_blobs=True) to 3 hosts (fresh)"),
        timing("rerun", "sealer deliver() re-run (nothing changed)"),
    ]
    base = timings[0].wall_s
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "image": {"name": IMAGE, "layers": len(image.layers), "blob_bytes": blob_bytes},
        "stack_check_cold_s": round(check_s, 3),
        "timings": [asdict(t) | {"x_baseline": round(t.wall_s / base, 2)} for t in timings],
        "median_x_baseline": round(
            statistics.median(walls["sealer"]) / statistics.median(walls["baseline"]), 2
        ),
        "keep_blobs_median_x_baseline": round(
            statistics.median(walls["keep"]) / statistics.median(walls["baseline"]), 2
        ),
        # the same, per round (each contender against the baseline of its own round): less
        # sensitive to a round where the shared disk happened to be quiet
        "paired_median_x_baseline": {
            k: round(statistics.median(w / b for w, b in zip(walls[k], walls["baseline"], strict=True)), 2)
            for k in ("sealer", "keep")
        },
        "every_wall_s": walls,  # per round, in run order: the disk's noise is visible here
        "targets": TARGETS,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "delivery.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"Image {IMAGE}: {len(image.layers)} layers, {blob_bytes / 1e6:.0f} MB compressed, to 3 hosts; "
        f"{os.cpu_count()} CPUs (shared with the hosts), Python {platform.python_version()}, {report['date']}",
        f"Stack check (cold, then cached in the store): {check_s:.2f} s. "
        f"Best of {ROUNDS} after a warm-up round, interleaved.",
        "",
        "| what | wall s | CPU s (controller child) | peak RSS MB | bytes sent | x baseline |",
        "|---|---|---|---|---|---|",
    ]
    for t in timings:
        name = t.name.replace("|", "\\|")
        sent = "" if t.bytes_sent is None else str(t.bytes_sent)
        lines.append(
            f"| {name} | {t.wall_s} | {t.cpu_s} | {t.peak_rss_mb} | {sent} | {t.wall_s / base:.2f} |"
        )
    lines += [
        "",
        f"Median of the rounds: sealer {report['median_x_baseline']}x baseline; "
        f"keep_blobs {report['keep_blobs_median_x_baseline']}x. Median of the per-round ratios: "
        f"sealer {report['paired_median_x_baseline']['sealer']}x, "
        f"keep_blobs {report['paired_median_x_baseline']['keep']}x.",
    ]
    lines += ["", "Every round's wall s: " + "; ".join(f"{k} {v}" for k, v in walls.items())]
    lines += ["", f"Targets: <= {TARGETS['x_baseline']}x baseline; re-run 0 bytes in < {TARGETS['rerun_s']} s; "
              f"controller peak RSS <= {TARGETS['peak_rss_mb']} MB."]  # fmt: skip
    (RESULTS / "delivery.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        main()
