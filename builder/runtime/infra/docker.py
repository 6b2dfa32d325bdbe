"""`DockerDriver`: hosts that are containers of one Docker engine, no sshd in them.

Every command is an Engine API exec (`POST /containers/{id}/exec`, then `/exec/{id}/start`
hijacked into a raw stream, as `docker exec -i` does): `sh -c` with the same env exports,
timeouts and messages as the SSH driver (`_shell`), stdin written 1-4 MiB at a time into the
attach socket, then half-closed (the engine closes the process's stdin on it), stdout and
stderr read from the multiplexed frames (8-byte header: stream, size), and the exit status
from `/exec/{id}/json` once the stream ends. Delivery's own verification runs unchanged inside
the container: each layer is hashed by `sha256sum` as it unpacks and refused on a mismatch.

A host is named by its address on the cluster's network, as the cluster model holds it; the
driver maps addresses to containers by the cluster's label (`container_hosts.CLUSTER_LABEL`)
on first use. The engine's client is blocking (docker-py): each API call, write and read
runs in a thread, so many hosts stream at once on one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Mapping
from typing import Any

from builder.errors import HostError
from builder.runtime.infra import _shell
from builder.runtime.infra.base import Chunks, CommandResult, EventCallback, StreamResult, TransferProgress

_STDERR_KEEP = 64 << 10
_READ_SIZE = 1 << 16
# The exit code is set just after the stream ends (a few ms); a loaded engine may take longer,
# so the polls back off, bounded at about 30 s in all.
_EXIT_POLL_S = (0.005, 0.25, 30.0)  # first wait, longest wait, total


class DockerDriver(_shell.DerivedMethods):
    """The InfraDriver for containers. `containers` maps each host address to its container
    (id or name); `resolve()`, when given, returns a fresh map when an address is missing.
    `owns_client`: `close` closes the client too."""

    def __init__(
        self,
        client: Any,
        containers: Mapping[str, str] | None = None,
        *,
        resolve: Any = None,
        owns_client: bool = False,
        max_uploads: int = 4,
        on_event: EventCallback | None = None,
    ) -> None:
        self._client = client
        self._containers = dict(containers or {})
        self._resolve = resolve
        self._owns_client = owns_client
        self._uploads = asyncio.Semaphore(max_uploads)
        self._on_event = on_event

    async def __aenter__(self) -> DockerDriver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _container(self, host: str) -> str:
        found = self._containers.get(host)
        if found is None and self._resolve is not None:
            from docker.errors import DockerException

            try:
                self._containers.update(await asyncio.to_thread(self._resolve))
            except (DockerException, OSError) as err:
                raise HostError(
                    f"{host}: cannot list the cluster's containers: {_shell.short(str(err), 160)}",
                    host=host,
                    step="connect",
                ) from None
            found = self._containers.get(host)
        if found is None:
            raise HostError(f"{host}: no container of this cluster has this address", host=host, step="run")
        return found

    def _fail(self, host: str, container: str, what: str, err: BaseException, step: str) -> HostError:
        from docker.errors import APIError

        reason = err.explanation if isinstance(err, APIError) and err.explanation else str(err)
        reason = " ".join(str(reason).split()) or type(err).__name__
        return HostError(
            f"{host} (container {container}): {what}: {_shell.short(reason, 160)}", host=host, step=step
        )

    async def _start(self, host: str, text: str, step: str) -> tuple[str, str, socket.socket]:
        """An exec of `sh -c text` in the host's container, started, with its raw socket."""
        from docker.errors import DockerException

        container = await self._container(host)
        api = self._client.api

        def start() -> tuple[str, socket.socket]:
            exec_id = api.exec_create(container, ["sh", "-c", text], stdin=True, stdout=True, stderr=True)[
                "Id"
            ]
            sock = api.exec_start(exec_id, socket=True)
            raw = getattr(sock, "_sock", sock)
            raw.settimeout(None)
            return exec_id, raw

        try:
            exec_id, raw = await asyncio.to_thread(start)
        except (DockerException, OSError) as err:
            raise self._fail(host, container, "cannot start a command", err, step) from None
        return container, exec_id, raw

    async def _exit_status(self, host: str, container: str, exec_id: str, command: str) -> int:
        from docker.errors import DockerException

        wait, longest, total = _EXIT_POLL_S
        waited = 0.0
        while waited <= total:
            try:
                info = await asyncio.to_thread(self._client.api.exec_inspect, exec_id)
            except (DockerException, OSError) as err:
                raise self._fail(host, container, f'lost "{_shell.short(command)}"', err, "run") from None
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            await asyncio.sleep(wait)
            waited += wait
            wait = min(wait * 2, longest)
        raise HostError(
            f'{host} (container {container}): "{_shell.short(command)}" closed its output but has not exited',
            host=host,
            step="run",
        )

    async def _exec(
        self,
        host: str,
        command: str,
        chunks: Chunks | None,
        *,
        env: Mapping[str, str] | None,
        timeout_s: float | None,
        step: str,
        keep_stderr: int | None,
    ) -> tuple[int, int, bytes, bytes]:
        """Run `command`, writing `chunks` into its stdin; (status, bytes sent, stdout, stderr)."""
        text = _shell.shell_command(command, env)
        if timeout_s is not None:
            text = _shell.with_remote_timeout(text, timeout_s + 1)
        container, exec_id, raw = await self._start(host, text, step)
        reader = _FrameReader(raw, keep_stderr)
        read_task = asyncio.ensure_future(asyncio.to_thread(reader.run))
        sent = 0
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    if chunks is not None:
                        sent = await self._write(host, command, raw, chunks, read_task)
                    raw.shutdown(socket.SHUT_WR)  # EOF on the command's stdin
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the command exited early: its status says why
                await asyncio.shield(read_task)
        except TimeoutError:
            raise HostError(
                f'{host} (container {container}): "{_shell.short(command)}" timed out after {timeout_s:g} s',
                host=host,
                step=step,
            ) from None
        except OSError as err:
            raise self._fail(host, container, f'lost "{_shell.short(command)}"', err, step) from None
        finally:
            reader.stop()
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)  # wakes the reader's recv (close alone does not)
            with contextlib.suppress(OSError):
                raw.close()
            with contextlib.suppress(BaseException):
                await read_task
        if reader.error is not None:
            raise self._fail(host, container, f'lost "{_shell.short(command)}"', reader.error, step)
        status = await self._exit_status(host, container, exec_id, command)
        return status, sent, bytes(reader.stdout), bytes(reader.stderr)

    async def _write(
        self, host: str, command: str, raw: socket.socket, chunks: Chunks, read_task: asyncio.Future[None]
    ) -> int:
        """Write `chunks` into the exec's stdin until they end or its output does: the engine
        stops reading stdin once the command has exited, so a write would block for ever."""
        sent = 0
        async for data in _shell.rechunk(chunks):
            if read_task.done():
                break
            write = asyncio.ensure_future(asyncio.to_thread(raw.sendall, data))
            await asyncio.wait({write, read_task}, return_when=asyncio.FIRST_COMPLETED)
            if not write.done():  # the output ended first: the command is gone
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)  # wakes the blocked sendall
                with contextlib.suppress(OSError):
                    await write
                break
            write.result()
            sent += len(data)
            if self._on_event is not None:
                self._on_event(TransferProgress(host, command, sent))
        return sent

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
        status, _, out, err = await self._exec(
            host,
            command,
            [stdin] if stdin else None,
            env=env,
            timeout_s=timeout_s,
            step="run",
            keep_stderr=None,
        )
        result = CommandResult(host, command, status, _shell.decode(out), _shell.decode(err))
        if check and status != 0:
            raise _shell.command_failed(host, command, status, result.stdout, result.stderr)
        return result

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
        async with self._uploads:
            status, sent, out, err = await self._exec(
                host,
                remote_command,
                chunks,
                env=env,
                timeout_s=timeout_s,
                step="stream",
                keep_stderr=_STDERR_KEEP,
            )
        result = StreamResult(host, remote_command, sent, status, _shell.decode(out), _shell.decode(err))
        if check and status != 0:
            raise _shell.command_failed(host, remote_command, status, result.stdout, result.stderr)
        return result

    async def close(self) -> None:
        # Execs close their own sockets; the client is closed only when this driver made it.
        if self._owns_client:
            await asyncio.to_thread(self._client.close)


class _FrameReader:
    """Reads the engine's multiplexed exec stream (stream byte, 3 zero bytes, big-endian
    size, payload) until EOF, in a thread; stdout whole, stderr whole or its last bytes."""

    def __init__(self, raw: socket.socket, keep_stderr: int | None) -> None:
        self._raw = raw
        self._keep = keep_stderr
        self._stopped = threading.Event()
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.error: OSError | None = None

    def stop(self) -> None:
        self._stopped.set()

    def _exactly(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            piece = self._raw.recv(min(n - len(buf), _READ_SIZE))
            if not piece:
                return None
            buf += piece
        return bytes(buf)

    def run(self) -> None:
        try:
            while True:
                header = self._exactly(8)
                if header is None:
                    return
                kind, size = header[0], struct.unpack(">I", header[4:8])[0]
                payload = self._exactly(size) if size else b""
                if payload is None:
                    return
                if kind == 2:
                    self.stderr += payload
                    if self._keep is not None and len(self.stderr) > self._keep:
                        del self.stderr[: -self._keep]
                else:
                    self.stdout += payload
        except OSError as err:
            if not self._stopped.is_set():
                self.error = err
