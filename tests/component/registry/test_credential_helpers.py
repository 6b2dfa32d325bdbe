"""Credentials kept by `docker-credential-*` helpers (`credsStore`, `credHelpers` in config.json)
against a real htpasswd registry over TLS, and refused connections that fail at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from builder.errors import AuthError, RegistryUnavailable
from builder.registry.client import RegistryClient, RegistryOptions
from builder.registry.events import RegistryEvent, Retrying
from builder.store.layout import Store
from tests.component.registry._credential_helper import HelperBin, helper_bin, write_docker_config
from tests.component.registry._images import add_image
from tests.registry_fixtures import RegistryServer, free_port
from tests.validate import validate_image

__all__ = ["helper_bin"]


def _client(server: RegistryServer) -> RegistryClient:
    return RegistryClient(RegistryOptions(ca_cert=server.ca_cert, timeout_s=10))


def test_login_through_creds_store_then_push_and_pull_with_the_helpers_credentials(
    auth_registry: RegistryServer, helper_bin: HelperBin, docker_config: Path, tmp_path: Path
) -> None:
    helper_bin.install("sealertest")
    config = write_docker_config(docker_config, {"credsStore": "sealertest", "other": {"kept": 1}})
    user, password = str(auth_registry.username), str(auth_registry.password)
    _client(auth_registry).login(auth_registry.host, user, password)
    assert helper_bin.data("sealertest") == {auth_registry.host: [user, password]}
    written = json.loads(config.read_text())
    # as docker's native store: the file names the registry, the secret stays in the helper
    assert written["auths"] == {auth_registry.host: {}} and written["other"] == {"kept": 1}
    assert password not in config.read_text()

    src = Store.open(tmp_path / "src")
    desc = add_image(src, "app:v1", [{"a": b"a" * 1000}])
    ref = f"{auth_registry.host}/team/app:v1"
    assert _client(auth_registry).push(src, "app:v1", ref).digest == desc.digest
    dst = Store.open(tmp_path / "dst")
    assert _client(auth_registry).pull(dst, ref).digest == desc.digest
    validate_image(dst, ref)
    assert f"get {auth_registry.host}" in helper_bin.calls("sealertest")


def test_cred_helpers_choose_the_helper_per_registry(
    auth_registry: RegistryServer, helper_bin: HelperBin, docker_config: Path, tmp_path: Path
) -> None:
    helper_bin.install("sealertest")
    helper_bin.install("team")
    write_docker_config(
        docker_config, {"credsStore": "sealertest", "credHelpers": {auth_registry.host: "team"}}
    )
    user, password = str(auth_registry.username), str(auth_registry.password)
    _client(auth_registry).login(auth_registry.host, user, password)
    assert helper_bin.data("team") == {auth_registry.host: [user, password]}
    assert helper_bin.data("sealertest") == {}
    store = Store.open(tmp_path / "s")
    add_image(store, "app:v1")
    _client(auth_registry).push(store, "app:v1", f"{auth_registry.host}/app:v1")
    assert helper_bin.calls("sealertest") == []  # credHelpers wins over credsStore

    assert _client(auth_registry).logout(auth_registry.host) is True
    assert helper_bin.data("team") == {}
    assert _client(auth_registry).logout(auth_registry.host) is False
    with pytest.raises(AuthError):  # the helper forgot: the registry refuses the push
        _client(auth_registry).push(store, "app:v1", f"{auth_registry.host}/app:v2")


def test_inline_auths_still_serve_when_the_helper_has_nothing(
    auth_registry: RegistryServer, helper_bin: HelperBin, docker_config: Path, tmp_path: Path
) -> None:
    helper_bin.install("sealertest")
    user, password = str(auth_registry.username), str(auth_registry.password)
    import base64

    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    write_docker_config(
        docker_config, {"credsStore": "sealertest", "auths": {auth_registry.host: {"auth": basic}}}
    )
    store = Store.open(tmp_path / "s")
    add_image(store, "app:v1")
    _client(auth_registry).push(store, "app:v1", f"{auth_registry.host}/app:v1")
    assert helper_bin.calls("sealertest") == [f"get {auth_registry.host}"]
    assert _client(auth_registry).logout(auth_registry.host) is True  # the inline entry went
    assert auth_registry.host not in json.loads((docker_config / "config.json").read_text())["auths"]


BROKEN = {
    "missing": (None, "is not installed or not on PATH"),
    "garbage": ("#!/bin/sh\necho 'not json'\n", "answered something other than credentials JSON"),
    "failing": ("#!/bin/sh\necho 'keyring locked'\nexit 3\n", "exited with status 3: keyring locked"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_helper_is_one_auth_error_line(
    kind: str, helper_bin: HelperBin, docker_config: Path, tmp_path: Path
) -> None:
    script, expected = BROKEN[kind]
    name = f"broken-{kind}"
    if script is not None:
        helper_bin.install(name, script)
    write_docker_config(docker_config, {"credsStore": name})
    store = Store.open(tmp_path / "s")
    add_image(store, "app:v1")
    with pytest.raises(AuthError) as info:  # before any connection: the port is closed anyway
        RegistryClient().push(store, "app:v1", f"127.0.0.1:{free_port()}/app:v1")
    message = str(info.value)
    assert f"docker-credential-{name} (credsStore in " in message, message
    assert expected in message and "\n" not in message, message
    assert info.value.hint and "credsStore" in info.value.hint


@pytest.mark.parametrize("plain_http", [None, True])
def test_a_refused_connection_fails_at_once_without_retries(
    plain_http: bool | None, docker_config: Path, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "s")
    add_image(store, "app:v1")
    host = f"127.0.0.1:{free_port()}"
    retries: list[RegistryEvent] = []

    def on_event(event: RegistryEvent) -> None:
        if isinstance(event, Retrying):
            retries.append(event)

    client = RegistryClient(RegistryOptions(plain_http=plain_http), on_event=on_event)
    for operation in (
        lambda: client.push(store, "app:v1", f"{host}/app:v1"),
        lambda: client.pull(store, f"{host}/app:v1"),
        lambda: client.login(host, "u", "p"),
    ):
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable) as info:
            operation()
        took = time.monotonic() - started
        assert took < 2, f"a refused connection took {took:.1f} s"  # was 5.5 s of retries
        assert "connection refused" in str(info.value) and host in str(info.value)
        assert info.value.temporary is True  # running the command again, later, may help
    assert retries == []
