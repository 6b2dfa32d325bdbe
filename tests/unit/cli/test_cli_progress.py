"""The progress renderers (builder/cli/progress.py, _bars.py) driven by event sequences: totals, speed,
ETA and the final frame, on a recording rich Console of fixed width and a fake clock."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from rich.console import Console

from builder.build import events as b
from builder.cli import _bars as bars_mod
from builder.cli import progress as p
from builder.registry import events as r
from builder.runtime import events as e

MB = 1_000_000
D1 = "sha256:" + "a1" * 32
D2 = "sha256:" + "b2" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def console() -> Console:
    return Console(record=True, width=100, force_terminal=True, file=io.StringIO(), color_system=None)


def printed(c: Console) -> str:
    """Everything written to the terminal: the lines printed through the display's console
    appear whole, between the frames' cursor controls."""
    out = c.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def in_order(text: str, *parts: str) -> bool:
    at = [text.find(part) for part in parts]
    return -1 not in at and at == sorted(at)


def test_build_bar_shows_the_running_total_once() -> None:
    """onepass reports a running total; the bar shows it as is (it was summed again: a 189 MB
    build read `4,529.9/188.7 MB`)."""
    clock, c = Clock(), console()
    bars = p.RichBuildProgress(c, clock)
    bars(b.StepStarted("linux/amd64", 1, 2, "COPY big /big"))
    for i in range(1, 49):  # 48 reports about 4 MB apart, 0.1 s apart
        clock.now += 0.1
        bars(b.StepProgress("linux/amd64", 1, min(i * 4 * MB, 188_700_000), 188_700_000))
        if i == 24:
            half = bars.bars.frame()
    frame = bars.bars.frame()
    assert "189 MB/189 MB" in frame, frame
    assert "96 MB/189 MB" in half and "41.7 MB/s" in half and "eta 0:02" in half, half
    bars(b.StepFinished("linux/amd64", 1, False, D1, 100 * MB, 188_700_000, 4.7))
    assert bars.bars.frame().strip() == ""  # the finished step's bar is gone
    bars(b.ImageBuilt("demo:v1", D2, ("linux/amd64",), 5.0))
    bars.close()
    assert in_order(
        printed(c),
        "[linux/amd64] STEP 1/2: COPY big /big\n",
        f"  --> layer {D1[7:19]} 100 MB (4.70s)\n",
        f"built demo:v1 {D2} in 5.00s\n",
    )


def test_speed_needs_time_not_two_close_updates() -> None:
    """Two 4 MB reports 10 us apart once read 404 GB/s: no speed or ETA before MIN_RATE_S."""
    clock = Clock()
    bars = p.RichTransfer(console(), clock)
    bars(r.BlobStarted(D1, 400 * MB, "application/vnd.oci.image.layer.v1.tar+zstd", "pull"))
    bars(r.BlobProgress(D1, 4 * MB, 400 * MB))
    clock.now += 0.00001
    bars(r.BlobProgress(D1, 8 * MB, 400 * MB))
    frame = bars.bars.frame()
    assert "GB/s" not in frame and "/s" not in frame and "eta" not in frame, frame
    assert "8 MB/400 MB" in frame
    clock.now += 1.99999
    bars(r.BlobProgress(D1, 200 * MB, 400 * MB))
    frame = bars.bars.frame()
    assert "100 MB/s" in frame and "eta 0:02" in frame, frame
    bars.close()


