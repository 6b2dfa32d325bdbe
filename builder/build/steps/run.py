"""RUN: a command on the build host, in the image's merged rootfs.

The command runs with `/bin/sh -c` (shell form) or directly (exec form), its working directory
at the merged rootfs and an environment of the built-ins, ARGs and ENVs only (nothing leaks in
from the caller's environment but PATH, HOME and proxy settings, so builds repeat). Output is
streamed line by line to the caller and its tail kept for the error.
"""

from __future__ import annotations

import collections
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from builder.errors import RunStepError

_TAIL_LINES = 20
_PASSTHROUGH = (
    "PATH",
    "HOME",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run_command(
    command: str | tuple[str, ...],
    *,
    cwd: Path,
    env: tuple[tuple[str, str], ...],
    on_line: Callable[[str], None],
    step_label: str,
) -> None:
    """Run one RUN command; raise RunStepError with its status and output tail on failure."""
    environ = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
    environ.setdefault("PATH", _DEFAULT_PATH)
    environ.update(env)
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as err:
        raise RunStepError(
            f"{step_label}: cannot start {argv[0]!r}: {err.strerror}", status=127, output_tail=""
        ) from None
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            on_line(line)
    finally:
        status = proc.wait()
    if status != 0:
        output = "\n".join(tail)
        raise RunStepError(
            f"{step_label} failed with exit code {status}" + (f": {tail[-1]}" if tail else ""),
            status=status,
            output_tail=output,
            hint="the last lines of its output are shown above" if tail else None,
        )
