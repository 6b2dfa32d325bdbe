"""The `sealer` command as a user meets it: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.store.layout import Store
from tests.conftest import SealerRunner
from tests.validate import validate_image

APP = {"nginx.yaml": "kind: Deployment\n"}
APP_KUBEFILE = 'FROM scratch\nCOPY nginx.yaml manifests/\nCMDS ["kubectl apply -f manifests/nginx.yaml"]\n'


def one_error_line(stderr: str) -> str:
    """The single `error: ...` line of a failed command (progress lines may come before it)."""
    errors = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    return errors[0]


def test_build_quiet_prints_only_the_digest(
    sealer: SealerRunner, store: Store, make_context: Callable[..., Path]
) -> None:
    ctx = make_context(APP, kubefile=APP_KUBEFILE)
    result = sealer("build", "-q", "-t", "my-app:v1", str(ctx))
    assert result.stdout.startswith("sha256:") and len(result.stdout.strip()) == 71
    assert result.stderr == ""
    validate_image(store, "my-app:v1")


def test_build_progress_lines(sealer: SealerRunner, make_context: Callable[..., Path]) -> None:
    ctx = make_context(APP, kubefile=APP_KUBEFILE)
    result = sealer("build", "-t", "my-app:v1", str(ctx))
    assert "STEP 1/2: COPY nginx.yaml manifests/" in result.stderr
    assert "--> layer" in result.stderr
    again = sealer("build", "-t", "my-app:v1", str(ctx))
    assert "(cached)" in again.stderr
    assert again.stdout == result.stdout


def test_kubefile_error_is_one_line_with_excerpt(
    sealer: SealerRunner, make_context: Callable[..., Path]
) -> None:
    ctx = make_context({}, kubefile="FROM scratch\nCOPPY a b\n")
    result = sealer("build", "-t", "x:v1", str(ctx), expect=1)
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {ctx / 'Kubefile'}:2:1: ")
    assert "COPPY" in line and "COPY" in line
    assert "hint:" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["build", "-t", "UPPER/Case:v1"], 2, "invalid reference"),
        (["build", "-t", "ok:v1", "--platform", "linux"], 2, "platform"),
        (["build", "-t", "ok:v1", "--build-arg", "=x"], 2, "--build-arg"),
        (["build", "-t", "ok:v1", "-f", "/nonexistent/Kubefile"], 1, "no Kubefile at /nonexistent/Kubefile"),
        (["inspect", "nothing:here"], 1, "nothing:here"),
        (["rmi", "nothing:here"], 1, "no such image"),
    ],
)
def test_bad_input_gets_one_line(
    sealer: SealerRunner, make_context: Callable[..., Path], args: list[str], code: int, needle: str
) -> None:
    ctx = make_context(APP, kubefile=APP_KUBEFILE)
    argv = [*args, str(ctx)] if args[0] == "build" else args
    result = sealer(*argv, expect=code)
    assert needle.lower() in one_error_line(result.stderr).lower()


def test_images_inspect_tag_rmi_prune(
    sealer: SealerRunner, store: Store, make_context: Callable[..., Path]
) -> None:
    ctx = make_context(APP, kubefile=APP_KUBEFILE)
    digest = sealer("build", "-q", "-t", "demo/app:v1", str(ctx)).stdout.strip()
    table = sealer("images").stdout
    assert table.splitlines()[0].split() == ["IMAGE", "NAME", "IMAGE", "ID", "PLATFORMS", "CREATED", "SIZE"]
    assert "demo/app:v1" in table and "linux/amd64" in table
    listing = json.loads(sealer("images", "--format", "json").stdout)
    assert listing[0]["name"] == "docker.io/demo/app:v1" and listing[0]["digest"] == digest

    doc = json.loads(sealer("inspect", "demo/app:v1").stdout)
    assert set(doc) >= {
        "id",
        "name",
        "digest",
        "manifestv1",
        "ociv1",
        "imageExtension",
        "containerImageList",
        "layers",
    }
    assert doc["digest"] == digest
    assert doc["layers"][0]["dir"] is None  # read-only by default
    unpacked = json.loads(sealer("inspect", "--unpack", "demo/app:v1").stdout)
    layer_dir = Path(unpacked["layers"][0]["dir"])
    assert (layer_dir / "manifests" / "nginx.yaml").read_text() == "kind: Deployment\n"
    assert sealer("inspect", "demo/app:v1", "--format", "{{.ImageExtension.Launch.Cmds}}").stdout == (
        "[kubectl apply -f manifests/nginx.yaml]\n"
    )
    assert (
        sealer("inspect", "demo/app:v1", "--format", "{{.ImageExtension.Type}}").stdout == "app-installer\n"
    )
    bad = sealer("inspect", "demo/app:v1", "--format", "{{.Nope}}", expect=1)
    assert "can't evaluate field Nope" in one_error_line(bad.stderr)
    # By image ID prefix, as docker allows.
    assert json.loads(sealer("inspect", doc["id"][:12]).stdout)["digest"] == digest

    sealer("tag", "demo/app:v1", "demo/app:latest", "other/name:v2")
    assert {r.name for r in store.images()} == {
        "docker.io/demo/app:v1",
        "docker.io/demo/app:latest",
        "docker.io/other/name:v2",
    }
    sealer("rmi", "demo/app:latest", "other/name:v2")
    assert [r.name for r in store.images()] == ["docker.io/demo/app:v1"]
    validate_image(store, "demo/app:v1")
    sealer("rmi", "demo/app:v1")
    out = sealer("prune", "--all").stdout
    assert out.startswith("removed ")
    assert list(store.blobs.list()) == []
