"""`make bench` (delivery part): `deliver()` of the benchmark image to 3 fixture hosts at once,
against OpenSSH doing the same work in the same run, plus the no-op re-run.

Needs root, like the component tests: the hosts are tests/hosts.py's (network + mount
namespaces, each with its own sshd on 10.250.0.0/24), made fresh for this run and removed after.

Contenders, ROUNDS interleaved rounds (first one rotated; medians and ranges, bench/_measure.py)
after one unrecorded warm-up round (the disk here is slow and noisy for file creation, and much
faster for whoever runs first on it), every host's /var/lib/sealer emptied before each run:
- sealer: a child process running `deliver()` (SSH driver) of the image to the 3 hosts (the
  default: hosts keep no blobs);
- sealer keep_blobs: the same with `keep_blobs=True` (every host also writes each blob to its
  blob cache while unpacking it): what the option costs;
- baseline: for each host at once, each compressed layer blob streamed as
  `ssh -c aes128-gcm@openssh.com -i KEY ... root@HOST 'zstd -d | tar -x -C DIR'`, one after
  the other per host;
- re-run: `deliver()` again onto the delivered hosts (must move 0 bytes).
Each runs as a child of the launcher: wall time, CPU time and the child's own peak RSS. The stack
check is cached in the store; its cold cost is timed apart. Results: bench/results/delivery.{json,md}.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._measure import (
    ChildRun,
    Contender,
    Summary,
    compile_bytecode,
    facts_line,
    ratio,
    run_facts,
    run_rounds,
    table,
    write_results,
)
from bench.gen_context import generate

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
IMAGE = "bench/cluster:v1"
CLUSTER = "bench"
ROUNDS = 5
TARGETS = {"x_baseline": 1.2, "rerun_s": 2.0, "peak_rss_mb": 150}
NAMES = {
    "baseline": "baseline: ssh -c aes128-gcm 'zstd -d | tar -x' per blob, 3 hosts at once",
    "sealer": "sealer deliver() to 3 hosts (fresh)",
    "rerun": "sealer deliver() re-run (nothing changed)",
    "keep": "sealer deliver(keep_blobs=True) to 3 hosts (fresh)",
}


def _ensure_image(store: Path, ctx: Path) -> None:
    env = {**os.environ, "SEALER_ROOT": str(store)}
    check = subprocess.run(
        [sys.executable, "-m", "builder.cli", "images", "-q"], env=env, capture_output=True, text=True
    )
    if check.returncode == 0 and check.stdout.strip():
        return
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


def main(quick: bool = False) -> dict[str, float]:
    compile_bytecode()
    if os.geteuid() != 0:
        raise SystemExit("the delivery benchmark needs root (it makes network namespaces and sshd hosts)")
    sys.path.insert(0, str(HERE.parent))
    from builder.image.descriptor import Platform
    from builder.runtime.delivery import prepare_image
    from builder.store.layout import Store
    from tests.hosts import HostLab

    store_root = WORK / ("store-quick" if quick else "store")
    _ensure_image(
        store_root, generate(WORK / ("context-quick" if quick else "context"), scale=0.1 if quick else 1.0)
    )
    rounds = 3 if quick else ROUNDS
    store = Store.open(store_root, create=False)
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
            "store": str(store_root),
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

        def rerun_moved_nothing(result: ChildRun) -> None:
            sent = sum(json.loads(result.stdout).values())
            if sent != 0:
                raise SystemExit(f"the re-run moved {sent} bytes")

        contenders = [
            Contender(NAMES["baseline"], baseline_argv, before=fresh),
            Contender(
                NAMES["sealer"],
                deliver_argv,
                before=fresh,
                follow=Contender(NAMES["rerun"], deliver_argv, check=rerun_moved_nothing),
            ),
            # what the keep_blobs option costs: not a figure `make bench-quick` needs
            *([] if quick else [Contender(NAMES["keep"], keep_argv, before=fresh)]),
        ]
        # A warm-up round, not recorded: the first runs on the quiet disk of a fresh machine
        # state are up to 2x faster than any later one, and only the contender that happens to go
        # first gets them.
        runs = run_rounds(contenders, rounds, warmup=not quick)
        fresh()
    finally:
        lab.close()
        shutil.rmtree(base_dir, ignore_errors=True)

    def sent(name: str) -> int | None:
        return None if name == NAMES["baseline"] else sum(json.loads(runs[name][-1].stdout).values())

    order = [Summary.of(name, runs[name], sent(name)) for name in NAMES.values() if name in runs]
    base = order[0]
    walls = {name: [r.wall_s for r in rs] for name, rs in runs.items()}
    checks = {
        "x_baseline": ratio(order[1].median_s, base.median_s),
        "rerun_s": order[2].median_s,
        "peak_rss_mb": max(s.peak_rss_mb for s in order[1:]),
    }
    if quick:
        return checks
    facts = run_facts(rounds)
    report = {
        **facts,
        "image": {"name": IMAGE, "layers": len(image.layers), "blob_bytes": blob_bytes},
        "stack_check_cold_s": round(check_s, 3),
        "summaries": [s.__dict__ for s in order],
        "median_x_baseline": {s.name: ratio(s.median_s, base.median_s) for s in order[1:]},
        # each contender against the baseline of its own round: less sensitive to a round where
        # the shared disk happened to be quiet
        "paired_median_x_baseline": {
            k: round(statistics.median(w / b for w, b in zip(walls[k], walls[base.name], strict=True)), 2)
            for k in (NAMES["sealer"], NAMES["keep"])
        },
        "checks": checks,
        "targets": TARGETS,
    }
    med = report["median_x_baseline"]
    paired = report["paired_median_x_baseline"]
    lines = [
        f"Image {IMAGE}: {len(image.layers)} layers, {blob_bytes / 1e6:.0f} MB compressed, to 3 hosts; "
        f"{facts_line(facts)} (the CPUs shared with the hosts)",
        f"Stack check (cold, then cached in the store): {check_s:.2f} s. A warm-up round before the "
        "rounds; CPU and RSS are the controller child's.",
        "",
        *table(order, baseline=base, extra="bytes sent"),
        "",
        f"On medians: sealer {med[NAMES['sealer']]}x baseline, keep_blobs {med[NAMES['keep']]}x; "
        f"median of the per-round ratios: sealer {paired[NAMES['sealer']]}x, keep_blobs {paired[NAMES['keep']]}x.",
        "",
        f"Targets: <= {TARGETS['x_baseline']}x baseline; re-run 0 bytes in < {TARGETS['rerun_s']} s; "
        f"controller peak RSS <= {TARGETS['peak_rss_mb']} MB.",
    ]
    write_results("delivery", report, lines)
    return checks


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        main()
