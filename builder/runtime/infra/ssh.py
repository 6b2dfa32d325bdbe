"""`SSHDriver`: hosts over SSH with asyncssh, on one event loop however many hosts there are.

Measured habits (DESIGN.md section 5) this driver keeps:
- one connection per host, opened on first use and reused (a channel on an open connection
  costs ~2-5 ms, a new OpenSSH connection ~230 ms); a lost connection is dropped and the next
  call reconnects, but a command that was running when it dropped is never re-run;
- at most `channels_per_connection` (6) session channels at once per connection: sshd's
  MaxSessions is 10 but counts sessions still closing, so refusals start earlier; a refused
  channel open is retried with a short back-off, bounded in count;
- bytes are written 1-4 MiB at a time, each write drained, over aes128-gcm (_ssh_connect.py);
- concurrency is bounded per host count (`max_hosts` hosts with work in flight) and, apart,
  for uploads (`max_uploads` streams at once across all hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

import asyncssh

from builder.errors import HostError
from builder.runtime.infra import _shell
from builder.runtime.infra._ssh_connect import build_options, connect_error
from builder.runtime.infra.base import (
    ChannelRetried,
    Chunks,
    CommandResult,
    Connected,
    Disconnected,
    EventCallback,
    InfraEvent,
    SSHCredentials,
    StreamResult,
    TransferProgress,
)

OPEN_ATTEMPTS = 40  # refused channel opens retried up to ~6 s in all
_STDERR_KEEP = 64 << 10
_CLOSE_WAIT_S = 5.0
_ABORT_WAIT_S = 0.5


class _Host:
    """One host's connection and limits. `key` is how callers name it; `address` where it goes."""

    def __init__(self, key: str, address: str, creds: SSHCredentials, channels: int) -> None:
        self.key = key
        self.address = address
        self.creds = creds
        self.conn: asyncssh.SSHClientConnection | None = None
        self.connect_lock = asyncio.Lock()
        self.slot_lock = asyncio.Lock()
        self.channels = asyncio.Semaphore(channels)
        self.active = 0


