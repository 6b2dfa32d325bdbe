"""Timing of benchmark commands: each runs as a child, measured by wall clock and by the child's
own rusage (wait4), so CPU time and peak RSS are the child's, not the harness's."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Timing:
    name: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    runs: int
    bytes_sent: int | None = None


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stdout: str


def run_child(argv: list[str] | str, env: dict[str, str] | None = None) -> ChildRun:
    """Run `argv` (a string runs through the shell); its output goes to temp files, not pipes,
    so a chatty child never blocks while we wait4 for its rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, shell=isinstance(argv, str), env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark command failed ({proc.returncode}): {argv}\n{err.read().decode()}")
        return ChildRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read().decode())


def measure(
    name: str,
    argv: list[str] | str,
    *,
    runs: int,
    env: dict[str, str] | None = None,
    before: Callable[[], object] | None = None,
) -> Timing:
    """Best of `runs` wall times (CPU and RSS of that run); `before` runs ahead of each run.

    Before every run the page cache's dirty data is written out (`sync`), so that no contender
    pays for the writes or deletions of the one before it.
    """
    best: ChildRun | None = None
    for _ in range(runs):
        if before is not None:
            before()
        os.sync()
        result = run_child(argv, env)
        if best is None or result.wall_s < best.wall_s:
            best = result
    assert best is not None
    return Timing(name, round(best.wall_s, 3), round(best.cpu_s, 3), round(best.peak_rss_mb, 1), runs)
