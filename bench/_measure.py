"""Timing of benchmark commands against their peers: interleaved rounds, medians and ranges.

Peak RSS. A forked child's high-water mark includes its parent's resident pages until it
execs (Linux charges the old mm's hiwater to the process at exec), and posix_spawn (vfork)
does the same: with a 400 MB harness, `/bin/true` measured 413 MB through wait4 (issue 16).
So every contender is started by GNU time (`/usr/bin/time`, ~1 MB): the contender is forked
from that small launcher, never from the harness, and time's `%M` (wait4's ru_maxrss of the
contender and its reaped descendants: the largest single process of a pipeline) is its own.
CPU time is time's `%U + %S` (user + system of the contender and its descendants). Wall time
is the harness's clock around the launcher (the launcher's ~1 ms is in every figure alike).

Rounds. `run_rounds` runs every contender once per round, the first one rotated from round to
round, so that a disk or a neighbour busy for a while weighs on all contenders alike; a
contender's `follow` runs right after it in the same round (a re-run onto what it just did).
`Summary` holds the median wall time (what targets are checked on), the range (min-max: its
min is the best-of, kept as an extra column) and every round's figure.
"""

from __future__ import annotations

import compileall
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TIME = "/usr/bin/time"
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
_FORMAT = "sealer-bench %M %U %S"  # peak RSS KiB, user s, system s


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stdout: str


@dataclass(frozen=True)
class Contender:
    """One command in the comparison; `before` runs ahead of each of its runs (untimed)."""

    name: str
    argv: list[str] | str  # a string runs through `sh -c`
    env: dict[str, str] | None = None
    before: Callable[[], object] | None = None
    follow: Contender | None = None  # runs right after this one, in the same round
    check: Callable[[ChildRun], object] | None = None  # raises on a wrong result


@dataclass(frozen=True)
class Summary:
    """One contender over all rounds: wall medians and ranges, CPU median, RSS max."""

    name: str
    runs: int
    median_s: float
    min_s: float
    max_s: float
    cpu_median_s: float
    peak_rss_mb: float  # the largest of the rounds
    every_wall_s: list[float] = field(default_factory=list)
    bytes_sent: int | None = None

    @classmethod
    def of(cls, name: str, runs: Sequence[ChildRun], bytes_sent: int | None = None) -> Summary:
        walls = [r.wall_s for r in runs]
        return cls(
            name,
            len(runs),
            round(statistics.median(walls), 3),
            round(min(walls), 3),
            round(max(walls), 3),
            round(statistics.median(r.cpu_s for r in runs), 3),
            round(max(r.peak_rss_mb for r in runs), 1),
            [round(w, 3) for w in walls],
            bytes_sent,
        )

    @property
    def range(self) -> str:
        return f"{self.min_s:.3f}-{self.max_s:.3f}"


def launcher() -> str:
    """GNU time's path; SystemExit naming the package when it is missing."""
    if not os.access(TIME, os.X_OK):
        raise SystemExit(f"{TIME} is missing: install Debian's package `time` (make install does)")
    return TIME


def compile_bytecode(root: Path = REPO) -> None:
    """Compile sealer's modules under `root` to bytecode, as `pip install` does for an installed
    package. This checkout is an editable install, and where PYTHONDONTWRITEBYTECODE is set
    (it is on this machine) every `sealer` run would compile ~60 modules from source: ~40 ms
    of a push's start-up that no installed sealer pays (issue 16)."""
    for package in ("builder", "kubefile_grammar"):
        if not compileall.compile_dir(root / package, quiet=1):
            raise SystemExit(f"compiling {root / package} failed")


