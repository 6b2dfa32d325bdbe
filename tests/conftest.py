"""Fixtures shared by every test: a fresh store, the CLI bound to it, context directories."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from builder.store.layout import Store


@dataclass(frozen=True)
class Link:
    """A symlink to create in a test context."""

    target: str


FileSpec = str | bytes | Link | None  # None: an empty directory


def write_tree(root: Path, files: Mapping[str, FileSpec], *, mode: int | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        elif isinstance(content, Link):
            os.symlink(content.target, path)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            if mode is not None:
                os.chmod(path, mode)
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sealer-root"


@pytest.fixture
def store(root: Path) -> Iterator[Store]:
    s = Store.open(root)
    yield s
    s.close()


@pytest.fixture
def make_context(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def make(files: Mapping[str, FileSpec], *, kubefile: str | None = None, name: str | None = None) -> Path:
        ctx = tmp_path / (name or f"ctx{next(counter)}")
        write_tree(ctx, files)
        if kubefile is not None:
            (ctx / "Kubefile").write_text(kubefile)
        return ctx

    return make


SealerRunner = Callable[..., Result]


@pytest.fixture
def sealer(root: Path) -> SealerRunner:
    """Run the CLI in-process against the test's store; stdout and stderr kept apart."""
    from builder.cli.main import cli

    runner = CliRunner()

    def run(*args: str, input: str | None = None, expect: int | None = 0) -> Result:
        result = runner.invoke(cli, ["--root", str(root), *args], input=input, catch_exceptions=False)
        if expect is not None and result.exit_code != expect:
            raise AssertionError(
                f"sealer {' '.join(args)} exited {result.exit_code}, expected {expect}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    return run


# Real docker-registry fixtures (plain, TLS, htpasswd) for every test that needs a registry.
from tests.registry_fixtures import (  # noqa: E402, F401
    auth_registry,
    docker_config,
    registry,
    tls_registry,
    token_registry,
)
