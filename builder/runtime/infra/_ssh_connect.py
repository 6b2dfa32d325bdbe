"""Opening one asyncssh connection from `SSHCredentials`, and turning every way that can fail
into a one-line `HostError` (`10.250.0.12: authentication failed for root (password)`).

Options, in order of precedence: the credentials, then ~/.ssh/config (HostName, User, Port,
IdentityFile, ProxyJump: asyncssh reads it), then sealer's defaults (root, 22). Ciphers put
aes128-gcm@openssh.com first: on AES-NI machines chacha20-poly1305 (OpenSSH's and asyncssh's
first choice) costs 1.6x the CPU per byte, and this driver moves whole rootfs layers.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.encryption import get_default_encryption_algs

from builder.errors import HostError
from builder.runtime.infra.base import SSHCredentials

PREFERRED_CIPHER = "aes128-gcm@openssh.com"
# Flow-control window per channel: asyncssh's 2 MiB default stalls a 4 MiB write; 8 MiB keeps
# the pipe full at ~400 MB/s over a LAN round trip without holding much memory per channel.
WINDOW_BYTES = 8 << 20
MAX_PACKET_BYTES = 256 << 10
KEEPALIVE_S = 30


def cipher_preference() -> list[str]:
    algs = [a.decode() for a in get_default_encryption_algs()]
    return (
        [PREFERRED_CIPHER, *(a for a in algs if a != PREFERRED_CIPHER)] if PREFERRED_CIPHER in algs else algs
    )


@dataclass(frozen=True, slots=True)
class Target:
    """Where a connection goes, resolved for messages: the name as given, user, port, known_hosts."""

    host: str
    user: str
    port: int
    known_hosts: Path | None  # None: not verified
    auth: str  # "publickey", "password", "publickey, password"


def _known_hosts_path(creds: SSHCredentials) -> Path | None:
    if not creds.verify_host_keys:
        return None
    return (
        Path(creds.known_hosts).expanduser() if creds.known_hosts else Path("~/.ssh/known_hosts").expanduser()
    )


def build_options(host: str, creds: SSHCredentials) -> tuple[asyncssh.SSHClientConnectionOptions, Target]:
    """asyncssh options for `host`; raises HostError for unreadable keys or known_hosts."""
    known_hosts = _known_hosts_path(creds)
    if known_hosts is not None and not known_hosts.is_file():
        raise HostError(
            f"{host}: host key cannot be verified: {known_hosts} does not exist",
            host=host,
            step="connect",
            hint=f"pass --known-hosts FILE listing the hosts' keys (ssh-keyscan {host} >> FILE, after "
            "checking them) or --insecure-skip-host-key-check (Clusterfile ssh.knownHosts, ssh.verifyHostKeys: false)",
        )
    kwargs: dict[str, Any] = {
        "known_hosts": str(known_hosts) if known_hosts else None,
        "encryption_algs": cipher_preference(),
        "connect_timeout": creds.connect_timeout_s,
        "keepalive_interval": KEEPALIVE_S,
        "window": WINDOW_BYTES,
        "max_pktsize": MAX_PACKET_BYTES,
        "password": creds.password,
        "passphrase": creds.passphrase,
    }
    if not creds.use_agent:
        kwargs["agent_path"] = None
    if creds.key_files:
        for path in creds.key_files:
            if not Path(path).expanduser().is_file():
                raise HostError(f"{host}: key file {path} not found", host=host, step="connect")
        kwargs["client_keys"] = [str(Path(p).expanduser()) for p in creds.key_files]
    elif creds.password is not None:
        kwargs["client_keys"] = None  # password only: see SSHCredentials
        kwargs["agent_path"] = None
    if creds.user is not None:
        kwargs["username"] = creds.user
    if creds.port is not None:
        kwargs["port"] = creds.port
    try:
        options = asyncssh.SSHClientConnectionOptions(host=host, **kwargs)
        config = getattr(options, "config", None)
        if creds.user is None and (config is None or config.get("User") is None):
            options = asyncssh.SSHClientConnectionOptions(options, username="root")
        if creds.port is None and (config is None or config.get("Port") is None):
            options = asyncssh.SSHClientConnectionOptions(options, port=22)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as err:
        raise HostError(f"{host}: cannot load an SSH key: {err}", host=host, step="connect") from None
    except (OSError, ValueError) as err:
        raise HostError(f"{host}: bad SSH settings: {err}", host=host, step="connect") from None
    methods = []
    if kwargs.get("client_keys", ()) is not None:
        methods.append("publickey")
    if creds.password is not None:
        methods.append("password")
    target = Target(host, str(options.username), int(options.port), known_hosts, ", ".join(methods) or "none")
    return options, target


def connect_error(target: Target, err: BaseException, timeout_s: float) -> HostError:
    """The one-line HostError for a failed connect or login."""
    host, where = target.host, f"{target.host}:{target.port}"

    def error(message: str, hint: str | None = None) -> HostError:
        return HostError(message, host=host, step="connect", hint=hint)

    if isinstance(err, asyncssh.PermissionDenied):
        return error(f"{host}: authentication failed for {target.user} ({target.auth})")
    if isinstance(err, asyncssh.HostKeyNotVerifiable):
        if _is_known(target):
            hint = (
                f"check the host's key, then update {target.known_hosts} (ssh-keygen -R {host}; "
                f"ssh-keyscan {host}), or set verify_host_keys=False (Clusterfile ssh.verifyHostKeys: false)"
            )
            return error(f"{host}: host key changed: it does not match {target.known_hosts}", hint)
        hint = (
            f"check the host's key, then add it (ssh-keyscan {host} >> {target.known_hosts}) or pass "
            "--known-hosts FILE; --insecure-skip-host-key-check skips the check "
            "(verify_host_keys=False, Clusterfile ssh.verifyHostKeys: false)"
        )
        return error(f"{host}: host key not in {target.known_hosts}", hint)
    if isinstance(err, TimeoutError | asyncio.TimeoutError):
        return error(f"{where}: connection timed out after {timeout_s:g} s")
    if isinstance(err, socket.gaierror):
        return error(f"{host}: cannot resolve host name ({err.strerror})")
    if isinstance(err, ConnectionRefusedError):
        return error(f"{where}: connection refused", "is sshd running and listening on that port?")
    if isinstance(err, OSError):
        reasons = {errno.EHOSTUNREACH: "no route to host", errno.ENETUNREACH: "network unreachable"}
        return error(f"{where}: {reasons.get(err.errno or 0, err.strerror or str(err))}")
    if isinstance(err, asyncssh.DisconnectError):
        return error(f"{where}: ssh disconnected during login: {err.reason}")
    return error(f"{where}: cannot connect: {err}")


def _is_known(target: Target) -> bool:
    """Whether known_hosts has some key for the host (so the one offered is a changed key)."""
    if target.known_hosts is None:
        return False
    try:
        known = asyncssh.read_known_hosts(str(target.known_hosts))
        return bool(known.match(target.host, target.host, None if target.port == 22 else target.port)[0])
    except (OSError, ValueError):
        return False