def run_child(argv: list[str] | str, env: dict[str, str] | None = None) -> ChildRun:
    """Run `argv` under GNU time (a string runs through `sh -c`); stdout and stderr go to temp
    files, not pipes, so a chatty child never blocks. SystemExit with its stderr on failure."""
    command = ["sh", "-c", argv] if isinstance(argv, str) else list(argv)
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile() as report,
    ):
        started = time.perf_counter()
        proc = subprocess.run(
            [launcher(), "-f", _FORMAT, "-o", report.name, "--", *command], env=env, stdout=out, stderr=err
        )
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark command failed ({proc.returncode}): {argv}\n{err.read().decode()}")
        # time writes "Command exited with non-zero status" lines before the format's line
        lines = Path(report.name).read_text().splitlines()
        line = next(x for x in reversed(lines) if x.startswith("sealer-bench "))
        _, rss_kib, user_s, sys_s = line.split()
        return ChildRun(wall, float(user_s) + float(sys_s), int(rss_kib) / 1024, out.read().decode())


def run_once(contender: Contender) -> ChildRun:
    if contender.before is not None:
        contender.before()
    os.sync()  # no contender pays for the writes or deletions of the one before it
    result = run_child(contender.argv, contender.env)
    if contender.check is not None:
        contender.check(result)
    return result


def run_rounds(
    contenders: Sequence[Contender], rounds: int, *, warmup: bool = False
) -> dict[str, list[ChildRun]]:
    """Every contender (and its `follow`) once per round, the first one rotated; with `warmup`,
    one unrecorded round first. Returns each contender's runs in round order."""
    if warmup:
        for c in contenders:
            run_once(c)
    runs: dict[str, list[ChildRun]] = {}
    for round_ in range(rounds):
        shift = round_ % len(contenders)
        for c in [*contenders[shift:], *contenders[:shift]]:
            runs.setdefault(c.name, []).append(run_once(c))
            if c.follow is not None:
                runs.setdefault(c.follow.name, []).append(run_once(c.follow))
    return runs


def summarize(runs: dict[str, list[ChildRun]]) -> dict[str, Summary]:
    return {name: Summary.of(name, r) for name, r in runs.items()}


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


def table(summaries: Sequence[Summary], *, baseline: Summary | None = None, extra: str = "") -> list[str]:
    """A Markdown table: median, range (its min is the best-of), CPU, peak RSS, x baseline on
    medians and best-of. `extra` names a column of `bytes_sent`."""
    head = "| what | median s | min-max s | CPU s (median) | peak RSS MB (max) |"
    rule = "|---|---|---|---|---|"
    if extra:
        head, rule = head + f" {extra} |", rule + "---|"
    if baseline is not None:
        head += " x baseline (median) | x baseline (best-of) |"
        rule += "---|---|"
    lines = [head, rule]
    for s in summaries:
        name = s.name.replace("|", "\\|")
        row = f"| {name} | {s.median_s:.3f} | {s.range} | {s.cpu_median_s:.2f} | {s.peak_rss_mb} |"
        if extra:
            row += f" {'' if s.bytes_sent is None else f'{s.bytes_sent:,}'} |"
        if baseline is not None:
            row += f" {ratio(s.median_s, baseline.median_s):.2f} | {ratio(s.min_s, baseline.min_s):.2f} |"
        lines.append(row)
    return lines


def run_facts(rounds: int) -> dict[str, Any]:
    """When and where a run was taken: the head of every results file."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "rounds": rounds,
    }


def facts_line(facts: dict[str, Any]) -> str:
    load = " ".join(f"{x:.2f}" for x in facts["load_avg_at_end"])
    return (
        f"{facts['machine']['cpus']} CPUs, Python {facts['machine']['python']}, {facts['date']}; "
        f"{facts['rounds']} interleaved rounds; load average at the end {load}"
    )


def before_lines(checks: dict[str, Any]) -> list[str]:
    """The line of `make bench BEFORE=REV`'s checks, if any were made."""
    mine = [f"{k} {v}" for k, v in checks.items() if k.startswith("before ")]
    return ["The code before, same rounds: " + "; ".join(mine)] if mine else []


def write_results(stem: str, report: dict[str, Any], lines: list[str]) -> None:
    """bench/results/<stem>.json and .md; the Markdown is printed too."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
