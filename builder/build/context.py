"""The build context: ignore files, source resolution and path safety for COPY/ADD/APP.

A source is resolved lexically first (no `..` that climbs out, no absolute path), then through
symlinks; either way it must stay inside the context root, or the build stops with a
ContextPathError. Symlinks found *inside* a copied directory are copied as symlinks, never
followed, as Docker does.

Ignore files follow `.dockerignore` rules (Go's filepath.Match plus `**`, `!` exceptions, the last
matching pattern wins, a path is ignored when it or one of its parents matches). `.sealerignore`
wins over `.dockerignore` when both exist; a malformed pattern stops the build at its line.

The files a build reads whole (the Kubefile, the ignore file) go through `read_regular_file`:
a FIFO or device is refused before it is opened for reading (a FIFO with no writer would block
forever, `/dev/zero` never ends), and so is a file over its size cap.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder._fs import safe_join
from builder.errors import ContextPathError, UnsafePath

IGNORE_FILES = (".sealerignore", ".dockerignore")
# Ignore files are a few lines; 1 MiB (the Kubefile's cap too) is room for ~50,000 patterns.
MAX_IGNORE_FILE_BYTES = 1 << 20
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def check_regular_file(path: Path, *, limit_bytes: int, what: str) -> None:
    """Refuse `path` unless it is a regular file (symlinks followed) of at most `limit_bytes`.

    Only stat(2) is used, so a FIFO or device is never opened. A missing path passes: the
    reader reports it in its own words.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ContextPathError(f"cannot read {what} {path}: {err.strerror}", path=str(path)) from None
    _check_stat(st, path, limit_bytes, what)


def read_regular_file(path: Path, *, limit_bytes: int, what: str) -> bytes:
    """The bytes of `path`, a regular file of at most `limit_bytes`, read with that cap.

    Checked with stat(2) before opening and fstat(2) after (the path may change in between);
    opened with O_NONBLOCK so that a FIFO swapped in cannot block the open. FileNotFoundError
    passes through; anything else is a ContextPathError naming `what` and `path`.
    """
    check_regular_file(path, limit_bytes=limit_bytes, what=what)
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as file:
            _check_stat(os.fstat(file.fileno()), path, limit_bytes, what)
            data = file.read(limit_bytes + 1)  # the file may have grown since fstat
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ContextPathError(f"cannot read {what} {path}: {err.strerror}", path=str(path)) from None
    if len(data) > limit_bytes:
        raise _too_large(path, limit_bytes, what)
    return data


