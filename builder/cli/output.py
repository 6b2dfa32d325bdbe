"""Everything the CLI prints: errors, tables, JSON and build progress.

Progress goes to stderr: a rich live display on a terminal (step, bytes, throughput), plain
lines otherwise (CI logs); stdout carries only results (digests, tables, JSON), so pipelines can
read it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from builder.build.events import (
    BuildEvent,
    BuildWarning,
    ImageBuilt,
    StepFinished,
    StepOutput,
    StepProgress,
    StepStarted,
)
from builder.registry.events import (
    BlobDone,
    BlobMounted,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    ManifestDone,
    RegistryEvent,
    Retrying,
)


def print_error(message: str, *, hint: str | None = None, excerpt: str | None = None) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    if excerpt:
        click.echo(excerpt.rstrip("\n"), err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)


def print_warning(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    fmt = "   ".join(f"{{:<{w}}}" for w in widths)
    click.echo(fmt.format(*headers).rstrip())
    for row in rows:
        click.echo(fmt.format(*row).rstrip())


def human_size(n: int | float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n} B"


class PlainProgress:
    """One line per step start and end; RUN output indented. For logs and pipes."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet

    def __call__(self, event: BuildEvent) -> None:
        if self.quiet and not isinstance(event, BuildWarning):
            return
        if isinstance(event, StepStarted):
            click.echo(f"[{event.platform}] STEP {event.index}/{event.total}: {event.text}", err=True)
        elif isinstance(event, StepOutput):
            click.echo(f"  | {event.line}", err=True)
        elif isinstance(event, StepFinished) and event.layer_digest:
            how = "cached" if event.cached else f"{event.seconds:.2f}s"
            size = human_size(event.layer_size or 0)
            click.echo(f"  --> layer {event.layer_digest[7:19]} {size} ({how})", err=True)
        elif isinstance(event, BuildWarning):
            click.secho(f"warning: {event.message}", fg="yellow", err=True)
        elif isinstance(event, ImageBuilt):
            click.echo(f"built {event.name or '(untagged)'} {event.digest} in {event.seconds:.2f}s", err=True)

    def close(self) -> None:
        return None


class RichProgress:
    """A live bar per running step (bytes, throughput) over a scroll of finished steps."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task: Any = None
        self.label = ""

    def __call__(self, event: BuildEvent) -> None:
        if isinstance(event, StepStarted):
            self.console.print(
                f"[bold][{event.platform}] STEP {event.index}/{event.total}:[/bold] {event.text}",
                highlight=False,
                markup=True,
            )
            self.label = f"step {event.index}/{event.total}"
        elif isinstance(event, StepProgress):
            # A bar only for steps that move bytes; config-only steps print their line alone.
            if self.task is None:
                self.task = self.progress.add_task(self.label, total=event.bytes_total)
            self.progress.update(self.task, completed=event.bytes_done, total=event.bytes_total)
        elif isinstance(event, StepOutput):
            self.console.print(f"  | {event.line}", highlight=False, markup=False)
        elif isinstance(event, StepFinished):
            if self.task is not None:
                self.progress.remove_task(self.task)
                self.task = None
            if event.layer_digest:
                how = "cached" if event.cached else f"{event.seconds:.2f}s"
                self.console.print(
                    f"  --> layer {event.layer_digest[7:19]} {human_size(event.layer_size or 0)} ({how})",
                    highlight=False,
                )
        elif isinstance(event, BuildWarning):
            self.console.print(f"[yellow]warning:[/yellow] {event.message}", highlight=False)
        elif isinstance(event, ImageBuilt):
            self.console.print(
                f"built {event.name or '(untagged)'} {event.digest} in {event.seconds:.2f}s", highlight=False
            )

    def close(self) -> None:
        self.progress.stop()


def build_progress(*, quiet: bool) -> PlainProgress | RichProgress:
    if not quiet and sys.stderr.isatty():
        return RichProgress()
    return PlainProgress(quiet=quiet)


class PlainTransfer:
    """One line per blob and manifest of a push or pull; for logs and pipes."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet

    def __call__(self, event: RegistryEvent) -> None:
        if self.quiet:
            return
        if isinstance(event, BlobDone):
            click.echo(f"  blob {event.digest[7:19]} {human_size(event.size)} done", err=True)
        elif isinstance(event, BlobSkipped):
            click.echo(f"  blob {event.digest[7:19]} {human_size(event.size)} already there", err=True)
        elif isinstance(event, BlobMounted):
            click.echo(
                f"  blob {event.digest[7:19]} {human_size(event.size)} mounted from {event.source}", err=True
            )
        elif isinstance(event, ManifestDone):
            click.echo(f"  manifest {event.reference} {event.digest}", err=True)
        elif isinstance(event, Retrying):
            click.secho(
                f"  retrying {event.what} in {event.delay_s:.1f}s (attempt {event.attempt}): {event.reason}",
                fg="yellow",
                err=True,
            )

    def close(self) -> None:
        return None


class RichTransfer:
    """A live bar per blob in flight (bytes, throughput) over lines for finished ones."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.tasks: dict[str, Any] = {}
        self.plain = PlainTransfer()

    def __call__(self, event: RegistryEvent) -> None:
        if isinstance(event, BlobStarted):
            verb = "pushing" if event.direction == "push" else "pulling"
            self.tasks[event.digest] = self.progress.add_task(
                f"{verb} {event.digest[7:19]}", total=event.size
            )
            return
        if isinstance(event, BlobProgress):
            task = self.tasks.get(event.digest)
            if task is not None:
                self.progress.update(task, completed=event.done)
            return
        if isinstance(event, BlobDone | BlobSkipped | BlobMounted):
            task = self.tasks.pop(event.digest, None)
            if task is not None:
                self.progress.remove_task(task)
        self.plain(event)

    def close(self) -> None:
        self.progress.stop()


def transfer_progress(*, quiet: bool) -> PlainTransfer | RichTransfer:
    if not quiet and sys.stderr.isatty():
        return RichTransfer()
    return PlainTransfer(quiet=quiet)
