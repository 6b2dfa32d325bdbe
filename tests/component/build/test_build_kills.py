"""A build stopped during RUN, by a signal or by SIGKILL, leaves nothing running, mounted or
half-written (issue 9, items 2 and 3), and RUN's chroot isolation.

Each test starts a real `sealer build` whose RUN leaves processes behind on purpose (one in
the RUN's session, one that escapes it with setsid but keeps its cwd in the rootfs), kills the
build, and checks processes (/proc), mounts (/proc/self/mountinfo) and the store's temp dirs.
A finalizer kills what a failed test left (only the pids the RUN wrote down) and unmounts it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder._fs import atomic_dir, remove_tree
from builder._reclaim import mounts_below
from builder.diffdirs import ensure_diff_dir
from builder.errors import PathBusy
from builder.store.layout import Store
from tests.validate import assert_store_ok, validate_image

WAIT_S = 30.0


def sealer(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def wait_for(predicate: object, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


class Lingering:
    """A build whose RUN leaves two processes: one in its session, one setsid'd away."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        self.pids_dir = tmp_path / "pids"
        self.pids_dir.mkdir()
        self.ctx = tmp_path / "ctx"
        self.ctx.mkdir()
        (self.ctx / "f").write_text("x\n")
        p = self.pids_dir
        (self.ctx / "Kubefile").write_text(
            "FROM scratch\nCOPY f f\n"
            f"RUN sleep 300 & echo $! > {p}/in-session; setsid sleep 301 & "
            f"echo $! > {p}/escaped; echo $$ > {p}/leader; wait\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.proc = sealer(self.root, "build", "-q", "-t", "kill/me:v1", str(self.ctx))
        names = ("in-session", "escaped", "leader")
        wait_for(lambda: all((self.pids_dir / n).is_file() for n in names), "the RUN to start")
        wait_for(lambda: self.pids() and all(is_alive(p) for p in self.pids()), "the RUN's processes")
        return self.proc

    def pids(self) -> list[int]:
        out = []
        for path in self.pids_dir.iterdir():
            with contextlib.suppress(ValueError):
                out.append(int(path.read_text()))
        return out

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.communicate()
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for point in sorted(mounts_below(str(self.root.resolve())), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture
def lingering(tmp_path: Path) -> Iterator[Lingering]:
    build = Lingering(tmp_path)
    try:
        yield build
    finally:
        build.cleanup()


def assert_nothing_left(build: Lingering) -> None:
    wait_for(lambda: not any(is_alive(p) for p in build.pids()), "the RUN's processes to die", 10)
    assert mounts_below(str(build.root.resolve())) == []
    assert list((build.root / "tmp").iterdir()) == []
    assert_store_ok(Store.open(build.root, sweep=False))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_during_run_stops_it_and_unmounts(lingering: Lingering, signum: int) -> None:
    proc = lingering.start()
    assert mounts_below(str(lingering.root.resolve())), "the RUN's rootfs should be mounted"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 128 + signum
    lines = err.decode().strip().splitlines()
    assert lines == [
        "error: interrupted"
        if signum == signal.SIGINT
        else f"error: stopped by {signal.Signals(signum).name}"
    ]
    assert_nothing_left(lingering)
    assert Store.open(lingering.root).images() == []


def test_background_processes_end_with_their_run(tmp_path: Path) -> None:
    """`RUN server &` ends when its shell does (as a container's RUN): the build does not wait
    on the output pipe the background processes hold, and they do not outlive the step."""
    pids = tmp_path / "pids"
    pids.mkdir()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Kubefile").write_text(
        f"FROM scratch\nRUN sleep 300 & echo $! > {pids}/a; setsid sleep 301 & echo $! > {pids}/b; echo ok > f\n"
    )
    root = tmp_path / "root"
    proc = sealer(root, "build", "-q", "-t", "bg/ends:v1", str(ctx))
    try:
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        for path in pids.iterdir():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(path.read_text()), signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    wait_for(
        lambda: not any(is_alive(int(p.read_text())) for p in pids.iterdir()), "the background processes", 5
    )
    assert mounts_below(str(root.resolve())) == []
    validate_image(Store.open(root), "bg/ends:v1")


def test_sigkill_during_run_is_undone_by_the_next_command(lingering: Lingering) -> None:
    proc = lingering.start()
    proc.kill()
    proc.communicate(timeout=WAIT_S)
    # What a kill -9 leaves: the escaped process still runs in the mounted rootfs.
    escaped = int((lingering.pids_dir / "escaped").read_text())
    assert is_alive(escaped)
    assert mounts_below(str(lingering.root.resolve()))
    # Any command that opens the store finds the dead build's leftovers and undoes them.
    images = sealer(lingering.root, "images")
    _, err = images.communicate(timeout=WAIT_S)
    assert images.returncode == 0, err.decode()
    assert err == b""
    assert_nothing_left(lingering)
    pruned = sealer(lingering.root, "prune")
    assert pruned.communicate(timeout=WAIT_S)[1] == b"" and pruned.returncode == 0


def test_a_busy_tree_is_a_one_line_error(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "mnt").mkdir(parents=True)
    (tree / "file").write_text("x")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(tree / "mnt")], check=True)
    try:
        (tree / "mnt" / "inside").write_text("y")
        with pytest.raises(PathBusy) as err:
            remove_tree(tree)
        assert "\n" not in err.value.message and str(tree / "mnt") in err.value.message
    finally:
        subprocess.run(["umount", "-l", str(tree / "mnt")], check=False)
    remove_tree(tree)
    assert not tree.exists()


