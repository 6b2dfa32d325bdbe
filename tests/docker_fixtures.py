"""A private Docker engine for tests: Debian's docker.io `dockerd`, one per test session.

It runs with its own --data-root, --exec-root, pidfile and unix socket (under a short /tmp dir:
a socket path must fit in 108 bytes), `--bridge none --iptables=false --ip6tables=false`, so it
touches neither the host's networking nor another Docker on the machine; dockerd starts its own
containerd under the exec-root. The fixture waits (bounded) for the API to answer, yields a
`docker.DockerClient`, and in a finalizer, also after a failure, stops dockerd by its PID
(SIGTERM, then SIGKILL after a bound) and the containerd it started (by the PID in its pidfile).
A missing dockerd fails the tests; it never skips. Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(pid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if (proc.poll() is not None) if proc is not None else not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[docker.DockerClient]:
    binary = shutil.which("dockerd")
    if binary is None:
        pytest.fail("dockerd is not installed (apt-get install docker.io; make install puts it in place)")
    data_root = tmp_path_factory.mktemp("dockerd")
    run_dir = Path(tempfile.mkdtemp(prefix="sealer-dockerd-", dir="/tmp"))
    sock = run_dir / "docker.sock"
    log = (data_root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            "--data-root",
            str(data_root / "data"),
            "--exec-root",
            str(run_dir / "exec"),
            "--pidfile",
            str(run_dir / "dockerd.pid"),
            "-H",
            f"unix://{sock}",
            "--bridge",
            "none",
            "--iptables=false",
            "--ip6tables=false",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client: docker.DockerClient | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dockerd exited with {proc.returncode}: {_tail(data_root / 'dockerd.log')}")
            if sock.exists():
                try:
                    client = docker.DockerClient(base_url=f"unix://{sock}", timeout=60)
                    client.ping()
                    break
                except docker.errors.DockerException:
                    if client is not None:
                        client.close()
                    client = None
            if time.monotonic() > deadline:
                pytest.fail(
                    f"dockerd did not answer within {START_TIMEOUT_S} s: {_tail(data_root / 'dockerd.log')}"
                )
            time.sleep(0.1)
        yield client
    finally:
        if client is not None:
            client.close()
        _stop(proc.pid, proc)
        log.close()
        pidfile = run_dir / "exec" / "containerd" / "containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            containerd = int(pidfile.read_text().strip())
            if _alive(containerd):  # dockerd was killed before it could stop its containerd
                _stop(containerd)
        shutil.rmtree(run_dir, ignore_errors=True)


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").splitlines()[-5:])
    return "(no log)"
