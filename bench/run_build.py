"""`make bench` (build part): a cold `sealer build`, a no-op rebuild, the shell baseline and
buildah, timed in the same run on the same generated context.

Contenders (each a child of bench/_measure.py's launcher, ROUNDS interleaved rounds, the first
one rotated; medians and ranges):
- baseline: `tar -cf - CTX | zstd -T0 -3 | sha256sum` (what a build fundamentally does: read,
  archive, compress, hash);
- sealer build, cold (empty store), then its no-op rebuild right after (everything cached);
- buildah (Debian's): `buildah bud --layers` of the same context (a Containerfile with the same
  COPY steps and label; KUBEVERSION has no Containerfile form) into a fresh storage, plus
  `buildah push --compression-format zstd` to an OCI dir (what sealer's store holds at the end
  of a build: zstd OCI blobs), then its no-op rebuild (`bud --layers` again, every step cached).
Results go to bench/results/build.json and .md (`--quick`: a small context, ratios only).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bench._before import Before, before
from bench._measure import (
    Contender,
    Summary,
    before_lines,
    compile_bytecode,
    facts_line,
    ratio,
    run_child,
    run_facts,
    run_rounds,
    summarize,
    table,
    write_results,
)
from bench.gen_context import CONTAINERFILE, generate

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
# The console script, as a user runs it (`python -m builder.cli` adds runpy's imports)
_SCRIPT = Path(sys.executable).parent / "sealer"
SEALER = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "builder.cli"]
ROUNDS = 5
TARGETS = {"cold_build_x_baseline": 1.3, "noop_rebuild_s": 0.3, "peak_rss_mb": 150}
NAMES = {
    "baseline": "baseline: tar | zstd -T0 -3 | sha256sum",
    "cold": "sealer build (cold, zstd, empty store)",
    "noop": "sealer build (no-op rebuild, everything cached)",
    "buildah": "buildah bud --layers + push to an OCI dir (zstd), empty storage",
    "buildah_noop": "buildah bud --layers (no-op rebuild)",
}


def contenders(ctx: Path, work: Path, old: Before | None = None) -> list[Contender]:
    root = work / "store"
    env = {**os.environ, "SEALER_ROOT": str(root)}
    build = [*SEALER, "build", "-q", "-t", "bench/cluster:v1", str(ctx)]
    bh_root, bh_oci = work / "buildah", work / "buildah-oci"
    containerfile = work / "Containerfile"
    containerfile.write_text(CONTAINERFILE)
    buildah = [
        "buildah",
        "--root",
        str(bh_root / "root"),
        "--runroot",
        str(bh_root / "run"),
        "--storage-driver",
        "overlay",
    ]
    bud = [*buildah, "bud", "--layers", "-q", "-f", str(containerfile), "-t", "bench/cluster:v1", str(ctx)]
    push = [*buildah, "push", "-q", "--compression-format", "zstd", "bench/cluster:v1", f"oci:{bh_oci}:v1"]

    def fresh_buildah() -> None:
        shutil.rmtree(bh_root, ignore_errors=True)
        shutil.rmtree(bh_oci, ignore_errors=True)

    extra = []
    if old is not None:
        old_root = work / "store-before"
        old_env = old.env({**os.environ, "SEALER_ROOT": str(old_root)})
        extra.append(
            Contender(
                old.label(NAMES["cold"]),
                build,
                env=old_env,
                before=lambda: shutil.rmtree(old_root, ignore_errors=True),
                follow=Contender(old.label(NAMES["noop"]), build, env=old_env),
            )
        )
    return [
        Contender(NAMES["baseline"], f"tar -cf - -C {ctx} . | zstd -q -T0 -3 | sha256sum"),
        Contender(
            NAMES["cold"],
            build,
            env=env,
            before=lambda: shutil.rmtree(root, ignore_errors=True),
            follow=Contender(NAMES["noop"], build, env=env),
        ),
        Contender(
            NAMES["buildah"],
            " ".join(bud) + " >/dev/null && " + " ".join(push),
            before=fresh_buildah,
            follow=Contender(NAMES["buildah_noop"], bud),
        ),
        *extra,
    ]


def main(quick: bool = False) -> dict[str, float]:
    compile_bytecode()
    ctx = generate(WORK / ("context-quick" if quick else "context"), scale=0.1 if quick else 1.0)
    size = sum(f.stat().st_size for f in ctx.rglob("*") if f.is_file() and not f.is_symlink())
    work = WORK / ("build-quick" if quick else "build")
    work.mkdir(parents=True, exist_ok=True)
    run_child(f"tar -cf - -C {ctx} . > /dev/null")  # the page cache holds the context for everyone
    rounds = 3 if quick else ROUNDS
    old = None if quick else before()
    stats = summarize(run_rounds(contenders(ctx, work, old), rounds))
    shutil.rmtree(work / "buildah", ignore_errors=True)
    base, cold, noop = stats[NAMES["baseline"]], stats[NAMES["cold"]], stats[NAMES["noop"]]
    buildah, buildah_noop = stats[NAMES["buildah"]], stats[NAMES["buildah_noop"]]
    checks = {
        "cold_build_x_baseline": ratio(cold.median_s, base.median_s),
        "noop_rebuild_s": noop.median_s,
        "peak_rss_mb": max(cold.peak_rss_mb, noop.peak_rss_mb),
        "buildah_x_sealer_cold": ratio(buildah.median_s, cold.median_s),
        "buildah_noop_x_sealer_noop": ratio(buildah_noop.median_s, noop.median_s),
    }
    order = [base, cold, noop, buildah, buildah_noop]
    if old is not None:  # the same checks for the code before, from the same rounds
        cold_old, noop_old = stats[old.label(NAMES["cold"])], stats[old.label(NAMES["noop"])]
        checks[f"before {old.rev}: cold_build_x_baseline"] = ratio(cold_old.median_s, base.median_s)
        checks[f"before {old.rev}: noop_rebuild_s"] = noop_old.median_s
        order += [cold_old, noop_old]
    if quick:
        return checks
    _write(order, checks, size, rounds)
    return checks


def _write(order: list[Summary], checks: dict[str, float], size: int, rounds: int) -> None:
    facts = run_facts(rounds)
    report = {**facts, "context_bytes": size, "summaries": [s.__dict__ for s in order], "checks": checks}
    lines = [
        f"Context: {size / 1e6:.0f} MB, {facts_line(facts)}",
        "",
        *table(order, baseline=order[0]),
        "",
        f"On medians: cold build {checks['cold_build_x_baseline']}x the baseline (target <= "
        f"{TARGETS['cold_build_x_baseline']}); no-op rebuild {checks['noop_rebuild_s']} s (target < "
        f"{TARGETS['noop_rebuild_s']}); peak RSS {checks['peak_rss_mb']} MB (target <= {TARGETS['peak_rss_mb']}); "
        f"buildah {checks['buildah_x_sealer_cold']}x sealer's cold build, "
        f"{checks['buildah_noop_x_sealer_noop']}x its no-op rebuild",
        *before_lines(checks),
    ]
    write_results("build", {**report, "targets": TARGETS}, lines)


if __name__ == "__main__":
    main()