def test_transfer_lines_go_through_the_live_console() -> None:
    """Finished blobs, manifests and retries are printed by the display's console (were
    click.echo into the live display: frames stacked up and "done" lines were lost)."""
    clock, c = Clock(), console()
    bars = p.RichTransfer(c, clock)
    bars(r.BlobStarted(D1, 10 * MB, "x", "push"))
    bars(r.BlobStarted(D2, 2 * MB, "x", "push"))
    assert "pushing a1a1a1a1a1a1" in bars.bars.frame() and "pushing b2b2b2b2b2b2" in bars.bars.frame()
    clock.now += 1.0
    bars(r.BlobProgress(D1, 10 * MB, 10 * MB))
    bars(r.BlobDone(D1, 10 * MB, 10 * MB))
    bars(r.Retrying("blob x", 1, 0.5, "503"))
    bars(r.BlobSkipped(D2, 2 * MB))
    bars(r.ManifestDone("127.0.0.1:5000/a:v1", D2, "m"))
    assert bars.bars.frame().strip() == ""
    bars.close()
    assert in_order(
        printed(c),
        f"  blob {D1[7:19]} 10 MB done in 1.00s (10 MB/s)\n",
        "  retrying blob x in 0.5s (attempt 1): 503\n",
        f"  blob {D2[7:19]} 2 MB already there\n",
        f"  manifest 127.0.0.1:5000/a:v1 {D2}\n",
    )