def _check_stat(st: os.stat_result, path: Path, limit_bytes: int, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a file")
        raise ContextPathError(
            f"{what} {path} is {kind}, not a regular file",
            path=str(path),
            hint=f"give a regular file as the {what}",
        )
    if st.st_size > limit_bytes:
        raise _too_large(path, limit_bytes, what)


def _too_large(path: Path, limit_bytes: int, what: str) -> ContextPathError:
    return ContextPathError(
        f"{what} {path} is larger than {limit_bytes} bytes",
        path=str(path),
        hint=f"a {what} may be at most {limit_bytes} bytes ({limit_bytes >> 10} KiB)",
    )


# Wildcard tokens as regex fragments; every other token matches exactly one character.
_STAR, _DSTAR, _DIRS = "[^/]*", ".*", "(?:.*/)?"  # `*`, `**`, `**/` (zero or more directories)
_WILDCARDS = frozenset({_STAR, _DSTAR, _DIRS})
# Up to this many wildcards a pattern is matched by Python's backtracking re, at worst
# O(len(path) ** 2); beyond, by _Pattern's linear state-set walk: `*a*a*a*a*a*a*a*b` against a
# 40-character name took re 0.3 s, and each more character or wildcard multiplies that.
_REGEX_WILDCARDS = 2


@dataclass(frozen=True, slots=True)
class _Pattern:
    """One compiled ignore pattern: a regex, or the tokens for a walk linear in the path."""

    tokens: tuple[str, ...]
    exclude: bool  # False for a `!` exception
    regex: re.Pattern[str] | None  # None: too many wildcards for re, walk the tokens
    chars: tuple[re.Pattern[str] | None, ...]  # per token: its one-character matcher

    @classmethod
    def compile(cls, pattern: str, exclude: bool) -> _Pattern:
        tokens = tuple(_translate(pattern))
        if sum(t in _WILDCARDS for t in tokens) <= _REGEX_WILDCARDS:
            return cls(tokens, exclude, re.compile("".join(tokens), re.DOTALL), ())
        chars = tuple(None if t in _WILDCARDS else re.compile(t, re.DOTALL) for t in tokens)
        return cls(tokens, exclude, None, chars)

    def matches(self, path: str) -> bool:
        if self.regex is not None:
            return self.regex.fullmatch(path) is not None
        # Thompson's construction, walked directly: the set of token indexes reached so far.
        states = self._closure({0})
        for ch in path:
            reached: set[int] = set()
            for i in states:
                token = self.tokens[i] if i < len(self.tokens) else ""
                if token == _DSTAR or (token == _STAR and ch != "/"):
                    reached.add(i)
                elif token == _DIRS:
                    reached.add(i)
                    if ch == "/":
                        reached.add(i + 1)
                elif token and (matcher := self.chars[i]) is not None and matcher.fullmatch(ch):
                    reached.add(i + 1)
            if not reached:
                return False
            states = self._closure(reached)
        return len(self.tokens) in states

    def _closure(self, states: set[int]) -> set[int]:
        """`states` plus every index reachable by letting wildcards match nothing."""
        todo = list(states)
        while todo:
            i = todo.pop()
            if i < len(self.tokens) and self.tokens[i] in _WILDCARDS and i + 1 not in states:
                states.add(i + 1)
                todo.append(i + 1)
        return states


class _BadPattern(Exception):
    """Internal: why a pattern is malformed; IgnoreRules reports it with the file and line."""


def _translate(pattern: str) -> list[str]:
    """Go filepath.Match syntax plus Docker's `**`, as regex tokens over '/'-separated paths.

    Raises _BadPattern where Go's filepath.Match (and so Docker) refuses the pattern.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    i += 1
                    out.append(_DIRS)
                else:
                    out.append(_DSTAR)
                continue
            out.append(_STAR)
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            body, i = _translate_class(pattern, i + 1)
            out.append(body)
            continue
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return out


def _translate_class(pattern: str, i: int) -> tuple[str, int]:
    """The class that starts at `pattern[i]` (just after `[`): its regex and the index after `]`.

    Every character is escaped for Python's re, so a pattern can never be read as regex
    syntax (`[z-a]` was an re.error traceback, `[[` a FutureWarning).
    """

    def char(at: int) -> tuple[str, int]:
        # Go's getEsc: `\\` escapes the next character; a bare `-` or `]` is malformed.
        if at >= len(pattern):
            raise _BadPattern("unterminated [")
        if pattern[at] in "-]":
            raise _BadPattern(f"unescaped {pattern[at]!r} in a character class")
        if pattern[at] == "\\":
            at += 1
            if at >= len(pattern):
                raise _BadPattern("unterminated [")
        return pattern[at], at + 1

    negate = i < len(pattern) and pattern[i] in "^!"
    i += negate
    items: list[str] = []
    while i >= len(pattern) or pattern[i] != "]" or not items:
        lo, i = char(i)
        hi = lo
        if i < len(pattern) and pattern[i] == "-":
            hi, i = char(i + 1)
            if hi < lo:
                raise _BadPattern(f"bad character range {lo}-{hi}")
        items.append(re.escape(lo) if hi == lo else f"{re.escape(lo)}-{re.escape(hi)}")
    return ("[^" if negate else "[") + "".join(items) + "]", i + 1


class IgnoreRules:
    """Decides which context paths a COPY leaves out."""

    def __init__(self, lines: list[str], source: str = "") -> None:
        self.source = source
        self._patterns: list[_Pattern] = []
        self._exception_prefixes: list[str] = []
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclude = True
            if line.startswith("!"):
                exclude = False
                line = line[1:].strip()
            line = os.path.normpath(line).lstrip("/")
            if line in ("", "."):
                continue
            try:
                compiled = _Pattern.compile(line, exclude)
            except (_BadPattern, re.error) as err:
                where = f"{source or 'ignore file'}:{number}"
                raise ContextPathError(
                    f"{where}: bad pattern {raw.strip()!r}: {err}",
                    path=source or None,
                    hint="patterns follow Go's filepath.Match: [a-z] ranges low to high, "
                    "\\ escapes a character, ** matches any number of directories",
                ) from None
            self._patterns.append(compiled)
            if not exclude:
                magic = re.search(r"[*?\[\\]", line)
                self._exception_prefixes.append(line[: magic.start()] if magic else line)

    def may_reinclude_below(self, dirrel: str) -> bool:
        """Whether a `!exception` could re-include something below an ignored directory."""
        prefix = dirrel + "/"
        return any(lit.startswith(prefix) or prefix.startswith(lit) for lit in self._exception_prefixes)

    @classmethod
    def from_context(cls, root: Path) -> IgnoreRules:
        for name in IGNORE_FILES:
            try:
                data = read_regular_file(root / name, limit_bytes=MAX_IGNORE_FILE_BYTES, what="ignore file")
            except FileNotFoundError:
                continue  # a dangling symlink too, as before
            return cls(data.decode("utf-8", errors="replace").splitlines(), name)
        return cls([])

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def is_ignored(self, relpath: str) -> bool:
        """True when `relpath` (context-relative, '/'-separated) is left out."""
        if not self._patterns or relpath in ("", "."):
            return False
        candidates = [relpath]
        parts = relpath.split("/")
        candidates.extend("/".join(parts[:n]) for n in range(1, len(parts)))
        ignored = False
        for pattern in self._patterns:
            if any(pattern.matches(c) for c in candidates):
                ignored = pattern.exclude
        return ignored


@dataclass(frozen=True, slots=True)
class ContextSource:
    """One resolved COPY source: its context-relative path and the real path to read."""

    relpath: str
    path: Path
    is_dir: bool


class BuildContext:
    """A directory that COPY/ADD/APP sources are read from."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root)
        if not path.is_dir():
            raise ContextPathError(
                f"build context {str(root)!r} is not a directory",
                hint="pass the directory holding the Kubefile",
            )
        self.root = path.resolve()
        self.ignore = IgnoreRules.from_context(self.root)

    def resolve(self, pattern: str) -> list[ContextSource]:
        """Expand one source pattern (globs allowed) into existing, checked sources.

        Raises ContextPathError when the pattern climbs out of the context, a match resolves
        outside it through a symlink, or nothing matches.
        """
        try:
            lexical = safe_join(self.root, pattern)
        except UnsafePath:
            raise ContextPathError(
                f"source {pattern!r} is outside the build context",
                path=pattern,
                hint="COPY sources must be paths inside the context directory",
            ) from None
        rel = os.path.relpath(lexical, self.root)
        if glob.has_magic(rel):
            matches = sorted(glob.glob(rel, root_dir=self.root, include_hidden=True))
            matches = [m for m in matches if not self.ignore.is_ignored(m.replace(os.sep, "/"))]
        else:
            # Check containment before existence: a path through a symlink that leaves the
            # context is refused as such, whether or not its target exists.
            self._check_inside(rel, pattern)
            matches = [rel] if os.path.lexists(self.root / rel) else []
        if not matches:
            raise ContextPathError(
                f"source {pattern!r} does not exist in the build context {self.root}",
                path=pattern,
                hint="check the path (it is relative to the context directory) and .sealerignore/.dockerignore",
            )
        return [self._check(m, pattern) for m in matches]

    def _check_inside(self, rel: str, pattern: str) -> Path:
        real = (self.root / rel).resolve()
        if real != self.root and self.root not in real.parents:
            raise ContextPathError(
                f"source {pattern!r} resolves outside the build context (through a symlink) to {real}",
                path=pattern,
                hint="copy the target into the context instead of linking to it",
            )
        return real

    def _check(self, rel: str, pattern: str) -> ContextSource:
        real = self._check_inside(rel, pattern)
        if not real.exists():
            raise ContextPathError(f"source {pattern!r} is a dangling symlink", path=pattern)
        relpath = "." if rel in ("", ".") else Path(rel).as_posix()
        return ContextSource(relpath, real, real.is_dir())

    def include_filter(self, source: ContextSource) -> Callable[[str, bool], bool] | None:
        """The `include(relpath, is_dir)` callback for walking a directory source."""
        if not self.ignore:
            return None
        base = "" if source.relpath == "." else source.relpath + "/"
        ignore = self.ignore

        def include(rel: str, is_dir: bool) -> bool:
            if not ignore.is_ignored(base + rel):
                return True
            # A directory that is ignored may still hold an exception (`!dir/keep`).
            return is_dir and ignore.may_reinclude_below(base + rel)

        return include
