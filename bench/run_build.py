"""`make bench` (build part): a cold `sealer build`, a no-op rebuild and the shell baseline,
timed in the same run on the same generated context.

Baseline: `tar -cf - CTX | zstd -T0 -3 | sha256sum` (what a build fundamentally does: read,
archive, compress, hash). Each command runs as a child; wall time, CPU time and the child's
peak RSS (wait4 rusage) are recorded. Results go to bench/results/build.json and .md.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench._measure import measure, run_child
from bench.gen_context import generate

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RESULTS = HERE / "results"
SEALER = [sys.executable, "-m", "builder.cli"]


def main() -> None:
    ctx = generate(WORK / "context")
    size = sum(f.stat().st_size for f in ctx.rglob("*") if f.is_file() and not f.is_symlink())
    root = WORK / "store"
    env = {**os.environ, "SEALER_ROOT": str(root)}

    def fresh_store() -> None:
        shutil.rmtree(root, ignore_errors=True)

    build = [*SEALER, "build", "-q", "-t", "bench/cluster:v1", str(ctx)]
    baseline = f"tar -cf - -C {ctx} . | zstd -q -T0 -3 | sha256sum"
    # Warm the page cache once so that every contender reads from memory.
    run_child(f"tar -cf - -C {ctx} . > /dev/null")
    timings = [
        measure("baseline: tar | zstd -T0 -3 | sha256sum", baseline, runs=5),
        measure("sealer build (cold, zstd)", build, runs=5, env=env, before=fresh_store),
        measure("sealer build (no-op rebuild)", build, runs=5, env=env),
    ]
    base = timings[0].wall_s
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "context_bytes": size,
        "timings": [asdict(t) | {"x_baseline": round(t.wall_s / base, 2)} for t in timings],
        "targets": {"cold_build_x_baseline": 1.3, "noop_rebuild_s": 0.3, "peak_rss_mb": 150},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "build.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"Context: {size / 1e6:.0f} MB, {os.cpu_count()} CPUs, Python {platform.python_version()}, {report['date']}",
        "",
        "| what | wall s | CPU s | peak RSS MB | x baseline |",
        "|---|---|---|---|---|",
    ]
    for t in timings:
        name = t.name.replace("|", "\\|")
        lines.append(f"| {name} | {t.wall_s} | {t.cpu_s} | {t.peak_rss_mb} | {t.wall_s / base:.2f} |")
    (RESULTS / "build.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
