"""Credentials in Docker's config.json, the file docker, skopeo and oras read too.

Location: the explicit `auth_file`, else `$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`. Entries are `"auths": {HOST: {"auth": base64(user:pass)}}`; reading also
accepts keys written as URLs (`https://HOST`, `https://HOST/v1/`) and docker.io's legacy
`https://index.docker.io/v1/` key, as docker's own lookup does. Writes keep every other key and
field, go through a temp file + rename and leave the file 0600 (it holds passwords).
Credential helpers (`credsStore`/`credHelpers`) are not consulted yet: only `auths` entries count.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder._fs import atomic_write
from builder.errors import AuthError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
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


def store_credentials(path: Path, registry: str, credentials: Credentials) -> None:
    """Add or replace the entry for `registry`, keeping everything else (atomic, 0600)."""
    config = read_config(path)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    key = _store_key(registry)
    entry = auths.get(key)
    entry = dict(entry) if isinstance(entry, dict) else {}
    entry.pop("username", None)
    entry.pop("password", None)
    entry["auth"] = credentials.basic
    auths[key] = entry
    config["auths"] = auths
    _write(path, config)


def remove_credentials(path: Path, registry: str) -> bool:
    """Drop every entry naming `registry`; True when one was there."""
    config = read_config(path)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return False
    removed = [key for key in _keys_for(registry) if key in auths]
    if not removed:
        return False
    for key in removed:
        del auths[key]
    _write(path, config)
    return True


def _write(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, (json.dumps(config, indent="\t") + "\n").encode(), mode=0o600)
