"""`LocalDriver`: this machine as the one host, no SSH (the embedded default of `sealer run
IMAGE` with no hosts). Commands run as `sh -c` subprocesses with the same semantics as the SSH
driver: env exported in the command, output captured, the same errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping

from builder.errors import HostError
from builder.runtime.infra import _shell
from builder.runtime.infra.base import (
    LOCAL_HOSTS,
    Chunks,
    CommandResult,
    EventCallback,
    StreamResult,
    TransferProgress,
)

_STDERR_KEEP = 64 << 10


class LocalDriver(_shell.DerivedMethods):
    """Runs on this machine; answers to the names in LOCAL_HOSTS (plus `extra_names`, e.g. this
    machine's own address as the cluster model spells it)."""

    def __init__(
        self,
        *,
        extra_names: frozenset[str] = frozenset(),
        max_uploads: int = 4,
        on_event: EventCallback | None = None,
    ) -> None:
        self._names = LOCAL_HOSTS | extra_names
        self._uploads = asyncio.Semaphore(max_uploads)
        self._on_event = on_event

    async def __aenter__(self) -> LocalDriver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_host(self, host: str) -> None:
        if host not in self._names:
            raise HostError(
                f"{host}: the local driver runs only on this machine ({', '.join(sorted(self._names))})",
                host=host,
                hint="give SSH credentials to reach other hosts",
            )

    async def _spawn(
        self, host: str, command: str, env: Mapping[str, str] | None
    ) -> asyncio.subprocess.Process:
        self._check_host(host)
        try:
            return await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                _shell.shell_command(command, env),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as err:
            raise HostError(f"{host}: cannot start /bin/sh: {err.strerror}", host=host, step="run") from None

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
        proc = await self._spawn(host, command, env)
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await proc.communicate(stdin or b"")  # b"": close stdin, EOF at once
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            raise HostError(
                f'{host}: "{_shell.short(command)}" timed out after {timeout_s:g} s', host=host, step="run"
            ) from None
        except BaseException:
            _kill_group(proc)
            raise
        result = CommandResult(host, command, _status(proc), _shell.decode(out), _shell.decode(err))
        if check and result.exit_status != 0:
            raise _shell.command_failed(host, command, result.exit_status, result.stdout, result.stderr)
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
            proc = await self._spawn(host, remote_command, env)
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            out_task = asyncio.ensure_future(proc.stdout.read())
            err_task = asyncio.ensure_future(_read_tail(proc.stderr))
            sent = 0
            try:
                async with asyncio.timeout(timeout_s):
                    try:
                        async for data in _shell.rechunk(chunks):
                            proc.stdin.write(data)
                            await proc.stdin.drain()
                            sent += len(data)
                            if self._on_event:
                                self._on_event(TransferProgress(host, remote_command, sent))
                        proc.stdin.close()
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the command exited early: its status says why
                    await proc.wait()
                    out, err = await out_task, await err_task
            except TimeoutError:
                _kill_group(proc)
                await proc.wait()
                raise HostError(
                    f'{host}: "{_shell.short(remote_command)}" timed out after {timeout_s:g} s',
                    host=host,
                    step="stream",
                ) from None
            except BaseException:
                _kill_group(proc)
                raise
            finally:
                out_task.cancel()
                err_task.cancel()
        result = StreamResult(
            host, remote_command, sent, _status(proc), _shell.decode(out), _shell.decode(err)
        )
        if check and result.exit_status != 0:
            raise _shell.command_failed(
                host, remote_command, result.exit_status, result.stdout, result.stderr
            )
        return result

    async def close(self) -> None:
        return None


def _status(proc: asyncio.subprocess.Process) -> int:
    code = proc.returncode
    assert code is not None
    return 128 - code if code < 0 else code  # killed by signal N: 128+N, as a shell reports it


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)


async def _read_tail(stream: asyncio.StreamReader) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(1 << 16):
        kept += chunk
        del kept[:-_STDERR_KEEP]
    return bytes(kept)
