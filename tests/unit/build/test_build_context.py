"""Ignore rules (Docker's .dockerignore semantics) and source resolution of the build context."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.build.context import BuildContext, IgnoreRules
from builder.errors import ContextPathError


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "dir/a.log", False),  # no implicit match in subdirectories, as Docker
        (["**/*.log"], "dir/sub/a.log", True),
        (["**/*.log"], "a.log", True),
        (["dir"], "dir/sub/file", True),  # a parent match ignores the children
        (["dir/*"], "dir/file", True),
        (["dir/*"], "dir", False),
        (["/abs/x"], "abs/x", True),  # leading slash is the context root
        (["*.log", "!keep.log"], "keep.log", False),
        (["!keep.log", "*.log"], "keep.log", True),  # the last match wins
        (["a?c"], "abc", True),
        (["a?c"], "a/c", False),
        (["[a-c]x"], "bx", True),
        (["# comment", "", "x"], "x", True),
        (["./x/../y"], "y", True),
    ],
)
def test_ignore_patterns(patterns: list[str], path: str, ignored: bool) -> None:
    assert IgnoreRules(patterns).is_ignored(path) is ignored


def test_exceptions_below_an_ignored_directory() -> None:
    rules = IgnoreRules(["logs", "!logs/keep"])
    assert rules.may_reinclude_below("logs")
    assert not rules.may_reinclude_below("other")


def test_sealerignore_wins_over_dockerignore(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n")
    (tmp_path / ".sealerignore").write_text("b\n")
    rules = IgnoreRules.from_context(tmp_path)
    assert rules.source == ".sealerignore"
    assert rules.is_ignored("b") and not rules.is_ignored("a")


def test_resolve_globs_and_errors(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml", "c.txt", ".hidden.yaml"):
        (tmp_path / name).write_text(name)
    (tmp_path / "d").mkdir()
    ctx = BuildContext(tmp_path)
    assert [s.relpath for s in ctx.resolve("*.yaml")] == [".hidden.yaml", "a.yaml", "b.yaml"]
    assert ctx.resolve("d")[0].is_dir
    assert ctx.resolve(".")[0].relpath == "."
    with pytest.raises(ContextPathError, match="does not exist"):
        ctx.resolve("*.json")
    with pytest.raises(ContextPathError, match="outside the build context"):
        ctx.resolve("../x")
    os.symlink("/nonexistent-target", tmp_path / "dangling")
    with pytest.raises(ContextPathError, match="outside"):
        ctx.resolve("dangling")
    os.symlink("c.txt", tmp_path / "inside-link")
    assert ctx.resolve("inside-link")[0].path == (tmp_path / "c.txt").resolve()


def test_context_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ContextPathError, match="is not a directory"):
        BuildContext(tmp_path / "missing")
