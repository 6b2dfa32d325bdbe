"""TLS (self-signed CA) and htpasswd auth against real docker-registry processes."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from builder.errors import AuthError, RegistryUnavailable
from builder.registry.client import RegistryClient, RegistryOptions
from builder.store.layout import Store
from tests.component.registry._images import add_image, run_tool
from tests.registry_fixtures import RegistryServer
from tests.validate import validate_image

pytestmark = pytest.mark.component


def test_tls_with_ca_cert_without_it_and_unverified(tls_registry: RegistryServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    desc = add_image(store, "app:v1")
    ref = f"{tls_registry.host}/app:v1"

    with pytest.raises(RegistryUnavailable) as info:
        RegistryClient().push(store, "app:v1", ref)
    message = str(info.value)
    assert "TLS" in message and tls_registry.host in message and "\n" not in message
    assert (
        info.value.hint is not None
        and "--ca-cert" in info.value.hint
        and "--tls-verify=false" in info.value.hint
    )
    assert info.value.temporary is False

    verified = RegistryClient(RegistryOptions(ca_cert=tls_registry.ca_cert))
    assert verified.push(store, "app:v1", ref).digest == desc.digest
    other = Store.open(tmp_path / "o")
    RegistryClient(RegistryOptions(tls_verify=False)).pull(other, ref)
    validate_image(other, ref)
    # plain_http=True against a TLS port is a clear error too, not a traceback
    with pytest.raises(RegistryUnavailable):
        RegistryClient(RegistryOptions(plain_http=True, retries=0)).resolve(ref)


def test_login_push_pull_logout(auth_registry: RegistryServer, docker_config: Path, tmp_path: Path) -> None:
    assert auth_registry.username and auth_registry.password
    opts = RegistryOptions(ca_cert=auth_registry.ca_cert)
    store = Store.open(tmp_path / "s")
    add_image(store, "app:v1")
    ref = f"{auth_registry.host}/private/app:v1"
    config_file = docker_config / "config.json"
    config_file.write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}}, "psFormat": "table"}))

    with pytest.raises(AuthError) as info:
        RegistryClient(opts).push(store, "app:v1", ref)
    assert info.value.hint and "sealer login" in info.value.hint and auth_registry.host in info.value.hint
    assert "\n" not in str(info.value)

    with pytest.raises(AuthError) as wrong:
        RegistryClient(opts).login(auth_registry.host, auth_registry.username, "wrong")
    assert auth_registry.username in str(wrong.value) and "\n" not in str(wrong.value)
    assert auth_registry.host not in json.loads(config_file.read_text())["auths"]

    RegistryClient(opts).login(auth_registry.host, auth_registry.username, auth_registry.password)
    saved = json.loads(config_file.read_text())
    assert saved["psFormat"] == "table" and saved["auths"]["other.example"] == {"auth": "eDp5"}
    token = base64.b64decode(saved["auths"][auth_registry.host]["auth"]).decode()
    assert token == f"{auth_registry.username}:{auth_registry.password}"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600

    client = RegistryClient(opts)
    desc = client.push(store, "app:v1", ref)
    pulled = Store.open(tmp_path / "p")
    assert client.pull(pulled, ref).digest == desc.digest
    skopeo = ["skopeo", "inspect", "--authfile", str(config_file), "--cert-dir", str(auth_registry.ca_dir)]
    info_json = json.loads(run_tool(*skopeo, f"docker://{ref}"))
    assert info_json["Digest"] == str(desc.digest)

    assert RegistryClient(opts).logout(auth_registry.host) is True
    assert RegistryClient(opts).logout(auth_registry.host) is False
    assert auth_registry.host not in json.loads(config_file.read_text())["auths"]
    with pytest.raises(AuthError):
        RegistryClient(opts).resolve(ref)


def test_bearer_token_flow(token_registry: RegistryServer, tmp_path: Path) -> None:
    """login and push/pull through distribution's token auth (a JWT from a token server)."""
    store = Store.open(tmp_path / "store")
    add_image(store, "bearer:v1")
    options = RegistryOptions(ca_cert=token_registry.ca_cert)
    remote = f"{token_registry.host}/team/bearer:v1"
    with pytest.raises(AuthError):
        RegistryClient(options).push(store, "bearer:v1", remote)
    with pytest.raises(AuthError):
        RegistryClient(options).login(token_registry.host, "sealer", "wrong")
    client = RegistryClient(options)
    client.login(token_registry.host, str(token_registry.username), str(token_registry.password))
    pushed = client.push(store, "bearer:v1", remote)
    assert token_registry.token is not None and token_registry.token.issued >= 1
    other = Store.open(tmp_path / "other")
    pulled = RegistryClient(options).pull(other, remote)
    assert pulled.digest == pushed.digest
