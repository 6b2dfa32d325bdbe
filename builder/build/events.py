"""Progress events the build emits; only `cli/progress.py` turns them into text or bars.

The blobs of a pull are not build events: they are the injected puller's own (the CLI wires the
registry client's events to the same display)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepStarted:
    platform: str
    index: int
    total: int
    text: str


@dataclass(frozen=True, slots=True)
class StepProgress:
    """Bytes read from the context or the merged rootfs so far in the current step."""

    platform: str
    index: int
    bytes_done: int
    bytes_total: int | None


@dataclass(frozen=True, slots=True)
class StepOutput:
    """One line a RUN step printed."""

    platform: str
    index: int
    line: str


@dataclass(frozen=True, slots=True)
class StepFinished:
    platform: str
    index: int
    cached: bool
    layer_digest: str | None
    layer_size: int | None
    uncompressed_size: int | None
    seconds: float


@dataclass(frozen=True, slots=True)
class BuildWarning:
    message: str


@dataclass(frozen=True, slots=True)
class ImageBuilt:
    name: str
    digest: str
    platforms: tuple[str, ...]
    seconds: float


BuildEvent = StepStarted | StepProgress | StepOutput | StepFinished | BuildWarning | ImageBuilt
EventSink = Callable[[BuildEvent], None]


def ignore_events(event: BuildEvent) -> None:
    """The default sink: a library caller that wants no progress."""
