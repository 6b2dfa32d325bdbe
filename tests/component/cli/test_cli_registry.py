"""`sealer login/logout/push/pull` as a pipeline meets them: outputs, files, one-line errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from builder.cli.main import cli
from builder.store.layout import Store
from tests.component.cli.test_cli import one_error_line
from tests.conftest import SealerRunner
from tests.registry_fixtures import RegistryServer
from tests.validate import validate_image

KUBEFILE = "FROM scratch\nCOPY f.txt etc/\n"


def other_store(root: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--root", str(root), *args], input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_push_then_pull_elsewhere(
    sealer: SealerRunner, make_context: Callable[..., Path], tmp_path: Path, registry: RegistryServer
) -> None:
    ctx = make_context({"f.txt": "x\n"}, kubefile=KUBEFILE)
    digest = sealer("build", "-q", "-t", "demo/app:v1", str(ctx)).stdout.strip()
    remote = f"{registry.host}/demo/app:v1"
    digestfile = tmp_path / "digest"
    pushed = sealer("push", "demo/app:v1", remote, "--digestfile", str(digestfile))
    assert pushed.stdout.strip() == digest
    assert digestfile.read_text().strip() == digest
    again = json.loads(sealer("push", "demo/app:v1", remote, "--format", "json").stdout)
    assert again["digest"] == digest and again["destination"] == remote
    assert "already there" not in again  # json output is the document only

    code, out, err = other_store(tmp_path / "elsewhere", "pull", remote)
    assert code == 0, err
    assert out.strip() == digest
    validate_image(Store.open(tmp_path / "elsewhere"), remote)
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{remote}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["Digest"] == digest


def test_registry_errors_are_one_line(
    sealer: SealerRunner, make_context: Callable[..., Path], registry: RegistryServer
) -> None:
    missing = sealer("pull", f"{registry.host}/nothing/here:v9", expect=1)
    line = one_error_line(missing.stderr)
    assert f"{registry.host}/nothing/here:v9" in line
    unknown = sealer("pull", "registry.invalid/team/app:v1", expect=1)
    assert "registry.invalid" in one_error_line(unknown.stderr)
    refused = sealer("push", "nothing:v1", "127.0.0.1:9/x:v1", expect=1)
    assert "nothing:v1" in one_error_line(refused.stderr)  # the local image is missing first
    ctx = make_context({"f.txt": "x\n"}, kubefile=KUBEFILE)
    sealer("build", "-q", "-t", "demo/app:v1", str(ctx))
    closed = sealer("push", "demo/app:v1", "127.0.0.1:9/x:v1", expect=1)
    assert "127.0.0.1:9" in one_error_line(closed.stderr)


def test_login_push_logout_with_auth(
    sealer: SealerRunner,
    make_context: Callable[..., Path],
    tmp_path: Path,
    auth_registry: RegistryServer,
    docker_config: Path,
) -> None:
    ca = ["--ca-cert", str(auth_registry.ca_cert)]
    ctx = make_context({"f.txt": "x\n"}, kubefile=KUBEFILE)
    sealer("build", "-q", "-t", "demo/app:v1", str(ctx))
    remote = f"{auth_registry.host}/demo/app:v1"
    denied = sealer("push", "demo/app:v1", remote, *ca, expect=1)
    assert "sealer login" in denied.stderr
    wrong = sealer(
        "login",
        auth_registry.host,
        "-u",
        str(auth_registry.username),
        "--password-stdin",
        *ca,
        input="wrong\n",
        expect=1,
    )
    assert auth_registry.host in one_error_line(wrong.stderr)
    assert (
        not (docker_config / "config.json").exists()
        or auth_registry.host not in (docker_config / "config.json").read_text()
    )
    ok = sealer(
        "login",
        auth_registry.host,
        "-u",
        str(auth_registry.username),
        "--password-stdin",
        *ca,
        input=f"{auth_registry.password}\n",
    )
    assert "Login succeeded" in ok.stdout
    config = json.loads((docker_config / "config.json").read_text())
    assert auth_registry.host in config["auths"]
    assert (docker_config / "config.json").stat().st_mode & 0o777 == 0o600
    sealer("push", "demo/app:v1", remote, *ca)
    # skopeo reads the same credentials file.
    out = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--authfile",
            str(docker_config / "config.json"),
            "--cert-dir",
            str(auth_registry.ca_dir),
            f"docker://{remote}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    sealer("logout", auth_registry.host)
    assert auth_registry.host not in json.loads((docker_config / "config.json").read_text()).get("auths", {})
    again = sealer("logout", auth_registry.host)  # a note and exit 0, as docker logout
    assert again.stdout.strip() == f"Not logged in to {auth_registry.host}"
