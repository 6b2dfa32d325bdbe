"""Credentials as docker keeps them: Docker's config.json, and the credential helpers it names.

Location: the explicit `auth_file`, else `$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`. Entries are `"auths": {HOST: {"auth": base64(user:pass)}}`; reading also
accepts keys written as URLs (`https://HOST`, `https://HOST/v1/`) and docker.io's legacy
`https://index.docker.io/v1/` key, as docker's own lookup does. Writes keep every other key and
field, go through a temp file + rename and leave the file 0600 (it holds passwords).

Credential helpers: `credHelpers: {HOST: NAME}` names the helper for one registry, else
`credsStore: NAME` the helper for all, as docker's `GetCredentialsStore` chooses. A helper is the
program `docker-credential-NAME` on PATH; the protocol (get/store/erase with JSON on stdin and
stdout) is spoken by the `docker` package's `docker.credentials.Store` (the former
`dockerpycreds`), not by code of ours. With a helper: reading asks it first and falls back to an
inline `auths` entry (as docker-py does); login stores the secret in the helper and leaves only
an empty `auths` entry naming the registry (as docker's native store does); logout erases it
from the helper and the file. The server name given to a helper is the host (`HOST:PORT`), or
`https://index.docker.io/v1/` for Docker Hub, as docker passes them. A helper missing, failing or
answering garbage is an AuthError naming it; identity tokens (user `<token>`) are not used.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import subprocess
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder._fs import atomic_write
from builder.errors import AuthError

log = logging.getLogger(__name__)

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
HELPER_PREFIX = "docker-credential-"
TOKEN_USERNAME = "<token>"  # docker's marker for an identity token in a helper's Username
MAX_DETAIL_CHARS = 200
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY)


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    @property
    def basic(self) -> str:
        """The base64 `user:pass` of the config file and of a Basic Authorization header."""
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def __repr__(self) -> str:  # never show a password in a traceback or a log
        return f"Credentials(username={self.username!r}, password=***)"


def default_auth_file() -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    env = os.environ.get("DOCKER_CONFIG")
    if env:
        return Path(env) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _keys_for(registry: str) -> list[str]:
    if registry in _HUB_ALIASES:
        return list(_HUB_ALIASES)
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"]


def _store_key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry in _HUB_ALIASES else registry


def read_config(path: Path) -> dict[str, Any]:
    """The parsed file ({} when missing); AuthError when it is not a JSON object."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise AuthError(f"cannot read the auth file {path}: {err.strerror}") from None
    try:
        obj = json.loads(data or b"{}")
    except ValueError:
        raise AuthError(f"the auth file {path} is not valid JSON", hint="fix or remove it") from None
    if not isinstance(obj, dict):
        raise AuthError(f"the auth file {path} is not a JSON object", hint="fix or remove it")
    return obj