# -- item 3: temp entries of killed processes ------------------------------------------------

_HOLD_STAGING = """
import sys, time
from builder._fs import atomic_dir, atomic_file
from pathlib import Path
root = Path(sys.argv[1])
with atomic_dir(root / "overlay2" / ("ab" * 32)) as staging:
    (staging / "diff").mkdir()
    (staging / "diff" / "big").write_bytes(b"0" * (1 << 20))
    with atomic_file(root / "oci" / "index.json") as f:
        f.write(b"half")
        print("ready", flush=True)
        time.sleep(300)
"""


def test_killed_unpack_and_index_write_are_reclaimed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    Store.open(root)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_STAGING, str(root)], stdout=subprocess.PIPE, cwd=Path.cwd()
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
        staged = [p.name for p in (root / "overlay2").iterdir()]
        temps = [p.name for p in (root / "oci").iterdir() if p.name.endswith(".tmp")]
        assert len(staged) == 1 and staged[0].endswith(".tmp") and len(temps) == 1
        Store.open(root)  # a live owner's entries stay
        assert [p.name for p in (root / "overlay2").iterdir()] == staged
        assert [p.name for p in (root / "oci").iterdir() if p.name.endswith(".tmp")] == temps
    finally:
        holder.kill()
        holder.communicate()
    report = sealer(root, "fsck")
    out, _ = report.communicate(timeout=WAIT_S)
    assert report.returncode == 1 and b"leftovers: 2 temp entries" in out  # read-only: reports
    Store.open(root)
    assert list((root / "overlay2").iterdir()) == []
    assert [p.name for p in (root / "oci").iterdir() if p.name.endswith(".tmp")] == []
    assert_store_ok(Store.open(root))


def test_atomic_dir_keeps_a_concurrent_sweep_off(tmp_path: Path) -> None:
    parent = tmp_path / "overlay2"
    with atomic_dir(parent / "layer") as staging:
        (staging / "f").write_text("x")
        Store(tmp_path).sweep()  # another process's sweep would see a locked staging dir
        assert staging.is_dir()
    assert (parent / "layer" / "f").read_text() == "x"


# -- RUN isolation ---------------------------------------------------------------------------


def tiny_rootfs(ctx: Path) -> None:
    """/bin/sh (dash) and the libraries it links, nothing else."""
    rootfs = ctx / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2("/bin/dash", rootfs / "bin" / "sh")
    ldd = subprocess.run(["ldd", "/bin/dash"], capture_output=True, text=True, check=True).stdout
    for lib in (w for w in ldd.split() if w.startswith("/")):
        dest = rootfs / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest)


def test_chroot_isolation_sees_only_the_image(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    tiny_rootfs(ctx)
    (ctx / "Kubefile").write_text("FROM scratch\nCOPY rootfs /\nRUN echo $$ > /pid; echo /* > /listing\n")
    root = tmp_path / "root"
    proc = sealer(root, "build", "-q", "--isolation", "chroot", "-t", "iso/chroot:v1", str(ctx))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    store = Store.open(root)
    validate_image(store, "iso/chroot:v1")
    manifest = store.read_manifest(store.resolve("iso/chroot:v1"))
    config = store.read_config(manifest.config)
    diff = ensure_diff_dir(store, manifest.layers[-1], config.diff_ids[-1])
    assert (diff / "pid").read_text() == "1\n"  # the first process of its own PID namespace
    listing = (diff / "listing").read_text().split()
    assert "/bin" in listing and "/pid" in listing
    assert "/usr" not in listing and "/etc" not in listing  # the host's files are out of sight
    assert not (diff / "proc").exists()  # nothing created in the layer for the mount


def test_chroot_isolation_without_a_shell_is_one_line(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("x")
    (ctx / "Kubefile").write_text("FROM scratch\nCOPY f f\nRUN echo hi\n")
    proc = sealer(tmp_path / "root", "build", "-q", "--isolation", "chroot", "-t", "iso/none:v1", str(ctx))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    first = err.decode().splitlines()[0]
    assert first.startswith("error: ") and "Kubefile:3:1" in first and "/bin/sh" in first


def test_sweep_leaves_a_process_that_only_sits_in_a_dead_dir(tmp_path: Path) -> None:
    """Only a RUN's sessions and processes inside its mounts are killed, not a shell cd'ed there."""
    store = Store.open(tmp_path / "root")
    dead = store.tmp_dir / "proc-999999-dead"
    (dead / "build-x").mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"], cwd=dead / "build-x")
    try:
        Store.open(tmp_path / "root")
        assert not dead.exists()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
