"""The build context: ignore files, source resolution and path safety for COPY/ADD/APP.

A source is resolved lexically first (no `..` that climbs out, no absolute path), then through
symlinks; either way it must stay inside the context root, or the build stops with a
ContextPathError. Symlinks found *inside* a copied directory are copied as symlinks, never
followed, as Docker does.

Ignore files follow `.dockerignore` rules (Go's filepath.Match plus `**`, `!` exceptions, the last
matching pattern wins, a path is ignored when it or one of its parents matches). `.sealerignore`
wins over `.dockerignore` when both exist.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder._fs import safe_join
from builder.errors import ContextPathError, UnsafePath

IGNORE_FILES = (".sealerignore", ".dockerignore")


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    exclude: bool  # False for a `!` exception


def _translate(pattern: str) -> str:
    """Go filepath.Match syntax plus Docker's `**`, as a regex over '/'-separated paths."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    # `**/` matches zero or more whole directories.
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class IgnoreRules:
    """Decides which context paths a COPY leaves out."""

    def __init__(self, lines: list[str], source: str = "") -> None:
        self.source = source
        self._patterns: list[_Pattern] = []
        self._exception_prefixes: list[str] = []
        for raw in lines:
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
            self._patterns.append(_Pattern(re.compile(f"^{_translate(line)}$"), exclude))
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
            path = root / name
            if path.is_file():
                return cls(path.read_text(encoding="utf-8", errors="replace").splitlines(), name)
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
            if any(pattern.regex.match(c) for c in candidates):
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
