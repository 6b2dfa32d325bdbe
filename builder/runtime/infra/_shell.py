"""What both drivers share: the shell form of a command, rechunking of a byte stream, the
CommandFailed message, and `put_file` built on `pipe_to` + `run`.

Commands reach a host as one `sh -c '<exports> <command>'` word: whatever root's login shell
is, the command is parsed by sh, and env goes in as `export K='v';` because sshd drops client
env unless its AcceptEnv names it (and sealer's own SSH client does the same).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import secrets
import shlex
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Protocol

from builder.errors import CommandFailed, HostError, UsageError
from builder.image.descriptor import Platform
from builder.runtime.infra.base import Chunks, CommandResult, StreamResult

WRITE_MIN = 1 << 20  # coalesce small chunks up to 1 MiB before a write
WRITE_MAX = 4 << 20  # and cut big ones at 4 MiB: measured sweet spot for asyncssh + drain
READ_SIZE = 4 << 20
TAIL_CHARS = 2000
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def shell_command(command: str, env: Mapping[str, str] | None = None) -> str:
    """The text to hand to the login shell (ssh) or to `sh -c` (local): `command` with `env`."""
    exports = ""
    for key, value in (env or {}).items():
        if not _ENV_NAME.match(key):
            raise UsageError(f"invalid environment variable name {key!r}", hint="use letters, digits and _")
        exports += f"export {key}={shlex.quote(value)}; "
    return exports + command


def with_remote_timeout(command: str, timeout_s: float) -> str:
    """`command` killed on the host too once `timeout_s` has passed. Closing the channel does
    not stop it, and OpenSSH (9.2) refuses signal requests for root sessions (no post-auth
    privsep for root), so coreutils/busybox `timeout` does it where the host has one."""
    q = shlex.quote(command)
    secs = math.ceil(timeout_s)
    return f"if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL {secs} sh -c {q}; else exec sh -c {q}; fi"


def short(command: str, limit: int = 80) -> str:
    """A command as one line for messages."""
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text[-limit:]


def command_failed(host: str, command: str, status: int, stdout: str, stderr: str) -> CommandFailed:
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    message = f'{host}: "{short(command)}" exited {status}' + (f": {short(last, 160)}" if last else "")
    return CommandFailed(message, status=status, stdout_tail=tail(stdout), stderr_tail=tail(stderr))


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


async def rechunk(chunks: Chunks) -> AsyncIterator[bytes]:
    """Writes of WRITE_MIN..WRITE_MAX bytes from any chunking. A plain iterator (a generator
    reading a file) is advanced in a thread so that many hosts stream at once."""
    buf = bytearray()
    async for chunk in _aiter(chunks):
        if not buf and WRITE_MIN <= len(chunk) <= WRITE_MAX:
            yield chunk
            continue
        buf += chunk
        while len(buf) >= WRITE_MAX:
            yield bytes(buf[:WRITE_MAX])
            del buf[:WRITE_MAX]
        if len(buf) >= WRITE_MIN:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


async def _aiter(chunks: Chunks) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    elif isinstance(chunks, bytes | bytearray):
        yield bytes(chunks)
    elif isinstance(chunks, list | tuple):
        for chunk in chunks:
            yield chunk if isinstance(chunk, bytes) else bytes(chunk)
    else:
        it = iter(chunks)
        while (piece := await asyncio.to_thread(_next_chunk, it)) is not None:
            yield piece


def _next_chunk(it: Iterator[bytes]) -> bytes | None:
    """The next chunk, None at the end (run in a thread: the iterator may read a file)."""
    for chunk in it:
        return chunk if isinstance(chunk, bytes) else bytes(chunk)
    return None


class _Runner(Protocol):
    async def run(
        self,
        host: str,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout_s: float | None = None,
        check: bool = True,
    ) -> CommandResult: ...

    async def pipe_to(
        self,
        host: str,
        remote_command: str,
        chunks: Chunks,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        check: bool = True,
    ) -> StreamResult: ...


def _read_file(path: Path, digest: hashlib._Hash) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(READ_SIZE):
            digest.update(chunk)
            yield chunk


async def put_file(driver: _Runner, host: str, local: Path, remote: str, mode: int) -> int:
    """Stream `local` into a temp file beside `remote`, hashing it here as it goes; the host's
    `sha256sum` of the temp file must match before chmod + rename make it visible."""
    if not local.is_file():
        raise HostError(f"{host}: cannot upload {local}: not a regular file", host=host, step="put_file")
    target = PurePosixPath(remote)
    tmp = target.with_name(f".{target.name}.sealer-{secrets.token_hex(4)}")
    q_tmp, q_target, q_dir = shlex.quote(str(tmp)), shlex.quote(str(target)), shlex.quote(str(target.parent))
    digest = hashlib.sha256()
    result = await driver.pipe_to(
        host, f"mkdir -p {q_dir} && cat > {q_tmp} && sha256sum {q_tmp}", _read_file(local, digest)
    )
    remote_hex = result.stdout.split(" ", 1)[0].strip()
    if remote_hex != digest.hexdigest():
        await driver.run(host, f"rm -f {q_tmp}", check=False)
        raise HostError(
            f"{host}: {remote} arrived with sha256 {remote_hex[:12] or '?'}, sent {digest.hexdigest()[:12]}",
            host=host,
            step="put_file",
        )
    await driver.run(
        host, f"chmod {mode:o} {q_tmp} && mv -f {q_tmp} {q_target} || {{ rm -f {q_tmp}; exit 1; }}"
    )
    return result.bytes_sent


async def path_test(driver: _Runner, host: str, flag: str, path: str) -> bool:
    q = shlex.quote(path)
    result = await driver.run(
        host, f"test {flag} {q}" + (f" || test -L {q}" if flag == "-e" else ""), check=False
    )
    return result.exit_status == 0


async def platform(driver: _Runner, host: str) -> Platform:
    machine = (await driver.run(host, "uname -m")).stdout.strip()
    parsed = Platform.parse(f"linux/{machine}")
    variant = {"arm64": "v8", "arm": "v7"}.get(parsed.architecture)
    return Platform(parsed.os, parsed.architecture, variant)


async def hostname(driver: _Runner, host: str) -> str:
    return (await driver.run(host, "uname -n")).stdout.strip()


class DerivedMethods:
    """The InfraDriver methods every driver builds the same way on its own `run` and `pipe_to`
    (the `self: _Runner` annotations say that a subclass must provide those two)."""

    async def stream_to(
        self: _Runner,
        host: str,
        remote_command: str,
        chunks: Chunks,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> int:
        return (await self.pipe_to(host, remote_command, chunks, env=env, timeout_s=timeout_s)).bytes_sent

    async def put_file(self: _Runner, host: str, local: Path, remote: str, *, mode: int = 0o644) -> int:
        return await put_file(self, host, local, remote, mode)

    async def exists(self: _Runner, host: str, path: str) -> bool:
        return await path_test(self, host, "-e", path)

    async def is_dir(self: _Runner, host: str, path: str) -> bool:
        return await path_test(self, host, "-d", path)

    async def platform(self: _Runner, host: str) -> Platform:
        return await platform(self, host)

    async def hostname(self: _Runner, host: str) -> str:
        return await hostname(self, host)