class SSHDriver(_shell.DerivedMethods):
    """The InfraDriver over SSH. `credentials`: one for every host, or per host (a "*" entry is
    the fallback). Use as `async with SSHDriver(...) as driver:` or call `close()`."""

    def __init__(
        self,
        credentials: Mapping[str, SSHCredentials] | SSHCredentials,
        *,
        max_hosts: int = 32,
        max_uploads: int = 4,
        channels_per_connection: int = 6,
        on_event: EventCallback | None = None,
    ) -> None:
        if min(max_hosts, max_uploads, channels_per_connection) < 1:
            raise ValueError("max_hosts, max_uploads and channels_per_connection must be at least 1")
        self._credentials = credentials
        self._channels = channels_per_connection
        self._host_slots = asyncio.Semaphore(max_hosts)
        self._uploads = asyncio.Semaphore(max_uploads)
        self._on_event = on_event
        self._hosts: dict[str, _Host] = {}

    async def __aenter__(self) -> SSHDriver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _emit(self, event: InfraEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    # --- connections -----------------------------------------------------------------------------

    def _credentials_for(self, host: str) -> SSHCredentials | None:
        if isinstance(self._credentials, SSHCredentials):
            return self._credentials
        return self._credentials.get(host) or self._credentials.get("*")

    def _host(self, host: str) -> _Host:
        entry = self._hosts.get(host)
        if entry is None:
            creds = self._credentials_for(host)
            if creds is None:
                raise HostError(f"{host}: no SSH credentials for this host", host=host, step="connect")
            entry = self._hosts[host] = _Host(host, host, creds, self._channels)
        return entry

    def _jump_host(self, h: _Host) -> _Host:
        spec = h.creds.proxy_jump
        assert spec is not None
        key = f"jump:{spec}"
        entry = self._hosts.get(key)
        if entry is None:
            user, _, hostport = spec.rpartition("@")
            address, _, port = hostport.partition(":")
            if not address or (port and not port.isdigit()):
                raise HostError(
                    f"{h.key}: bad proxy jump {spec!r}", host=h.key, hint="use [user@]host[:port]"
                )
            own = None if isinstance(self._credentials, SSHCredentials) else self._credentials.get(address)
            base = own or h.creds
            # The target's port is not the jump host's: without its own entry, config/22 apply.
            jump_port = int(port) if port else (base.port if own else None)
            creds = replace(base, user=user or base.user, port=jump_port)
            entry = self._hosts[key] = _Host(key, address, replace(creds, proxy_jump=None), self._channels)
        return entry

    async def _connection(self, h: _Host) -> asyncssh.SSHClientConnection:
        if h.conn is not None and not h.conn.is_closed():
            return h.conn
        async with h.connect_lock:
            if h.conn is None or h.conn.is_closed():
                h.conn = await self._connect(h)
            return h.conn

    async def _connect(self, h: _Host) -> asyncssh.SSHClientConnection:
        options, target = build_options(h.address, h.creds)
        tunnel: asyncssh.SSHClientConnection | None = None
        if h.creds.proxy_jump:
            try:
                tunnel = await self._connection(self._jump_host(h))
            except HostError as err:
                raise HostError(
                    f"{h.key}: proxy jump {h.creds.proxy_jump} failed: {err.message}",
                    host=h.key,
                    step="connect",
                ) from None
        started = time.monotonic()
        try:
            # asyncssh's connect_timeout covers TCP and login; the outer bound is a safety net.
            async with asyncio.timeout(h.creds.connect_timeout_s + 5):
                if tunnel is not None:
                    conn = await asyncssh.connect(h.address, options=options, tunnel=tunnel)
                else:
                    conn = await asyncssh.connect(h.address, options=options)
        except (asyncssh.Error, OSError, TimeoutError) as err:
            raise connect_error(target, err, h.creds.connect_timeout_s) from None
        self._emit(Connected(h.key, time.monotonic() - started))
        return conn

    def _lost(
        self, h: _Host, conn: asyncssh.SSHClientConnection, command: str, err: BaseException
    ) -> HostError:
        """Drop a broken connection (the next call reconnects) and name what was running."""
        if h.conn is conn:
            h.conn = None
        conn.abort()
        self._emit(Disconnected(h.key, str(err) or type(err).__name__))
        return HostError(
            f'{h.key}: connection lost while running "{_shell.short(command)}"', host=h.key, step="run"
        )

    @contextlib.asynccontextmanager
    async def _host_slot(self, h: _Host) -> AsyncIterator[None]:
        """Counts `h` against `max_hosts` while it has any operation in flight."""
        async with h.slot_lock:
            if h.active == 0:
                await self._host_slots.acquire()
            h.active += 1
        try:
            yield
        finally:
            h.active -= 1
            if h.active == 0:
                self._host_slots.release()

    @contextlib.asynccontextmanager
    async def _session(
        self, host: str, command: str
    ) -> AsyncIterator[tuple[_Host, asyncssh.SSHClientConnection, asyncssh.SSHClientProcess[bytes]]]:
        """A session channel running `sh -c command`, within the host's channel limit."""
        h = self._host(host)
        async with self._host_slot(h), h.channels:
            conn, proc = await self._open(h, command)
            try:
                yield h, conn, proc
            finally:
                finished = proc.exit_status is not None or proc.exit_signal is not None
                if not finished:
                    # Timed out or cancelled: sshd keeps a session open until its command exits.
                    with contextlib.suppress(Exception):
                        proc.send_signal("KILL")
                proc.close()
                # Wait for sshd's close so its session count has dropped before the slot frees.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_CLOSE_WAIT_S if finished else _ABORT_WAIT_S):
                        await proc.wait_closed()

    async def _open(
        self, h: _Host, command: str
    ) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientProcess[bytes]]:
        wrapped = "sh -c " + shlex.quote(command)
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            conn = await self._connection(h)
            try:
                return conn, await conn.create_process(wrapped, encoding=None)
            except asyncssh.ChannelOpenError as err:
                if conn.is_closed():
                    raise self._lost(h, conn, command, err) from None
                if attempt == OPEN_ATTEMPTS:
                    raise HostError(
                        f"{h.key}: sshd refused a session channel {attempt} times ({err.reason})",
                        host=h.key,
                        step="run",
                        hint="lower channels_per_connection or raise MaxSessions in sshd_config",
                    ) from None
                self._emit(ChannelRetried(h.key, attempt))
                await asyncio.sleep(min(0.01 * attempt, 0.25))
            except (asyncssh.Error, OSError) as err:
                raise self._lost(h, conn, command, err) from None
        raise AssertionError("unreachable")

    # --- the InfraDriver methods -------------------------------------------------------------------

    async def run(
        self,
        host: str,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout_s: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        text = _shell.shell_command(command, env)
        if timeout_s is not None:
            text = _shell.with_remote_timeout(text, timeout_s + 1)
        async with self._session(host, text) as (h, conn, proc):
            try:
                async with asyncio.timeout(timeout_s):
                    if stdin:
                        proc.stdin.write(stdin)
                    proc.stdin.write_eof()
                    out, err = await proc.communicate()
            except TimeoutError:
                raise HostError(
                    f'{host}: "{_shell.short(command)}" timed out after {timeout_s:g} s',
                    host=host,
                    step="run",
                ) from None
            except (asyncssh.Error, OSError) as err_:
                raise self._lost(h, conn, command, err_) from None
            status = self._status(h, conn, proc, command)
        result = CommandResult(host, command, status, _shell.decode(out), _shell.decode(err))
        if check and status != 0:
            raise _shell.command_failed(host, command, status, result.stdout, result.stderr)
        return result

    def _status(
        self,
        h: _Host,
        conn: asyncssh.SSHClientConnection,
        proc: asyncssh.SSHClientProcess[bytes],
        command: str,
    ) -> int:
        if proc.exit_status is not None and proc.exit_status >= 0:
            return proc.exit_status
        if proc.exit_signal is not None:
            import signal

            name = proc.exit_signal[0]
            with contextlib.suppress(KeyError):
                return 128 + signal.Signals[f"SIG{name}"].value
            return 255
        raise self._lost(h, conn, command, ConnectionError("channel closed without an exit status"))

    async def pipe_to(
        self,
        host: str,
        remote_command: str,
        chunks: Chunks,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        check: bool = True,
    ) -> StreamResult:
        text = _shell.shell_command(remote_command, env)
        if timeout_s is not None:
            text = _shell.with_remote_timeout(text, timeout_s + 1)
        sent = 0
        async with self._uploads, self._session(host, text) as (h, conn, proc):
            out_task = asyncio.ensure_future(proc.stdout.read())
            err_task = asyncio.ensure_future(_read_tail(proc.stderr))
            try:
                async with asyncio.timeout(timeout_s):
                    try:
                        async for data in _shell.rechunk(chunks):
                            proc.stdin.write(data)
                            await proc.stdin.drain()
                            sent += len(data)
                            self._emit(TransferProgress(host, remote_command, sent))
                        proc.stdin.write_eof()
                    except BrokenPipeError:
                        if conn.is_closed():
                            raise
                        # else the command stopped reading (exited early): its status says why
                    await proc.wait_closed()
                    out, err = await out_task, await err_task
            except TimeoutError:
                raise HostError(
                    f'{host}: "{_shell.short(remote_command)}" timed out after {timeout_s:g} s',
                    host=host,
                    step="stream",
                ) from None
            except (asyncssh.Error, OSError) as err_:
                raise self._lost(h, conn, remote_command, err_) from None
            finally:
                out_task.cancel()
                err_task.cancel()
            status = self._status(h, conn, proc, remote_command)
        result = StreamResult(host, remote_command, sent, status, _shell.decode(out), _shell.decode(err))
        if check and status != 0:
            raise _shell.command_failed(host, remote_command, status, result.stdout, result.stderr)
        return result

    async def close(self) -> None:
        conns = [h.conn for h in self._hosts.values() if h.conn is not None]
        for h in self._hosts.values():
            h.conn = None
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_WAIT_S):
                    await conn.wait_closed()


async def _read_tail(stream: asyncssh.SSHReader[bytes]) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(1 << 16):
        kept += chunk
        del kept[:-_STDERR_KEEP]
    return bytes(kept)
