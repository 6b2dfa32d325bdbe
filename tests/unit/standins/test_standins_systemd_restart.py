"""The systemctl stand-in's Restart=, as systemd.service(5) describes it: which endings restart
under which policy, RestartSec, a SIGKILLed main process started again, `stop` never restarting
(also while a restart is pending), and the start limit (5 starts in 10 s) failing the unit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins import systemctl_zipapp, systemd


@pytest.fixture
def root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="sdr", dir="/tmp"))
    try:
        yield base
    finally:
        systemctl(base, "stop", "demo")
        shutil.rmtree(base)


def systemctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tool = root / "systemctl"
    if not tool.exists():
        systemctl_zipapp(tool)
    env = {"STANDIN_SYSTEMD_ROOT": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(tool), *args], capture_output=True, text=True, env=env, timeout=60)


def unit(root: Path, restart: str, *, restart_sec: str = "0.2", exit_code: int | None = None) -> None:
    """demo.service: counts its starts in root/starts, then sleeps (or exits with `exit_code`)."""
    script = root / "svc.sh"
    tail = f"exit {exit_code}" if exit_code is not None else "exec sleep 60"
    script.write_text(f"#!/bin/sh\necho start >> {root}/starts\n{tail}\n")
    script.chmod(0o755)
    path = root / "etc/systemd/system/demo.service"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"[Service]\nExecStart={script}\nRestart={restart}\nRestartSec={restart_sec}\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    assert systemctl(root, "daemon-reload").returncode == 0


def main_pid(root: Path) -> int | None:
    record = root / "run/standin-systemd/demo.service.json"
    pid = json.loads(record.read_text()).get("pid") if record.exists() else None
    return int(pid) if pid else None


def starts(root: Path) -> int:
    path = root / "starts"
    return len(path.read_text().splitlines()) if path.exists() else 0


def state(root: Path) -> str:
    return systemctl(root, "is-active", "demo").stdout.strip()


def wait_for(predicate: object, timeout_s: float = 10) -> bool:
    assert callable(predicate)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("policy", "status", "restarts"),
    [
        ("no", -signal.SIGKILL, False),
        ("always", 0, True),
        ("always", -signal.SIGTERM, True),
        ("on-success", 0, True),
        ("on-success", -signal.SIGTERM, True),  # a clean signal
        ("on-success", 1, False),
        ("on-failure", 0, False),
        ("on-failure", 1, True),
        ("on-failure", -signal.SIGKILL, True),
        ("on-failure", -signal.SIGHUP, False),
        ("on-abnormal", 1, False),
        ("on-abnormal", -signal.SIGKILL, True),
        ("on-abort", -signal.SIGSEGV, True),
        ("on-abort", 2, False),
        ("on-watchdog", -signal.SIGKILL, False),
    ],
)
def test_restart_table_of_systemd_service_5(policy: str, status: int, restarts: bool) -> None:
    assert systemd.should_restart(policy, status) is restarts


def test_always_brings_a_sigkilled_main_process_back_and_stop_does_not(root: Path) -> None:
    unit(root, "always")
    assert systemctl(root, "enable", "--now", "demo").returncode == 0
    first = main_pid(root)
    assert first is not None and state(root) == "active"
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: main_pid(root) not in (None, first)), "not restarted"
    assert state(root) == "active" and starts(root) == 2
    assert "scheduled restart (Restart=always)" in (root / "run/standin-systemd/demo.service.log").read_text()
    assert systemctl(root, "stop", "demo").returncode == 0
    time.sleep(0.6)  # three RestartSec
    assert state(root) == "inactive" and starts(root) == 2 and main_pid(root) is None
    assert systemctl(root, "restart", "demo").returncode == 0  # restart: a stop and a start, once
    time.sleep(0.6)
    assert state(root) == "active" and starts(root) == 3


def test_without_restart_a_killed_service_stays_down_as_failed(root: Path) -> None:
    unit(root, "no")
    assert systemctl(root, "start", "demo").returncode == 0
    pid = main_pid(root)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: state(root) == "failed")
    time.sleep(0.5)
    assert starts(root) == 1


def test_on_failure_restarts_a_failing_exit_not_a_clean_one(root: Path) -> None:
    unit(root, "on-failure", exit_code=0)
    systemctl(root, "start", "demo")
    assert wait_for(lambda: state(root) == "inactive")
    time.sleep(0.5)
    assert starts(root) == 1
    unit(root, "on-failure", exit_code=3)
    systemctl(root, "start", "demo")
    assert wait_for(lambda: starts(root) >= 3)


def test_the_start_limit_fails_a_crash_loop(root: Path) -> None:
    unit(root, "always", restart_sec="0", exit_code=1)
    systemctl(root, "start", "demo")
    assert wait_for(lambda: state(root) == "failed")
    time.sleep(0.3)
    assert starts(root) == systemd.START_LIMIT_BURST


def test_stop_while_a_restart_is_pending_cancels_it(root: Path) -> None:
    unit(root, "always", restart_sec="2s")
    systemctl(root, "start", "demo")
    pid = main_pid(root)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: state(root) == "activating")
    assert systemctl(root, "stop", "demo").returncode == 0
    time.sleep(2.5)
    assert state(root) == "inactive" and starts(root) == 1


def test_an_injected_crash_is_not_restarted(root: Path) -> None:
    """core.crash_at's fault stands for a crash upstream would meet at every restart: failed."""
    unit(root, "always")
    script = root / "svc.sh"
    script.write_text(
        f"#!/bin/sh\necho start >> {root}/starts\nmkdir -p /run/standin-fault\n"
        "touch /run/standin-fault/crashed.$$\nkill -KILL $$\n"
    )
    systemctl(root, "start", "demo")
    assert wait_for(lambda: state(root) == "failed")
    time.sleep(0.6)
    assert starts(root) == 1