def test_plain_transfer_lines(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    plain = p.PlainTransfer(clock=clock)
    plain(r.BlobStarted(D1, 10 * MB, "x", "pull"))
    plain(r.BlobProgress(D1, 5 * MB, 10 * MB))
    clock.now += 0.001
    plain(r.BlobDone(D1, 10 * MB, 10 * MB))  # too short a time for a rate
    assert capsys.readouterr().err == f"  blob {D1[7:19]} 10 MB done in 0.00s\n"


def test_delivery_rows_follow_the_bytes_per_host() -> None:
    """A host's row moves with HostBytes as they stream (it stayed at 0 B, then jumped), with
    the host's total, speed and ETA; a finished host leaves one line."""
    clock, c = Clock(), console()
    run = p.RichRunProgress(c, clock)
    run(e.PhaseStarted("deliver", "Deliver the rootfs", ("10.0.0.1", "10.0.0.2")))
    for host in ("10.0.0.1", "10.0.0.2"):
        run(e.StepStarted("deliver", host, "rootfs", "rootfs of demo"))
        run(e.HostBytes(host, 0, 200 * MB))
    for i in range(1, 11):
        clock.now += 0.1
        run(e.HostBytes("10.0.0.1", i * 10 * MB, 200 * MB))
        run(e.HostBytes("10.0.0.2", i * 5 * MB, 200 * MB))
    frame = run.bars.frame()
    one = next(line for line in frame.splitlines() if "10.0.0.1" in line)
    two = next(line for line in frame.splitlines() if "10.0.0.2" in line)
    assert "100 MB/200 MB" in one and "100 MB/s" in one and "eta 0:01" in one, frame
    assert "50 MB/200 MB" in two and "50 MB/s" in two and "eta 0:03" in two, frame
    run(e.HostBytes("10.0.0.1", 200 * MB, 200 * MB))
    run(e.StepFinished("deliver", "10.0.0.1", "rootfs", "rootfs of demo", 2.0))
    frame = run.bars.frame()
    assert "10.0.0.1  deliver: done" in frame and "200 MB/200 MB" not in frame
    run(e.StepFailed("deliver", "10.0.0.2", "rootfs", "connection lost"))
    assert "10.0.0.2  deliver: FAILED" in run.bars.frame()
    run.close()
    run.close()  # the cluster commands close before their report and again on exit
    assert in_order(
        printed(c),
        "== deliver: Deliver the rootfs\n",
        "  10.0.0.1  rootfs: 200 MB sent in 2.00s (100 MB/s)\n",
        "  10.0.0.2  rootfs: FAILED: connection lost\n",
    )


def test_plain_run_lines_count_the_streamed_bytes() -> None:
    runner = CliRunner()
    with runner.isolation() as (_, err, _):
        plain = p.PlainRunProgress()
        plain(e.PhaseStarted("deliver", "Deliver the rootfs", ("h1",)))
        plain(e.HostBytes("h1", 3 * MB, 9 * MB))
        plain(e.HostBytes("h1", 9 * MB, 9 * MB))
        plain(e.StepFinished("deliver", "h1", "rootfs", "rootfs", 1.5))
        text = err.getvalue().decode()
    assert text == "== deliver: Deliver the rootfs (1 host(s))\n  h1  rootfs: done in 1.50s, 9 MB sent\n"


def test_meter_window_and_stall() -> None:
    meter = bars_mod.Meter(0.0)
    assert meter.rate(0.1) is None
    for t in range(1, 21):  # 10 MB/s for 20 s
        meter.add(float(t), t * 10 * MB)
    assert meter.rate(20.0) == pytest.approx(10 * MB, rel=0.01)
    assert meter.samples[0][0] >= 20.0 - bars_mod.RATE_WINDOW_S - 1  # old samples dropped
    assert meter.rate(40.0) == 0  # a stall: the rate falls


def test_log_records_go_through_the_live_console() -> None:
    """`-d` log lines written straight to stderr tore the live frames; while bars draw, the
    root logger's stderr handler writes through the console, and gets its stream back after."""
    import logging

    c = console()
    handler = logging.StreamHandler(c.file)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        swapped = bars_mod.route_logs(c)
        assert [h for h, _ in swapped] == [handler]
        logging.getLogger("urllib3.connectionpool").warning("GET /v2/ 200")
        assert handler.stream is not c.file
        for h, stream in swapped:
            h.setStream(stream)
        assert handler.stream is c.file
    finally:
        root.removeHandler(handler)
    assert "GET /v2/ 200\n" in printed(c)


def test_a_run_pulling_its_image_shows_the_blobs_on_its_own_display() -> None:
    """One live display per command: `run` of an image not in the store draws the pull's blob
    bars on the run's display (it pulled silently)."""
    clock, c = Clock(), console()
    run = p.RichRunProgress(c, clock)
    run.registry_events(r.BlobStarted(D1, 10 * MB, "x", "pull"))
    run.registry_events(r.BlobProgress(D1, 5 * MB, 10 * MB))
    assert "pulling a1a1a1a1a1a1" in run.bars.frame() and "5 MB/10 MB" in run.bars.frame()
    run.registry_events(r.BlobDone(D1, 10 * MB, 10 * MB))
    run(e.PhaseStarted("check", "Check hosts", ("10.0.0.1",)))
    assert "10.0.0.1  check: ..." in run.bars.frame()
    run.close()
    assert in_order(printed(c), f"  blob {D1[7:19]} 10 MB done in 0.00s\n", "== check: Check hosts\n")
    assert isinstance(p.PlainRunProgress().registry_events, p.PlainTransfer)


def test_a_build_pulling_its_base_shows_the_blobs() -> None:
    """FROM of an image the store lacks pulled silently; its blobs now show on the build's
    display, and as plain lines off a terminal."""
    clock, c = Clock(), console()
    build = p.RichBuildProgress(c, clock)
    build.pull(r.BlobStarted(D1, 10 * MB, "x", "pull"))  # the CLI wires the build's puller here
    build.pull(r.BlobProgress(D1, 4 * MB, 10 * MB))
    assert "pulling a1a1a1a1a1a1" in build.bars.frame() and "4 MB/10 MB" in build.bars.frame()
    build.pull(r.BlobDone(D1, 10 * MB, 10 * MB))
    build(b.StepStarted("linux/amd64", 1, 1, "COPY a /"))
    build.close()
    assert in_order(printed(c), f"  blob {D1[7:19]} 10 MB done in 0.00s\n", "STEP 1/1: COPY a /\n")
    runner = CliRunner()
    with runner.isolation() as (_, err, _):
        plain = p.PlainBuildProgress()
        plain.pull(r.BlobSkipped(D1, 10 * MB))
        p.PlainBuildProgress(quiet=True).pull(r.BlobSkipped(D2, MB))
        text = err.getvalue().decode()
    assert text == f"  blob {D1[7:19]} 10 MB already there\n"
