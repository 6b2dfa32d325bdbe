"""A registry that stops answering ends push, pull and login within the operation's budget
(issue 9, item 10): `--timeout` / SEALER_REGISTRY_TIMEOUT seconds without progress, and at most
`retries` retries per operation, each reported once.

Each test uses a budget of 1-2 s so that it ends in a few seconds; the bounds asserted on the
elapsed time are generous (budget + several seconds), they only tell "bounded" from the
minutes these faults used to take (362 s for a silent registry, 71 s for a stopped one).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from builder.cli.progress import PlainTransfer
from builder.errors import RegistryUnavailable
from builder.registry.client import RegistryClient, RegistryOptions
from builder.registry.events import BlobProgress, RegistryEvent, Retrying
from builder.store.layout import Store
from tests.component.cli.test_cli import one_error_line
from tests.component.registry._images import add_big_image, add_image
from tests.conftest import SealerRunner
from tests.registry_fixtures import RegistryServer

pytestmark = pytest.mark.component


@pytest.fixture
def silent() -> Iterator[str]:
    """`127.0.0.1:PORT` of a socket that accepts connections and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def test_silent_registry_fails_pull_within_the_budget(silent: str, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as info:
        RegistryClient(RegistryOptions(timeout_s=1.5)).pull(store, f"{silent}/app:v1")
    elapsed = time.monotonic() - started
    assert elapsed < 6, f"a 1.5 s budget took {elapsed:.1f} s"
    message = str(info.value)
    assert silent in message and "\n" not in message, message
    assert info.value.hint and "--timeout" in info.value.hint, info.value.hint
    assert store.refs.list() == []


@pytest.mark.parametrize(
    ("command", "how"),
    [("pull", "flag"), ("push", "env"), ("login", "flag")],
)
def test_cli_timeout_flag_and_variable_bound_a_silent_registry(
    command: str,
    how: str,
    silent: str,
    sealer: SealerRunner,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    docker_config: Path,
) -> None:
    add_image(store, "app:v1")
    args = {
        "pull": ["pull", f"{silent}/app:v1"],
        "push": ["push", "app:v1", f"{silent}/app:v1"],
        "login": ["login", silent, "-u", "u", "-p", "p"],
    }[command]
    if how == "flag":
        args += ["--timeout", "1"]
    else:
        monkeypatch.setenv("SEALER_REGISTRY_TIMEOUT", "1")
    started = time.monotonic()
    result = sealer(*args, expect=1)
    assert time.monotonic() - started < 6
    line = one_error_line(result.stderr)
    assert silent in line, line
    assert "--timeout" in result.stderr and "SEALER_REGISTRY_TIMEOUT" in result.stderr, result.stderr
    assert result.stdout == ""


def test_build_from_a_silent_registry_honours_the_variable(
    silent: str,
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    docker_config: Path,
) -> None:
    """No registry flag given: the build's FROM pull still takes SEALER_REGISTRY_TIMEOUT."""
    ctx = make_context({"f": "x"}, kubefile=f"FROM {silent}/base:v1\nCOPY f f\n")
    monkeypatch.setenv("SEALER_REGISTRY_TIMEOUT", "1")
    started = time.monotonic()
    result = sealer("build", "-q", "-t", "app:v1", str(ctx), expect=1)
    assert time.monotonic() - started < 6
    assert silent in one_error_line(result.stderr)


def test_silent_token_server_is_bounded_too(tmp_path: Path) -> None:
    """A registry whose bearer-token realm never answers (oras-py asks for tokens without a
    timeout) fails within the budget as well."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    realm = f"http://127.0.0.1:{listener.getsockname()[1]}/token"

    class Challenge(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Challenge)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable) as info:
            RegistryClient(RegistryOptions(plain_http=True, timeout_s=1)).pull(
                Store.open(tmp_path / "s"), f"{host}/app:v1"
            )
        assert time.monotonic() - started < 6
        assert "\n" not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        listener.close()


def test_stopped_registry_fails_push_within_the_budget(registry: RegistryServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    desc = add_big_image(store, "big:v1", big_mb=48, small_layers=1)
    big = str(store.read_manifest(desc).layers[-1].digest)
    assert registry.proc is not None
    pid = registry.proc.pid
    stopped: list[float] = []

    def on_event(event: RegistryEvent) -> None:
        if isinstance(event, BlobProgress) and event.digest == big and event.done >= 8 << 20 and not stopped:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(time.monotonic())

    try:
        with pytest.raises(RegistryUnavailable) as info:
            RegistryClient(RegistryOptions(timeout_s=2), on_event=on_event).push(
                store, "big:v1", f"{registry.host}/big:v1"
            )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert stopped, "the push finished before the registry was stopped"
    waited = time.monotonic() - stopped[0]
    assert waited < 8, f"a 2 s budget took {waited:.1f} s after SIGSTOP"
    message = str(info.value)
    assert registry.host in message and "\n" not in message, message
    assert info.value.hint and "--timeout" in info.value.hint


def test_killed_registry_prints_one_line_per_retry_within_the_budget(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store.open(tmp_path / "s")
    desc = add_big_image(store, "big:v1", big_mb=48)
    big = str(store.read_manifest(desc).layers[-1].digest)
    retries: list[Retrying] = []
    printer = PlainTransfer()

    def on_event(event: RegistryEvent) -> None:
        if isinstance(event, BlobProgress) and event.digest == big and event.done >= 8 << 20:
            registry.kill()
        if isinstance(event, Retrying):
            retries.append(event)
        printer(event)

    with pytest.raises(RegistryUnavailable) as info:
        RegistryClient(RegistryOptions(retries=3, timeout_s=5), on_event=on_event).push(
            store, "big:v1", f"{registry.host}/big:v1"
        )
    assert registry.host in str(info.value) and "\n" not in str(info.value)
    # The retries spent, then the refusals of the registry that is gone: reported once, not per poll.
    refused = [r for r in retries if "refused" in r.reason]
    assert 1 <= len(retries) - len(refused) <= 3 and len(refused) <= 1, retries
    assert "still refused" in str(info.value) or "gave up after 3 retries" in str(info.value), info.value
    lines = [line for line in capsys.readouterr().err.splitlines() if "retrying" in line]
    assert len(lines) == len(retries), lines
