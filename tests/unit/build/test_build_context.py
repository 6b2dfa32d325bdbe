"""Ignore rules (Docker's .dockerignore semantics) and source resolution of the build context."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from builder.build.context import MAX_IGNORE_FILE_BYTES, BuildContext, IgnoreRules, _Pattern
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


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("**/[z-a]", "bad character range z-a"),
        ("[", "unterminated ["),
        ("x[\\]", "unterminated ["),
        ("[]a]", "unescaped ']' in a character class"),
        ("[a-]", "unescaped ']' in a character class"),
    ],
)
def test_bad_ignore_pattern_names_file_and_line(tmp_path: Path, pattern: str, reason: str) -> None:
    (tmp_path / ".sealerignore").write_text(f"# comment\n*.log\n{pattern}\n")
    with pytest.raises(ContextPathError) as info:
        BuildContext(tmp_path)
    assert info.value.message == f".sealerignore:3: bad pattern {pattern!r}: {reason}"
    assert info.value.hint


@pytest.mark.parametrize(
    ("pattern", "path", "ignored"),
    [
        ("[\\]]x", "]x", True),
        ("[!a-c]x", "dx", True),
        ("[^a-c]x", "bx", False),
        ("[[:a]]", ":]", True),  # no POSIX classes in Go: `[[:a]` then `]`; no FutureWarning either
        ("[.]*", "ab", False),  # class members are literal, not regex syntax
    ],
)
def test_class_members_are_literal(pattern: str, path: str, ignored: bool) -> None:
    assert IgnoreRules([pattern]).is_ignored(path) is ignored


def test_ignore_file_must_be_a_small_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".sealerignore")  # no writer: reading it would block forever
    with pytest.raises(ContextPathError, match=r"ignore file .*\.sealerignore is a FIFO, not a regular file"):
        BuildContext(tmp_path)
    os.unlink(tmp_path / ".sealerignore")
    with (tmp_path / ".dockerignore").open("wb") as file:
        file.truncate(MAX_IGNORE_FILE_BYTES + 1)
    with pytest.raises(ContextPathError, match=f"larger than {MAX_IGNORE_FILE_BYTES} bytes"):
        BuildContext(tmp_path)


PATTERNS = ["*.log", "**/*.log", "a/**/b", "**/x/**", "*a*b*c", "[!a]*/**/?z", "**", "a/**/b/**/c*d"]
PATHS = ["a.log", "d/a.log", "a/b", "a/x/y/b", "x", "q/x/r", "abc", "zaqbqc", "b/q/rz", "a/b/b/cd", "a/b\nc"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_linear_walk_agrees_with_regex(pattern: str) -> None:
    compiled = _Pattern.compile(pattern, True)
    walked = _Pattern(compiled.tokens, True, None, tuple(re.compile(t, re.DOTALL) for t in compiled.tokens))
    for path in PATHS:
        expected = (
            compiled.matches(path)
            if compiled.regex
            else re.fullmatch("".join(compiled.tokens), path, re.DOTALL)
        )
        assert walked.matches(path) is bool(expected), (pattern, path)


def test_many_wildcards_match_in_linear_time() -> None:
    """`*a*a*...*b` backtracked in re: a 64-character name took ~9 s, 255 characters forever."""
    rules = IgnoreRules(["*a*a*a*a*a*a*a*b", "**a**a**a**a**a**b"])
    started = time.monotonic()
    assert not rules.is_ignored("a" * 64)
    assert not rules.is_ignored("a" * 4000)
    assert not rules.is_ignored("a/" * 100)
    assert rules.is_ignored("a" * 300 + "b")
    assert time.monotonic() - started < 2
