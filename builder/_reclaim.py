"""Undo what a dead sealer process left running in its temp dir: processes and mounts.

A build killed with SIGKILL during RUN leaves the RUN's processes running (they live in a
session of their own) with their working directory in an overlay mount under the build's temp
dir. Removing that dir would fail (EBUSY) or, worse, delete through the live mount. So before a
dead owner's dir is removed (`builder._fs.sweep_temps(before_remove=...)`), `undo_leftovers`
kills the processes of every session recorded in it (`record_session`, written when the RUN
starts) and every process whose cwd or root is inside a mount below it, then detaches those
mounts, deepest first. Linux only (reads /proc).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from pathlib import Path

from builder.errors import PathBusy

SESSION_SUFFIX = ".session"
_MNT_DETACH = 2
_KILL_WAIT_S = 5.0


def record_session(path: Path, pid: int) -> None:
    """Note that `pid` leads a session (a RUN step) whose processes belong to this temp dir."""
    path.write_text(f"{pid} {_start_time(pid) or 0}\n")


def undo_leftovers(directory: str | os.PathLike[str]) -> None:
    """Kill what a dead owner's RUN left running and unmount what is below `directory`.

    Killed: the sessions recorded in `directory`, and processes whose cwd or root is inside a
    mount below it (a RUN's rootfs; a process that left the session with setsid stays there).
    A shell merely cd'ed into the temp dir elsewhere is left alone: removal does not need it gone.
    """
    root = os.path.realpath(directory)
    mountpoints = sorted(mounts_below(root), key=len, reverse=True)
    _kill_all(mountpoints, _recorded_sessions(root))
    for mountpoint in mountpoints:
        _detach(mountpoint)


def stop_processes_in(directory: str | os.PathLike[str]) -> None:
    """Kill every process whose cwd or root is in `directory` (what a RUN left in its rootfs,
    also after leaving its session with setsid), and wait (bounded) until they are gone."""
    _kill_all([os.path.realpath(directory)], {})


def _kill_all(roots: list[str], sessions: dict[int, int]) -> None:
    if not roots and not sessions:
        return
    victims = [pid for pid in _pids() if pid != os.getpid() and _belongs(pid, roots, sessions)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT_S
    while victims and time.monotonic() < deadline:
        victims = [pid for pid in victims if _is_running(pid)]
        if victims:
            time.sleep(0.02)


def mounts_below(root: str) -> list[str]:
    """Mount points of this mount namespace at or below `root`."""
    prefix = root.rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) < 5:
                    continue
                point = _unescape(fields[4])
                if point == root or point.startswith(prefix):
                    found.append(point)
    except FileNotFoundError:
        return []
    return found


def _recorded_sessions(root: str) -> dict[int, int]:
    """session id -> start time of its leader, from the markers at the top of `root`."""
    out: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if not entry.name.endswith(SESSION_SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError, ValueError):
                pid_text, start_text = Path(entry.path).read_text().split()[:2]
                out[int(pid_text)] = int(start_text)
    return out


def _belongs(pid: int, roots: list[str], sessions: dict[int, int]) -> bool:
    fields = _stat_fields(pid)
    if fields is None:
        return False
    sid, start = int(fields[3]), int(fields[19])
    # A session id is a pid; the start-time check keeps a reused number from matching.
    if sid in sessions and start >= sessions[sid]:
        return True
    for link in ("cwd", "root"):
        try:
            target = os.readlink(f"/proc/{pid}/{link}")
        except OSError:
            continue
        if any(target == root or target.startswith(root + "/") for root in roots):
            return True
    return False


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], session [3], start [19])."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].decode().split()


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _is_running(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo octal.
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _detach(mountpoint: str) -> None:
    import ctypes  # here: loading it was ~1 ms of every command's start-up (issue 16)

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(mountpoint), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not a mount (any more)
            raise PathBusy(
                f"cannot unmount {mountpoint}, left by a dead sealer process: {os.strerror(err)}",
                hint=f"unmount it as root (umount -l {mountpoint}), then run `sealer fsck --repair`",
            )
