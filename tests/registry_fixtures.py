"""A real CNCF distribution registry (`/usr/bin/docker-registry`, Debian's docker-registry 2.8)
for tests: plain HTTP, TLS with a self-signed CA, and htpasswd basic auth (over TLS).

Import the fixtures into a conftest (`from tests.registry_fixtures import registry,
tls_registry, auth_registry, docker_config`). Each fixture starts its own registry process on
127.0.0.1 at a free port with storage under the test's tmp_path, waits (bounded) for `/v2/` to
answer, and kills the process by its PID in a finalizer, also when the test fails. A missing
binary (docker-registry, openssl, htpasswd) fails the test; it never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import token_server
from tests.token_server import TokenServer

REGISTRY_BIN = "/usr/bin/docker-registry"
START_TIMEOUT_S = 10.0
USERNAME = "sealer"
PASSWORD = "s3cret-pass"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed (make install puts it in place)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key)."""
    openssl = _need("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca").mkdir(exist_ok=True)
    # ca.crt alone in its dir, so that `skopeo --cert-dir` (which treats *.key as client keys)
    # can be pointed at it.
    ca_key, ca_crt = directory / "ca.key", directory / "ca" / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sealer test CA",
        "-keyout", str(ca_key), "-out", str(ca_crt))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    return ca_crt, crt, key


@dataclass
class RegistryServer:
    """One docker-registry process; `kill()` and `start()` (same port, same storage) for faults."""

    workdir: Path
    tls: bool = False
    auth: bool = False
    port: int = field(default_factory=free_port)
    username: str | None = None
    password: str | None = None
    ca_cert: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    token: TokenServer | None = None  # bearer-token auth through this token server

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the registry part of a reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    @property
    def ca_dir(self) -> Path | None:
        """A directory holding only `ca.crt` (for `skopeo --cert-dir`)."""
        return self.ca_cert.parent if self.ca_cert else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    def blob_data_path(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps the bytes of `sha256:<hex>`."""
        hex_ = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def _write_config(self) -> Path:
        self.storage.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: sealer-test-secret",
        ]
        if self.tls:
            certs = self.workdir / "certs"
            if self.ca_cert is None:
                self.ca_cert, _, _ = make_ca(certs)
            crt, key = certs / "server.crt", certs / "server.key"
            lines += ["  tls:", f"    certificate: {crt}", f"    key: {key}"]
        if self.auth:
            htpasswd = self.workdir / "htpasswd"
            if not htpasswd.exists():
                self.username, self.password = USERNAME, PASSWORD
                subprocess.run(
                    [_need("htpasswd"), "-Bbc", str(htpasswd), self.username, self.password],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines += ["auth:", "  htpasswd:", "    realm: sealer-test", f"    path: {htpasswd}"]
        if self.token is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token.realm}",
                f"    service: {token_server.SERVICE}",
                f"    issuer: {token_server.ISSUER}",
                f"    rootcertbundle: {self.token.cert_path}",
            ]
        config = self.workdir / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> None:
        """Start (or restart) the process and wait until `/v2/` answers."""
        if not os.access(REGISTRY_BIN, os.X_OK):
            pytest.fail(f"{REGISTRY_BIN} is missing (apt-get install docker-registry)")
        config = self._write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # distribution reads REGISTRY_* variables as config overrides
                # (REGISTRY_AUTH_FILE, which podman tools use, would become `auth.file`).
                env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")},
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_cert)) if self.tls else None
        deadline = time.monotonic() + START_TIMEOUT_S
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1, context=context):
                    return
            except urllib.error.HTTPError as err:
                if err.code == 401:  # auth set-up: answering is enough
                    return
                last = err
            except (OSError, urllib.error.URLError) as err:
                last = err
            time.sleep(0.05)
        log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        self.kill()
        pytest.fail(
            f"docker-registry on {self.host} did not answer /v2/ in {START_TIMEOUT_S}s: {last}\n{log}"
        )

    def kill(self) -> None:
        """SIGKILL the process (by PID) and reap it; idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.proc = None


def _serve(tmp_path: Path, name: str, *, tls: bool, auth: bool) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path / name, tls=tls, auth=auth)
    server.workdir.mkdir(parents=True, exist_ok=True)
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DOCKER_CONFIG pointed at an empty tmp dir, so nothing touches ~/.docker."""
    path = tmp_path / "docker-config"
    path.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(path))
    return path


@pytest.fixture
def registry(tmp_path: Path, docker_config: Path) -> Iterator[RegistryServer]:
    """docker-registry over plain HTTP on 127.0.0.1."""
    yield from _serve(tmp_path, "registry", tls=False, auth=False)


@pytest.fixture
def tls_registry(tmp_path: Path, docker_config: Path) -> Iterator[RegistryServer]:
    """docker-registry over HTTPS with a certificate from a fresh self-signed CA (`.ca_cert`)."""
    yield from _serve(tmp_path, "tls-registry", tls=True, auth=False)


@pytest.fixture
def auth_registry(tmp_path: Path, docker_config: Path) -> Iterator[RegistryServer]:
    """docker-registry with htpasswd basic auth (`.username`/`.password`), over TLS (`.ca_cert`)."""
    yield from _serve(tmp_path, "auth-registry", tls=True, auth=True)


@pytest.fixture
def token_registry(tmp_path: Path, docker_config: Path) -> Iterator[RegistryServer]:
    """docker-registry with bearer-token auth (a real token server issuing RS256 JWTs), over
    TLS; `.username`/`.password` are what the token server accepts."""
    workdir = tmp_path / "token-registry"
    workdir.mkdir()
    tokens = TokenServer(USERNAME, PASSWORD, workdir / "token-signer.crt")
    tokens.start()
    server = RegistryServer(workdir, tls=True, token=tokens, username=USERNAME, password=PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        tokens.stop()
