"""The rich machinery under `progress.py`: one `Progress` per command with byte bars (bytes
done of the total, speed, ETA), lines printed above it through its console, log records routed
the same way while it draws.

Speed and ETA come from `Meter`: bytes over the last RATE_WINDOW_S seconds, shown only once a
bar has been measured for MIN_RATE_S (rich's own estimate divides by the time between the last
two updates, which for two 4 MB chunks 10 us apart read 404 GB/s).
"""

from __future__ import annotations

import io
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from builder.cli.output import human_size

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Task

RATE_WINDOW_S = 5.0
MIN_RATE_S = 0.5
Clock = Callable[[], float]


class Meter:
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


def rate_text(n_bytes: int, seconds: float) -> str:
    """`in 1.20s (157 MB/s)`, the rate left out when the time is too short to mean anything."""
    rate = f" ({human_size(n_bytes / seconds)}/s)" if seconds >= MIN_RATE_S and n_bytes else ""
    return f"in {seconds:.2f}s{rate}"


def _eta_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"eta {hours}:{minutes:02d}:{secs:02d}" if hours else f"eta {minutes}:{secs:02d}"


class Bars:
    """One rich Progress with byte bars; `console` and `clock` are for tests (a recording
    Console, a fake clock: no refresh thread then)."""

    def __init__(self, console: Console | None = None, clock: Clock | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        self.clock = clock or time.monotonic
        self.meters: dict[Any, Meter] = {}
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
        self._logs = route_logs(self.console) if console is None else []

    def add(self, description: str, total: int | None, *, with_bytes: bool = True) -> Any:
        task = self.progress.add_task(description, total=total, bytes=with_bytes)
        self.meters[task] = Meter(self.clock())
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


def route_logs(console: Console) -> list[tuple[logging.StreamHandler[Any], Any]]:
    """Log records (`-d`) go through the live console while it draws, above the bars; a
    handler writing straight to stderr would tear the frames. Returns what to restore."""
    from rich.file_proxy import FileProxy

    swapped = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is console.file:
            swapped.append((handler, handler.setStream(FileProxy(console, handler.stream))))
    return swapped
