"""Credentials on the command line as docker, skopeo and podman users expect them: `login`
prompting on a terminal, credential helpers, `--creds`, `--authfile`/REGISTRY_AUTH_FILE, a bare
`--tls-verify`, `logout` of an unknown registry, a refused connection."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.store.layout import Store
from tests.component.cli.test_cli import one_error_line
from tests.component.registry._credential_helper import HelperBin, helper_bin, write_docker_config
from tests.conftest import SealerRunner
from tests.registry_fixtures import RegistryServer, free_port
from tests.validate import validate_image

__all__ = ["helper_bin"]

KUBEFILE = "FROM scratch\nCOPY f.txt etc/\n"
SEALER = str(Path(sys.executable).parent / "sealer")
TERMINAL_TIMEOUT_S = 60.0


def run_on_terminal(argv: list[str], answers: list[tuple[str, str]]) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as stdin, stdout and stderr; answer each prompt
    (the first of `answers` whose text appears) and return (exit status, transcript)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True
    )
    os.close(slave)
    transcript, seen = b"", 0
    pending = list(answers)
    deadline = time.monotonic() + TERMINAL_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every holder of the terminal's other end has closed it
                break
            if not chunk:
                break
            transcript += chunk
            if pending and pending[0][0].encode() in transcript[seen:]:
                os.write(master, pending.pop(0)[1].encode() + b"\n")
                seen = len(transcript)
        else:
            raise AssertionError(f"{argv} still running after {TERMINAL_TIMEOUT_S} s: {transcript!r}")
        return proc.wait(timeout=10), transcript.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_login_asks_user_and_password_on_a_terminal_without_echo(
    auth_registry: RegistryServer, docker_config: Path, root: Path
) -> None:
    user, password = str(auth_registry.username), str(auth_registry.password)
    argv = [SEALER, "--root", str(root), "login", auth_registry.host, "--ca-cert", str(auth_registry.ca_cert)]
    status, transcript = run_on_terminal(argv, [("Username:", user), ("Password: ", password)])
    assert status == 0, transcript
    assert "Login succeeded" in transcript and user in transcript
    assert password not in transcript  # not echoed
    assert auth_registry.host in json.loads((docker_config / "config.json").read_text())["auths"]


def test_login_without_a_terminal_needs_the_flags(
    sealer: SealerRunner, auth_registry: RegistryServer, docker_config: Path
) -> None:
    no_password = sealer("login", auth_registry.host, "-u", "someone", expect=2)
    assert "password" in one_error_line(no_password.stderr) and "--password-stdin" in no_password.stderr
    no_user = sealer("login", auth_registry.host, "--password-stdin", input="x\n", expect=2)
    assert "user" in one_error_line(no_user.stderr) and "-u" in no_user.stderr
    assert not (docker_config / "config.json").exists()


def test_logout_of_a_registry_without_credentials_is_a_note(
    sealer: SealerRunner, docker_config: Path
) -> None:
    result = sealer("logout", "registry.example.com")
    assert result.stdout.strip() == "Not logged in to registry.example.com"
    assert result.stderr == ""


def test_creds_on_push_pull_and_build(
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    tmp_path: Path,
    auth_registry: RegistryServer,
    docker_config: Path,
) -> None:
    ca = ["--ca-cert", str(auth_registry.ca_cert)]
    creds = ["--creds", f"{auth_registry.username}:{auth_registry.password}"]
    ctx = make_context({"f.txt": "x\n"}, kubefile=KUBEFILE)
    digest = sealer("build", "-q", "-t", "demo/app:v1", str(ctx)).stdout.strip()
    remote = f"{auth_registry.host}/demo/app:v1"
    wrong = sealer("push", "demo/app:v1", remote, *ca, "--creds", f"{auth_registry.username}:nope", expect=1)
    assert auth_registry.host in one_error_line(wrong.stderr)
    assert sealer("push", "demo/app:v1", remote, *ca, *creds).stdout.strip() == digest
    sealer("rmi", "demo/app:v1")
    assert sealer("pull", remote, *ca, *creds).stdout.strip() == digest
    child = make_context({"f.txt": "y\n"}, kubefile=f"FROM {remote}\nCOPY f.txt etc/g.txt\n")
    sealer("rmi", remote)
    sealer("build", "-q", "-t", "demo/child:v1", *ca, *creds, str(child))
    validate_image(Store.open(tmp_path / "sealer-root"), "demo/child:v1")
    assert not (docker_config / "config.json").exists()  # --creds stores nothing

    no_password = sealer("pull", remote, *ca, "--creds", str(auth_registry.username), expect=2)
    assert "--creds" in one_error_line(no_password.stderr)
    empty_user = sealer("pull", remote, *ca, "--creds", ":pw", expect=2)
    assert "--creds" in one_error_line(empty_user.stderr)


def test_creds_without_password_asks_on_a_terminal(
    auth_registry: RegistryServer, docker_config: Path, root: Path
) -> None:
    argv = [
        SEALER, "--root", str(root), "pull", f"{auth_registry.host}/none/here:v1",
        "--ca-cert", str(auth_registry.ca_cert), "--creds", str(auth_registry.username),
    ]  # fmt: skip
    status, transcript = run_on_terminal(argv, [("Password for sealer: ", str(auth_registry.password))])
    # the password was taken (a 404, not a 401) and not echoed
    assert status == 1 and "not found" in transcript, transcript
    assert str(auth_registry.password) not in transcript


def test_login_through_a_credential_helper_and_push_with_it(
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    auth_registry: RegistryServer,
    helper_bin: HelperBin,
    docker_config: Path,
) -> None:
    helper_bin.install("sealertest")
    write_docker_config(docker_config, {"credsStore": "sealertest"})
    ca = ["--ca-cert", str(auth_registry.ca_cert)]
    user, password = str(auth_registry.username), str(auth_registry.password)
    sealer("login", auth_registry.host, "-u", user, "--password-stdin", *ca, input=password + "\n")
    assert helper_bin.data("sealertest") == {auth_registry.host: [user, password]}
    ctx = make_context({"f.txt": "x\n"}, kubefile=KUBEFILE)
    sealer("build", "-q", "-t", "demo/app:v1", str(ctx))
    sealer("push", "demo/app:v1", f"{auth_registry.host}/demo/app:v1", *ca)
    out = sealer("logout", auth_registry.host).stdout
    assert out.strip() == f"Removed login credentials for {auth_registry.host}"
    assert helper_bin.data("sealertest") == {}


@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_missing_authfile_is_an_error_for_reading_commands(
    where: str,
    sealer: SealerRunner,
    tmp_path: Path,
    make_context: Callable[..., Path],
    auth_registry: RegistryServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = tmp_path / "nowhere" / "auth.json"
    flag = ["--authfile", str(missing)] if where == "flag" else []
    if where == "env":
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(missing))
    ca = ["--ca-cert", str(auth_registry.ca_cert)]
    remote = f"{auth_registry.host}/demo/app:v1"
    ctx = make_context({"f.txt": "x\n"}, kubefile=KUBEFILE)
    for args in (
        ["pull", remote, *ca, *flag],
        ["push", "demo/app:v1", remote, *ca, *flag],
        ["build", "-t", "x:v1", *flag, str(make_context({}, kubefile=f"FROM {remote}\n"))],
    ):
        result = sealer(*args, expect=2)
        line = one_error_line(result.stderr)
        assert str(missing) in line and "does not exist" in line, line
    # login creates it
    sealer(
        "login", auth_registry.host, "-u", str(auth_registry.username), "--password-stdin", *ca, *flag,
        input=f"{auth_registry.password}\n",
    )  # fmt: skip
    assert auth_registry.host in json.loads(missing.read_text())["auths"]
    sealer("build", "-q", "-t", "demo/app:v1", str(ctx))
    sealer("push", "demo/app:v1", remote, *ca, *flag)


def test_bare_tls_verify_means_true_and_takes_no_argument(
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    tls_registry: RegistryServer,
    registry: RegistryServer,
) -> None:
    ctx = make_context({"f.txt": "x\n"}, kubefile=KUBEFILE)
    digest = sealer("build", "-q", "-t", "demo/app:v1", str(ctx)).stdout.strip()
    plain = f"{registry.host}/demo/app:v1"
    # the bare flag before the positional arguments no longer swallows NAME
    assert sealer("push", "--tls-verify", "demo/app:v1", plain).stdout.strip() == digest
    assert sealer("pull", "--tls-verify", plain).stdout.strip() == digest
    assert sealer("pull", plain, "--tls-verify").stdout.strip() == digest
    secure = f"{tls_registry.host}/demo/app:v1"
    refused = sealer("push", "demo/app:v1", secure, "--tls-verify", expect=1)
    assert "certificate verification failed" in one_error_line(refused.stderr)
    assert sealer("push", "demo/app:v1", secure, "--tls-verify=false").stdout.strip() == digest
    assert sealer("pull", secure, "--tls-verify=true", "--ca-cert", str(tls_registry.ca_cert)).exit_code == 0
    bad = sealer("pull", secure, "--tls-verify=maybe", expect=2)
    assert "maybe" in bad.stderr
    # as podman: only `=false` turns it off; a separate `false` is an argument of its own
    sealer("pull", "--tls-verify", "false", secure, expect=2)


def test_a_refused_connection_fails_at_once(sealer: SealerRunner) -> None:
    host = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = sealer("pull", f"{host}/demo/app:v1", expect=1)
    took = time.monotonic() - started
    assert took < 2, f"took {took:.1f} s"  # was 5.5 s of retries
    line = one_error_line(result.stderr)
    assert host in line and "connection refused" in line
    assert "retrying" not in result.stderr
