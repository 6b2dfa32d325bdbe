"""bench/_measure.py: a contender's peak RSS is its own, whatever the harness holds, and rounds
rotate the first contender and summarise medians and ranges."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from bench import _measure

# A harness holding ~400 MB of touched pages times `/bin/true` (issue 16: wait4 of a child
# forked from it reported 413 MB).
_BIG_HARNESS = textwrap.dedent(
    """
    from bench._measure import run_child
    ballast = b"\\x01" * (400 << 20)
    print(run_child(["/bin/true"]).peak_rss_mb)
    """
)


def test_peak_rss_does_not_include_a_400_mb_harness() -> None:
    small = subprocess.run(
        [sys.executable, "-c", _BIG_HARNESS.replace("400 << 20", "1")],
        capture_output=True,
        text=True,
        check=True,
    )
    big = subprocess.run([sys.executable, "-c", _BIG_HARNESS], capture_output=True, text=True, check=True)
    small_mb, big_mb = float(small.stdout), float(big.stdout)
    assert big_mb < 20, f"/bin/true measured {big_mb} MB under a 400 MB harness"
    assert abs(big_mb - small_mb) < 5, (small_mb, big_mb)


def test_peak_rss_of_a_child_that_allocates_is_seen() -> None:
    code = "x = b'\\x01' * (200 << 20)"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from bench._measure import run_child\nprint(run_child({[sys.executable, '-c', code]!r}).peak_rss_mb)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert 200 < float(result.stdout) < 260


def test_rounds_rotate_the_first_contender_and_run_follow_right_after() -> None:
    order: list[str] = []
    contenders = [
        _measure.Contender("a", ["true"], before=lambda: order.append("a")),
        _measure.Contender(
            "b",
            ["true"],
            before=lambda: order.append("b"),
            follow=_measure.Contender("b2", ["true"], before=lambda: order.append("b2")),
        ),
        _measure.Contender("c", ["true"], before=lambda: order.append("c")),
    ]
    runs = _measure.run_rounds(contenders, 3)
    assert order == ["a", "b", "b2", "c", "b", "b2", "c", "a", "c", "a", "b", "b2"]
    assert {k: len(v) for k, v in runs.items()} == {"a": 3, "b": 3, "b2": 3, "c": 3}


def test_summary_median_range_and_best_of() -> None:
    runs = [
        _measure.ChildRun(w, w / 2, rss, "")
        for w, rss in ((3.0, 10), (1.0, 30), (2.0, 20), (5.0, 10), (4.0, 10))
    ]
    s = _measure.Summary.of("x", runs)
    assert (s.median_s, s.min_s, s.max_s, s.peak_rss_mb, s.cpu_median_s) == (3.0, 1.0, 5.0, 30, 1.5)
    assert s.range == "1.000-5.000"
