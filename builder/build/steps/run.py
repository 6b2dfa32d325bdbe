"""RUN: a command on the build host, in the image's merged rootfs.

The command runs with `/bin/sh -c` (shell form) or directly (exec form), its working directory
at the merged rootfs and an environment of the built-ins, ARGs and ENVs only (nothing leaks in
from the caller's environment but PATH, HOME and proxy settings, so builds repeat). Output is
streamed line by line to the caller and its tail kept for the error.

The command runs in a session of its own (so a terminal's ^C reaches sealer, which stops it);
every process left in that session is killed when the command ends, when the build is
interrupted (SIGINT, SIGTERM, SIGHUP) and, through the session marker `builder._reclaim` reads,
by the next sealer command if the build was killed outright. The session leader also dies
with sealer (PR_SET_PDEATHSIG).

Isolation. `none` (the default, as sealer and buildah's chroot-less RUN): the command runs as
the build's user on the build host, with the host's tools, in the rootfs dir. `chroot`: in new
mount and PID namespaces (`unshare`), chrooted into the rootfs, so it sees only the image's
files, cannot signal host processes, and everything it started dies with it; the image must
ship /bin/sh (or the exec form's program), and it needs root.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from builder._reclaim import record_session, stop_processes_in
from builder.errors import RunStepError

Isolation = Literal["none", "chroot"]
ISOLATIONS: tuple[Isolation, ...] = ("none", "chroot")

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
_PR_SET_PDEATHSIG = 1
_STOP_GRACE_S = 2.0


def run_command(
    command: str | tuple[str, ...],
    *,
    cwd: Path,
    env: tuple[tuple[str, str], ...],
    on_line: Callable[[str], None],
    step_label: str,
    isolation: Isolation = "none",
    session_file: Path | None = None,
) -> None:
    """Run one RUN command; raise RunStepError with its status and output tail on failure.

    `session_file`, when given, records the command's session for `builder._reclaim`.
    """
    environ = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
    environ.setdefault("PATH", _DEFAULT_PATH)
    environ.update(env)
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    if isolation == "chroot":
        argv = _chroot_argv(argv, cwd, step_label)
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    session: _Session | None = None
    try:
        proc = _start(argv, cwd, environ, step_label)
        session = _Session(proc, cwd)
        if session_file is not None:
            record_session(session_file, proc.pid)
        assert proc.stdout is not None
        with proc.stdout:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                tail.append(line)
                on_line(line)
        status = session.reap()
    except BaseException:
        # Interrupted (^C, SIGTERM, SIGHUP raised in this thread) or the sink failed: stop the
        # command's whole session before the caller unmounts the rootfs under it. A signal
        # that lands inside Popen, once the child runs, leaves no `session`: the child and its
        # children are then found by their working directory, the rootfs.
        if session is not None:
            session.stop()
        stop_processes_in(cwd)
        raise
    if session_file is not None:
        with contextlib.suppress(FileNotFoundError):
            session_file.unlink()
    if status != 0:
        output = "\n".join(tail)
        if isolation == "chroot" and status in (1, 127) and tail and tail[-1].startswith("unshare:"):
            raise RunStepError(
                f"{step_label}: --isolation chroot failed: {tail[-1]}",
                status=status,
                output_tail=output,
                hint="chroot isolation needs root and a kernel that allows new namespaces; "
                "use --isolation none",
            )
        raise RunStepError(
            f"{step_label} failed with exit code {status}" + (f": {tail[-1]}" if tail else ""),
            status=status,
            output_tail=output,
            hint="the last lines of its output are shown above" if tail else None,
        )


def _start(argv: list[str], cwd: Path, environ: dict[str, str], step_label: str) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as err:
        raise RunStepError(
            f"{step_label}: cannot start {argv[0]!r}: {err.strerror}", status=127, output_tail=""
        ) from None


def _chroot_argv(argv: list[str], rootfs: Path, step_label: str) -> list[str]:
    program = argv[0]
    if not os.path.lexists(rootfs / program.lstrip("/")) and "/" in program:
        raise RunStepError(
            f"{step_label}: --isolation chroot runs {program} inside the image, which has none",
            status=127,
            output_tail="",
            hint="add a shell to the image (a base with /bin/sh) or build with --isolation none",
        )
    options = ["--mount", "--pid", "--fork", "--kill-child"]
    if (rootfs / "proc").is_dir():  # never create /proc in the layer just to mount it
        options.append("--mount-proc")
    return ["unshare", *options, f"--root={rootfs}", "--wd=/", *argv]


def _die_with_parent() -> None:
    # In the child before exec: the session leader gets SIGKILL if sealer dies (kill -9 too).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _kill_session(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _Session:
    """The command's session, ended (SIGKILL to all of it) as soon as its leader exits.

    As docker ends a RUN's container with its main process: `RUN server &` does not keep the
    build waiting for the output pipe its background child still holds. A thread waits for the
    leader with WNOWAIT, so the leader stays an unreaped zombie, and its pid (the group's id)
    cannot be reused, until the kill is done; only `reap` reaps it, after that thread.
    """

    def __init__(self, proc: subprocess.Popen[bytes], rootfs: Path) -> None:
        self.proc = proc
        self.rootfs = rootfs
        self._watcher = threading.Thread(target=self._end_with_leader, name="run-session", daemon=True)
        self._watcher.start()

    def _end_with_leader(self) -> None:
        try:
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # pragma: no cover - only `reap` reaps, after this thread
            return
        _kill_session(self.proc.pid)
        stop_processes_in(self.rootfs)  # those that left the session (setsid) but not the rootfs

    def reap(self) -> int:
        """The leader's exit status, once its session has been ended."""
        self._watcher.join()
        return self.proc.wait()

    def stop(self) -> None:
        """SIGTERM the session, SIGKILL it after a short grace, and reap the leader."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self._watcher.join(_STOP_GRACE_S)
        if self._watcher.is_alive():
            _kill_session(self.proc.pid)
        self.reap()
