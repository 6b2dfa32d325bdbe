"""What a run tells its caller as it goes (the CLI's progress display, the tests): phases and
steps starting and ending, bytes delivered, notices. Plain frozen data; `EventSink` receives it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PhaseStarted:
    phase: str
    title: str
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PhaseFinished:
    phase: str
    seconds: float


@dataclass(frozen=True, slots=True)
class StepStarted:
    phase: str
    host: str
    step: str
    description: str


@dataclass(frozen=True, slots=True)
class StepFinished:
    phase: str
    host: str
    step: str
    description: str
    seconds: float
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class StepFailed:
    phase: str
    host: str
    step: str
    message: str


@dataclass(frozen=True, slots=True)
class HostBytes:
    """Bytes delivered to a host so far in this run, reported as they stream (a running total,
    after each write into the host has drained); `bytes_total` what the host's delivery will
    send in all, once known."""

    host: str
    bytes_sent: int
    bytes_total: int | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """A line for the user that is not a step (a warning, what a dry-run assumed)."""

    message: str


RunEvent = PhaseStarted | PhaseFinished | StepStarted | StepFinished | StepFailed | HostBytes | Notice
EventSink = Callable[[RunEvent], None]


def ignore(_: RunEvent) -> None:
    return None
