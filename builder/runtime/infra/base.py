"""The InfraDriver interface and its value types (sealer's `infradriver.InfraDriver`, in Python).

Every method takes the host as the address or name the cluster model holds; a driver maps it
to its own connection. Every failure is a `HostError` (could not reach or use the host) or a
`CommandFailed` (the host ran the command, which exited non-zero), with a one-line message that
names the host.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from builder.image.descriptor import Platform

# Host names `LocalDriver` answers to.
LOCAL_HOSTS = frozenset({"local", "localhost", "127.0.0.1", "::1"})

Chunks = AsyncIterable[bytes] | Iterable[bytes]


@dataclass(frozen=True, slots=True)
class SSHCredentials:
    """How to log into one host (the fields of the Clusterfile's `ssh`, in the same order).

    `user`/`port` None: from ~/.ssh/config when it names them for the host, else root and 22.
    `key_files` empty and no `password`: the agent (when `use_agent` and SSH_AUTH_SOCK is set)
    and ~/.ssh/id_* keys, as OpenSSH. A `password` with no `key_files` logs in by password only,
    so agent keys do not use up sshd's MaxAuthTries first. `known_hosts` None: ~/.ssh/known_hosts;
    `verify_host_keys=False` is the only way to skip the check. `proxy_jump`: "[user@]host[:port]"
    or a ~/.ssh/config alias, reached with that host's own credentials if the driver has them,
    else these (user and port from the spec). ~/.ssh/config's HostName, IdentityFile and
    ProxyJump apply too, below anything set here.
    """

    user: str | None = None
    port: int | None = None
    password: str | None = field(default=None, repr=False)
    key_files: tuple[Path | str, ...] = ()
    passphrase: str | None = field(default=None, repr=False)
    use_agent: bool = True
    known_hosts: Path | str | None = None
    verify_host_keys: bool = True
    proxy_jump: str | None = None
    connect_timeout_s: float = 10


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A finished command: exit status and its whole output, decoded as UTF-8 (replacing errors)."""

    host: str
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True, slots=True)
class StreamResult:
    """A finished `pipe_to`: bytes sent into the remote stdin, then what the command said."""

    host: str
    command: str
    bytes_sent: int
    exit_status: int
    stdout: str
    stderr: str  # the last 64 KiB at most


# --- progress events (the `on_event` callback of a driver) ---------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    host: str
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Disconnected:
    host: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelRetried:
    """sshd refused a session channel (MaxSessions); the driver waits and opens it again."""

    host: str
    attempt: int


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """Bytes sent so far into one remote command (after each write has drained)."""

    host: str
    command: str
    bytes_sent: int


InfraEvent = Connected | Disconnected | ChannelRetried | TransferProgress
EventCallback = Callable[[InfraEvent], None]


class InfraDriver(Protocol):
    """Commands and bytes on hosts. Safe to call concurrently for many hosts at once; each
    driver bounds its own concurrency."""

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
        """Run `command` with `sh -c`, `env` exported first. With `check`, a non-zero exit raises
        CommandFailed (exit status, output tails); a timeout raises HostError."""
        ...

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
        """Pipe `chunks` into the stdin of `remote_command` (1-4 MiB writes, each drained), then
        close its stdin and wait for it; its stdout is kept, stderr's last 64 KiB."""
        ...

    async def stream_to(
        self,
        host: str,
        remote_command: str,
        chunks: Chunks,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """`pipe_to` with check, returning the bytes sent (e.g. into "zstd -d | tar -x -C DIR")."""
        ...

    async def put_file(self, host: str, local: Path, remote: str, *, mode: int = 0o644) -> int:
        """Copy a file: streamed to a temp file beside `remote`, its sha256 checked on the host,
        then chmod and rename, so `remote` is the whole file or untouched. Returns bytes sent."""
        ...

    async def exists(self, host: str, path: str) -> bool: ...

    async def is_dir(self, host: str, path: str) -> bool: ...

    async def platform(self, host: str) -> Platform:
        """linux/<arch>[/variant] from `uname -m`."""
        ...

    async def hostname(self, host: str) -> str: ...

    async def close(self) -> None:
        """Close every connection; the driver may be used again afterwards (it reconnects)."""
        ...
