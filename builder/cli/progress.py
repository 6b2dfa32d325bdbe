"""Progress on stderr for build, push/pull and cluster runs: rich bars on a terminal, plain lines
otherwise (CI logs, pipes). Only this module (and `_bars.py` under it) draws; the libraries emit
events.

On a terminal a command has one rich `Progress` (it is the command's one Live display) with a
bar per layer in flight (build: tar bytes; push/pull, and a build's or a run's pull: blob
bytes; run: bytes delivered per host), each with bytes, speed and ETA. Every line printed
meanwhile goes through that Progress's console, so it lands above the bars instead of between
two frames. Kept apart from `output.py` (tables, errors) to keep both modules small; the event
types come from the libraries' `events` modules only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from builder.cli._bars import Bars, Clock, rate_text
from builder.cli.output import human_size
from builder.registry import events as r

if TYPE_CHECKING:
    from rich.console import Console

    from builder.build import events as b
    from builder.runtime import events as run_events

# The build's and the run's event modules are imported where their events are handled: push
# and pull need neither (~6 ms of their start-up, issue 16).


# --- build ---------------------------------------------------------------------------------------


def _step_line(event: b.StepStarted) -> str:
    return f"[{event.platform}] STEP {event.index}/{event.total}: {event.text}"


def _layer_line(event: b.StepFinished) -> str:
    how = "cached" if event.cached else f"{event.seconds:.2f}s"
    return f"  --> layer {(event.layer_digest or '')[7:19]} {human_size(event.layer_size or 0)} ({how})"


def _built_line(event: b.ImageBuilt) -> str:
    return f"built {event.name or '(untagged)'} {event.digest} in {event.seconds:.2f}s"


class PlainBuildProgress:
    """One line per step start and end; RUN output indented. For logs and pipes."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.pull = PlainTransfer(quiet=quiet)  # the build's puller's events (cli/build.py)

    def __call__(self, event: b.BuildEvent) -> None:
        from builder.build import events as b

        if self.quiet and not isinstance(event, b.BuildWarning):
            return
        if isinstance(event, b.StepStarted):
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


class RichBuildProgress:
    """A bar per step that writes a layer (tar bytes, speed, ETA) under the lines of the steps."""

    def __init__(self, console: Console | None = None, clock: Clock | None = None) -> None:
        self.bars = Bars(console, clock)
        self.tasks: dict[tuple[str, int], Any] = {}
        self.labels: dict[tuple[str, int], str] = {}
        self.pull = RichTransfer(bars=self.bars)  # the build's puller's events (cli/build.py)

    def __call__(self, event: b.BuildEvent) -> None:
        from builder.build import events as b

        bars = self.bars
        if isinstance(event, b.StepStarted):
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


def build_progress(*, quiet: bool) -> PlainBuildProgress | RichBuildProgress:
    if not quiet and sys.stderr.isatty():
        return RichBuildProgress()
    return PlainBuildProgress(quiet=quiet)


# --- push and pull -------------------------------------------------------------------------------


def _transfer_line(event: r.RegistryEvent, seconds: float | None = None) -> str | None:
    """The line a finished blob, a manifest or a retry leaves; None for in-flight events."""
    if isinstance(event, r.BlobDone):
        timing = f" {rate_text(event.transferred, seconds)}" if seconds is not None else ""
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
        self, console: Console | None = None, clock: Clock | None = None, *, bars: Bars | None = None
    ) -> None:
        self.bars = bars or Bars(console, clock)
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
        from builder.runtime import events as e

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
        self.bars = Bars(console, clock)
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
        from builder.runtime import events as e

        bars = self.bars
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
                    f"  {event.host}  {event.step}: {human_size(sent)} sent {rate_text(sent, event.seconds)}"
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
