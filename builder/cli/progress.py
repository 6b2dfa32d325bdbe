"""Progress on stderr for build, push/pull and cluster runs: rich bars on a terminal, plain lines
otherwise (CI logs, pipes). Only this module draws; the libraries emit events.

On a terminal a command has one rich `Progress` (it is the command's one Live display) with a
bar per layer in flight (build: tar bytes; push/pull: blob bytes; run: bytes delivered per host),
each with bytes, speed and ETA. Every line printed meanwhile goes through that Progress's
console, so it lands above the bars instead of between two frames. Speed and ETA come from
`_Meter`: bytes over the last RATE_WINDOW_S seconds, shown only once a bar has been measured for
MIN_RATE_S (rich's own estimate divides by the time between the last two updates, which for two
4 MB chunks 10 us apart read 404 GB/s). Kept apart from `output.py` (tables, errors) to keep
both modules small; the event types come from the libraries' `events` modules only. About 420
lines: three pairs of renderers (build, transfer, run) on one shared bar class.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from builder.build import events as b
from builder.cli.output import human_size
from builder.registry import events as r
from builder.runtime import events as run_events

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Task

RATE_WINDOW_S = 5.0
MIN_RATE_S = 0.5
Clock = Callable[[], float]


class _Meter:
    """Bytes per second over the last RATE_WINDOW_S seconds, measured up to `now` (so a stalled
    transfer's rate falls); None until MIN_RATE_S have been measured."""

    def __init__(self, now: float) -> None:
        self.samples: deque[tuple[float, int]] = deque([(now, 0)])

    def add(self, now: float, done: int) -> None:
        self.samples.append((now, done))
        while len(self.samples) > 2 and self.samples[1][0] <= now - RATE_WINDOW_S:
            self.samples.popleft()

    def rate(self, now: float) -> float | None:
        if now - self.samples[0][0] < MIN_RATE_S:
            return None
        base = self.samples[0]  # the last sample at or before the window's start
        for sample in self.samples:
            if sample[0] > now - RATE_WINDOW_S:
                break
            base = sample
        span = now - base[0]
        return max(0, self.samples[-1][1] - base[1]) / span if span > 0 else None


def _rate_text(n_bytes: int, seconds: float) -> str:
    """`in 1.20s (157 MB/s)`, the rate left out when the time is too short to mean anything."""
    rate = f" ({human_size(n_bytes / seconds)}/s)" if seconds >= MIN_RATE_S and n_bytes else ""
    return f"in {seconds:.2f}s{rate}"


def _eta_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"eta {hours}:{minutes:02d}:{secs:02d}" if hours else f"eta {minutes}:{secs:02d}"


class _Bars:
    """One rich Progress with byte bars; `console` and `clock` are for tests (a recording
    Console, a fake clock: no refresh thread then)."""

    def __init__(self, console: Console | None = None, clock: Clock | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        self.clock = clock or time.monotonic
        self.meters: dict[Any, _Meter] = {}
        meters, now = self.meters, self.clock

        def has_bytes(task: Task) -> bool:
            return bool(task.fields.get("bytes", True))

        class Bar(BarColumn):
            def render(self, task: Task) -> Any:
                return super().render(task) if has_bytes(task) else Text("")

        class Bytes(ProgressColumn):
            def render(self, task: Task) -> Text:
                if not has_bytes(task):
                    return Text("")
                done = human_size(task.completed)
                return Text(f"{done}/{human_size(task.total)}" if task.total is not None else done)

        class Speed(ProgressColumn):
            def render(self, task: Task) -> Text:
                meter = meters.get(task.id)
                rate = meter.rate(now()) if meter is not None and has_bytes(task) else None
                return Text(f"{human_size(rate)}/s" if rate is not None else "")

        class Eta(ProgressColumn):
            def render(self, task: Task) -> Text:
                meter = meters.get(task.id)
                rate = meter.rate(now()) if meter is not None and has_bytes(task) else None
                if not rate or task.total is None:
                    return Text("")
                return Text(_eta_text(max(0.0, task.total - task.completed) / rate))

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            Bar(bar_width=30),
            Bytes(),
            Speed(),
            Eta(),
            console=self.console,
            transient=True,
            get_time=self.clock,
            auto_refresh=console is None,
        )
        self.progress.start()
        self._logs = _route_logs(self.console) if console is None else []

    def add(self, description: str, total: int | None, *, with_bytes: bool = True) -> Any:
        task = self.progress.add_task(description, total=total, bytes=with_bytes)
        self.meters[task] = _Meter(self.clock())
        self.progress.refresh()  # else the next printed line is followed by a stale frame
        return task

    def advance_to(self, task: Any, done: int, total: int | None) -> None:
        """`done` bytes of `total` so far (a running total, never a delta); a total that proves
        too small (an estimate) grows to what was done."""
        self.meters[task].add(self.clock(), done)
        if total is not None:
            total = max(total, done)
        self.progress.update(task, completed=done, total=total)

    def remove(self, task: Any) -> None:
        self.meters.pop(task, None)
        self.progress.remove_task(task)
        self.progress.refresh()

    def print(self, text: str, *, style: str | None = None) -> None:
        from rich.text import Text

        # The style on the Text, not on print(): print's style would also colour the live frame
        # that rich redraws in the same call.
        self.console.print(Text(text, style=style or ""), highlight=False, soft_wrap=True)

    def frame(self, width: int = 100) -> str:
        """The live display as text (for tests)."""
        from rich.console import Console

        out = Console(record=True, width=width, file=io.StringIO(), force_terminal=True)
        out.print(self.progress.get_renderable())
        return out.export_text()

    def close(self) -> None:
        self.progress.stop()  # idempotent: the cluster commands close before their report too
        for handler, stream in self._logs:
            handler.setStream(stream)
        self._logs = []


def _route_logs(console: Console) -> list[tuple[logging.StreamHandler[Any], Any]]:
    """Log records (`-d`) go through the live console while it draws, above the bars; a
    handler writing straight to stderr would tear the frames. Returns what to restore."""
    from rich.file_proxy import FileProxy

    swapped = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is console.file:
            swapped.append((handler, handler.setStream(FileProxy(console, handler.stream))))
    return swapped


# --- build ---------------------------------------------------------------------------------------


def _step_line(event: b.StepStarted) -> str:
    return f"[{event.platform}] STEP {event.index}/{event.total}: {event.text}"


def _layer_line(event: b.StepFinished) -> str:
    how = "cached" if event.cached else f"{event.seconds:.2f}s"
    return f"  --> layer {(event.layer_digest or '')[7:19]} {human_size(event.layer_size or 0)} ({how})"


def _built_line(event: b.ImageBuilt) -> str:
    return f"built {event.name or '(untagged)'} {event.digest} in {event.seconds:.2f}s"


class PlainProgress:
    """One line per step start and end; RUN output indented. For logs and pipes."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.pull = PlainTransfer()

    def __call__(self, event: b.BuildEvent) -> None:
        if self.quiet and not isinstance(event, b.BuildWarning):
            return
        if isinstance(event, b.PullEvent):
            self.pull(event.event)
        elif isinstance(event, b.StepStarted):
            click.echo(_step_line(event), err=True)
        elif isinstance(event, b.StepOutput):
            click.echo(f"  | {event.line}", err=True)
        elif isinstance(event, b.StepFinished) and event.layer_digest:
            click.echo(_layer_line(event), err=True)
        elif isinstance(event, b.BuildWarning):
            click.secho(f"warning: {event.message}", fg="yellow", err=True)
        elif isinstance(event, b.ImageBuilt):
            click.echo(_built_line(event), err=True)

    def close(self) -> None:
        return None


class RichProgress:
    """A bar per step that writes a layer (tar bytes, speed, ETA) under the lines of the steps."""

    def __init__(self, console: Console | None = None, clock: Clock | None = None) -> None:
        self.bars = _Bars(console, clock)
        self.tasks: dict[tuple[str, int], Any] = {}
        self.labels: dict[tuple[str, int], str] = {}
        self.pull = RichTransfer(bars=self.bars)  # a FROM image the store lacks

    def __call__(self, event: b.BuildEvent) -> None:
        bars = self.bars
        if isinstance(event, b.PullEvent):
            self.pull(event.event)
        elif isinstance(event, b.StepStarted):
            bars.print(_step_line(event), style="bold")
            self.labels[event.platform, event.index] = f"step {event.index}/{event.total}"
        elif isinstance(event, b.StepProgress):
            # A bar only for steps that move bytes; config-only steps print their line alone.
            key = (event.platform, event.index)
            if key not in self.tasks:
                self.tasks[key] = bars.add(self.labels.get(key, f"step {event.index}"), event.bytes_total)
            bars.advance_to(self.tasks[key], event.bytes_done, event.bytes_total)
        elif isinstance(event, b.StepOutput):
            bars.print(f"  | {event.line}")
        elif isinstance(event, b.StepFinished):
            task = self.tasks.pop((event.platform, event.index), None)
            if task is not None:
                bars.remove(task)
            if event.layer_digest:
                bars.print(_layer_line(event))
        elif isinstance(event, b.BuildWarning):
            bars.print(f"warning: {event.message}", style="yellow")
        elif isinstance(event, b.ImageBuilt):
            bars.print(_built_line(event))

    def close(self) -> None:
        self.bars.close()


def build_progress(*, quiet: bool) -> PlainProgress | RichProgress:
    if not quiet and sys.stderr.isatty():
        return RichProgress()
    return PlainProgress(quiet=quiet)


# --- push and pull -------------------------------------------------------------------------------


def _transfer_line(event: r.RegistryEvent, seconds: float | None = None) -> str | None:
    """The line a finished blob, a manifest or a retry leaves; None for in-flight events."""
    if isinstance(event, r.BlobDone):
        timing = f" {_rate_text(event.transferred, seconds)}" if seconds is not None else ""
        return f"  blob {event.digest[7:19]} {human_size(event.size)} done{timing}"
    if isinstance(event, r.BlobSkipped):
        return f"  blob {event.digest[7:19]} {human_size(event.size)} already there"
    if isinstance(event, r.BlobMounted):
        return f"  blob {event.digest[7:19]} {human_size(event.size)} mounted from {event.source}"
    if isinstance(event, r.ManifestDone):
        return f"  manifest {event.reference} {event.digest}"
    if isinstance(event, r.Retrying):
        return f"  retrying {event.what} in {event.delay_s:.1f}s (attempt {event.attempt}): {event.reason}"
    return None


class PlainTransfer:
    """One line per blob and manifest of a push or pull; for logs and pipes."""

    def __init__(self, *, quiet: bool = False, clock: Clock | None = None) -> None:
        self.quiet = quiet
        self.clock = clock or time.monotonic
        self.started: dict[str, float] = {}

    def __call__(self, event: r.RegistryEvent) -> None:
        if self.quiet:
            return
        if isinstance(event, r.BlobStarted):
            self.started[event.digest] = self.clock()
            return
        seconds = None
        if isinstance(event, r.BlobDone) and event.digest in self.started:
            seconds = self.clock() - self.started.pop(event.digest)
        line = _transfer_line(event, seconds)
        if line is not None:
            click.secho(line, fg="yellow" if isinstance(event, r.Retrying) else None, err=True)

    def close(self) -> None:
        return None


class RichTransfer:
    """A bar per blob in flight (bytes, speed, ETA) under the lines of finished ones; on its own
    display, or on `bars` of another (a cluster run pulling its image)."""

    def __init__(
        self, console: Console | None = None, clock: Clock | None = None, *, bars: _Bars | None = None
    ) -> None:
        self.bars = bars or _Bars(console, clock)
        self.tasks: dict[str, tuple[Any, float]] = {}

    def __call__(self, event: r.RegistryEvent) -> None:
        bars = self.bars
        if isinstance(event, r.BlobStarted):
            verb = "pushing" if event.direction == "push" else "pulling"
            task = bars.add(f"{verb} {event.digest[7:19]}", event.size)
            self.tasks[event.digest] = (task, bars.clock())
            return
        if isinstance(event, r.BlobProgress):
            found = self.tasks.get(event.digest)
            if found is not None:
                bars.advance_to(found[0], event.done, event.size)
            return
        seconds = None
        if isinstance(event, r.BlobDone | r.BlobSkipped | r.BlobMounted):
            found = self.tasks.pop(event.digest, None)
            if found is not None:
                bars.remove(found[0])
                seconds = bars.clock() - found[1]
        line = _transfer_line(event, seconds)
        if line is not None:
            bars.print(line, style="yellow" if isinstance(event, r.Retrying) else None)

    def close(self) -> None:
        self.bars.close()


def transfer_progress(*, quiet: bool) -> PlainTransfer | RichTransfer:
    if not quiet and sys.stderr.isatty():
        return RichTransfer()
    return PlainTransfer(quiet=quiet)


# --- cluster runs --------------------------------------------------------------------------------


class PlainRunProgress:
    """One line per phase and per finished step; for logs and pipes."""

    def __init__(self) -> None:
        self.bytes: dict[str, int] = {}
        self.registry_events: Callable[[r.RegistryEvent], None] = PlainTransfer()

    def __call__(self, event: run_events.RunEvent) -> None:
        e = run_events
        if isinstance(event, e.PhaseStarted):
            click.echo(f"== {event.phase}: {event.title} ({len(event.hosts)} host(s))", err=True)
        elif isinstance(event, e.HostBytes):
            self.bytes[event.host] = event.bytes_sent
        elif isinstance(event, e.StepFinished):
            if event.skipped:
                click.echo(f"  {event.host}  {event.step}: done before (journal)", err=True)
                return
            extra = f", {human_size(self.bytes.get(event.host, 0))} sent" if event.phase == "deliver" else ""
            click.echo(f"  {event.host}  {event.step}: done in {event.seconds:.2f}s{extra}", err=True)
        elif isinstance(event, e.StepFailed):
            click.secho(f"  {event.host}  {event.step}: FAILED: {event.message}", fg="red", err=True)
        elif isinstance(event, e.Notice):
            click.echo(event.message, err=True)

    def close(self) -> None:
        return None


class RichRunProgress:
    """A row per host (phase, step; during delivery a bar of the bytes sent so far, with speed
    and ETA) under the lines of phases, delivered hosts and failures."""

    def __init__(self, console: Console | None = None, clock: Clock | None = None) -> None:
        self.bars = _Bars(console, clock)
        self.rows: dict[str, tuple[Any, bool]] = {}  # host -> (task, has a byte bar)
        self.bytes: dict[str, int] = {}
        # Pulling the image, if the store lacks it: its blobs on the same display.
        self.registry_events: Callable[[r.RegistryEvent], None] = RichTransfer(bars=self.bars)

    def _row(self, host: str, text: str, *, with_bytes: bool | None = None) -> None:
        """Show `text` on the host's row; `with_bytes` True/False (re)makes it with or without
        a byte bar, None keeps what it has."""
        task, had_bytes = self.rows.get(host, (None, False))
        if task is not None and with_bytes is not None and with_bytes != had_bytes:
            self.bars.remove(task)
            task = None
        if task is None:
            keep = bool(with_bytes)
            self.rows[host] = (self.bars.add(f"{host}  {text}", None, with_bytes=keep), keep)
        else:
            self.bars.progress.update(task, description=f"{host}  {text}")

    def __call__(self, event: run_events.RunEvent) -> None:
        e, bars = run_events, self.bars
        if isinstance(event, e.PhaseStarted):
            bars.print(f"== {event.phase}: {event.title}", style="bold")
            for host in event.hosts:
                self._row(host, f"{event.phase}: ...", with_bytes=False)
        elif isinstance(event, e.StepStarted):
            self._row(event.host, f"{event.phase}: {event.description}", with_bytes=event.phase == "deliver")
        elif isinstance(event, e.HostBytes):
            self.bytes[event.host] = event.bytes_sent
            if not self.rows.get(event.host, (None, False))[1]:
                self._row(event.host, "deliver", with_bytes=True)
            bars.advance_to(self.rows[event.host][0], event.bytes_sent, event.bytes_total)
        elif isinstance(event, e.StepFinished):
            if event.phase == "deliver" and not event.skipped:
                sent = self.bytes.get(event.host, 0)
                bars.print(
                    f"  {event.host}  {event.step}: {human_size(sent)} sent {_rate_text(sent, event.seconds)}"
                )
            self._row(
                event.host, f"{event.phase}: {'done before' if event.skipped else 'done'}", with_bytes=False
            )
        elif isinstance(event, e.StepFailed):
            bars.print(f"  {event.host}  {event.step}: FAILED: {event.message}", style="red")
            self._row(event.host, f"{event.phase}: FAILED")
        elif isinstance(event, e.Notice):
            bars.print(event.message)

    def close(self) -> None:
        self.bars.close()


def run_progress(*, dry_run: bool) -> PlainRunProgress | RichRunProgress:
    if not dry_run and sys.stderr.isatty():
        return RichRunProgress()
    return PlainRunProgress()