def lookup(config: dict[str, Any], registry: str) -> Credentials | None:
    """Inline credentials for `registry` in a parsed config, if any."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    for key in _keys_for(registry):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise AuthError(f"the auth entry for {key} is not base64 user:password") from None
            if sep:
                return Credentials(user, password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
    return None


@dataclass(frozen=True, slots=True)
class Helper:
    """The credential helper config.json names for a registry: `docker-credential-NAME`."""

    name: str
    setting: str  # where it is named: `credsStore` or `credHelpers["HOST"]`
    auth_file: Path

    @property
    def program(self) -> str:
        return HELPER_PREFIX + self.name

    def _error(self, what: str) -> AuthError:
        return AuthError(
            f"credential helper {self.program} ({self.setting} in {self.auth_file}) {what}",
            hint=f"install or fix {self.program}, or remove {self.setting} from {self.auth_file}",
        )

    def _store(self) -> Any:
        """docker's `Store` for this helper; AuthError when the program is not on PATH."""
        with warnings.catch_warnings():
            # Store() warns when the program is missing; we raise instead, in one line.
            warnings.simplefilter("ignore")
            from docker.credentials import Store

            store = Store(self.name)
        if store.exe is None:
            raise self._error("is not installed or not on PATH")
        return store

    def _failure(self, err: Exception, what: str) -> AuthError:
        cause = err.__cause__
        if isinstance(cause, subprocess.CalledProcessError):
            output = (cause.output or b"").decode(errors="replace").strip().splitlines()
            detail = f"exited with status {cause.returncode}" + (f": {output[0]}" if output else "")
        else:
            detail = (str(err).strip().splitlines() or [err.__class__.__name__])[0]
        return self._error(f"failed to {what}: {detail[:MAX_DETAIL_CHARS]}")

    def get(self, server: str) -> Credentials | None:
        """The helper's credentials for `server`, None when it holds none (or only a token)."""
        from docker.credentials import CredentialsNotFound, StoreError

        store = self._store()
        try:
            found = store.get(server)
        except CredentialsNotFound:
            return None
        except StoreError as err:
            raise self._failure(err, f"get credentials for {server}") from None
        except (ValueError, KeyError, TypeError):  # not JSON, or not the protocol's object
            raise self._error(f"answered something other than credentials JSON for {server}") from None
        username, secret = found.get("Username"), found.get("Secret")
        if not isinstance(username, str) or not isinstance(secret, str):
            raise self._error(f"answered something other than credentials JSON for {server}")
        if username == TOKEN_USERNAME:
            # An OAuth identity token (Docker Desktop's SSO login): exchanging it needs the
            # token server's refresh flow, which we do not speak. Anonymous access may still do.
            log.warning("%s holds an identity token for %s, which sealer cannot use", self.program, server)
            return None
        return Credentials(username, secret)

    def store(self, server: str, credentials: Credentials) -> None:
        from docker.credentials import StoreError

        try:
            self._store().store(server, credentials.username, credentials.password)
        except StoreError as err:
            raise self._failure(err, f"store credentials for {server}") from None

    def erase(self, servers: Iterable[str]) -> bool:
        """Erase what the helper holds under any of `servers`; True when something was there.

        Helpers disagree on erasing what they do not hold (some fail, some succeed), so each
        name is looked up first and only the ones found are erased."""
        from docker.credentials import StoreError

        erased = False
        for server in servers:
            if self.get(server) is None:
                continue
            try:
                self._store().erase(server)
            except StoreError as err:
                raise self._failure(err, f"erase credentials for {server}") from None
            erased = True
        return erased


def find_helper(config: dict[str, Any], auth_file: Path, registry: str) -> Helper | None:
    """`credHelpers[registry]`, else `credsStore`, else None (docker's GetCredentialsStore)."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key in _keys_for(registry):
            name = helpers.get(key)
            if isinstance(name, str) and name:
                return Helper(name, f'credHelpers["{key}"]', auth_file)
    name = config.get("credsStore")
    if isinstance(name, str) and name:
        return Helper(name, "credsStore", auth_file)
    return None


def find_credentials(path: Path, registry: str) -> Credentials | None:
    """The credentials for `registry`: its helper's first, else the inline `auths` entry."""
    config = read_config(path)
    helper = find_helper(config, path, registry)
    if helper is not None:
        found = helper.get(_store_key(registry))
        if found is not None:
            return found
    return lookup(config, registry)


def store_credentials(path: Path, registry: str, credentials: Credentials) -> None:
    """Keep the credentials for `registry`: in its helper if config.json names one (the file
    then gets an `auths` entry without secrets, as docker writes), else inline. Everything
    else in the file is kept (atomic, 0600)."""
    config = read_config(path)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    key = _store_key(registry)
    entry = auths.get(key)
    entry = dict(entry) if isinstance(entry, dict) else {}
    for secret in ("auth", "username", "password", "identitytoken"):
        entry.pop(secret, None)
    helper = find_helper(config, path, registry)
    if helper is not None:
        helper.store(key, credentials)
    else:
        entry["auth"] = credentials.basic
    auths[key] = entry
    config["auths"] = auths
    _write(path, config)


def remove_credentials(path: Path, registry: str) -> bool:
    """Erase `registry` from its helper and drop every entry naming it from the file; True
    when either held something."""
    config = read_config(path)
    helper = find_helper(config, path, registry)
    erased = helper.erase(_keys_for(registry)) if helper is not None else False
    auths = config.get("auths")
    removed = [key for key in _keys_for(registry) if key in auths] if isinstance(auths, dict) else []
    if removed:
        assert isinstance(auths, dict)
        for key in removed:
            del auths[key]
        _write(path, config)
    return erased or bool(removed)


def _write(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, (json.dumps(config, indent="\t") + "\n").encode(), mode=0o600)
