"""The Kubefile error tree: one root, `KubefileError`, and one subclass per failure kind.

Every error carries where it happened (path, 1-based line and column), a short `label`
("unknown instruction"), a kebab-case `reference` for docs and scripts, an optional
`hint`, and `context`: the offending source line with a caret under the column.
`str(err)` is exactly the one-line form ``Kubefile:12:5: message``; the hint and the
excerpt are separate so that a CLI can show them on their own lines.

    KubefileError
    ├── UnknownInstruction      a line starts with a word that is no instruction
    ├── MissingArgument         an instruction lacks an argument it needs
    ├── InvalidArgument         an argument is present but malformed
    ├── UnterminatedQuote       a quote opened in an argument is never closed
    ├── InvalidJSON             a JSON list where only a JSON list makes sense is broken
    ├── UnknownFlag             a --flag the instruction does not take
    ├── InvalidDirective        a bad `# escape=` parser directive
    ├── MissingInstruction      no FROM at all
    ├── MisplacedInstruction    an instruction where the rules forbid it
    ├── DuplicateInstruction    a once-only instruction given twice
    │   └── DuplicateApp        two APP/CNI/CSI with the same name
    ├── ConflictingInstruction  two instructions that exclude each other
    ├── UnsupportedSource       an app source whose scheme is not local://, http://, https://
    ├── UnknownApp              APPCMDS/APPENV/LAUNCH naming an app nobody declared
    ├── BadSubstitution         a malformed ${...} in variable expansion
    ├── InvalidCharacter        a byte that is not UTF-8, or a NUL, in the text
    ├── LimitExceeded           a size or nesting cap of `limits.py` crossed
    └── UnexpectedToken         any other syntax error (fallback)
"""

from __future__ import annotations

from typing import ClassVar, Self

__all__ = [
    "BadSubstitution",
    "ConflictingInstruction",
    "DuplicateApp",
    "DuplicateInstruction",
    "InvalidArgument",
    "InvalidCharacter",
    "InvalidDirective",
    "InvalidJSON",
    "KubefileError",
    "LimitExceeded",
    "MisplacedInstruction",
    "MissingArgument",
    "MissingInstruction",
    "UnexpectedToken",
    "UnknownApp",
    "UnknownFlag",
    "UnknownInstruction",
    "UnsupportedSource",
    "UnterminatedQuote",
    "excerpt",
]


class KubefileError(Exception):
    """A Kubefile that cannot be parsed or breaks a Kubefile rule."""

    label: ClassVar[str] = "kubefile error"
    reference: ClassVar[str] = "kubefile-error"
    exit_code: ClassVar[int] = 1

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        path: str = "Kubefile",
        line: int = 1,
        column: int = 1,
        context: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = path
        self.line = line
        self.column = column
        self.context = context

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"

    def with_source(self, path: str, source: str) -> Self:
        """Set `path` and build `context` (the source line and a caret) from the parsed text."""
        self.path = path
        self.context = excerpt(source, self.line, self.column)
        return self


def excerpt(source: str, line: int, column: int, width: int = 80) -> str:
    """The source line `line` (cut to `width` around `column`) and a caret under `column`."""
    lines = source.split("\n")
    if not 1 <= line <= len(lines):
        return ""
    text = lines[line - 1]
    start = max(0, min(column - 1 - width // 2, len(text) - width))
    # One character in, one character out, so the caret stays under the right column.
    shown = "".join(c if c.isprintable() or c == "\t" else "?" for c in text[start : start + width])
    pad = "".join("\t" if c == "\t" else " " for c in shown[: max(0, column - 1 - start)])
    return f"{shown}\n{pad}^"


class UnknownInstruction(KubefileError):
    """A line starts with a word that is not a Kubefile instruction."""

    label = "unknown instruction"
    reference = "unknown-instruction"


class MissingArgument(KubefileError):
    """An instruction (or flag) lacks an argument it needs."""

    label = "missing argument"
    reference = "missing-argument"


class InvalidArgument(KubefileError):
    """An argument is present but malformed (bad name, extra words, bad mode)."""

    label = "invalid argument"
    reference = "invalid-argument"


class UnterminatedQuote(KubefileError):
    """A quote opened in an argument is never closed."""

    label = "unterminated quote"
    reference = "unterminated-quote"


class InvalidJSON(KubefileError):
    """A JSON list, where only a JSON list of strings makes sense, is malformed."""

    label = "invalid json"
    reference = "invalid-json"


class UnknownFlag(KubefileError):
    """A `--flag` that the instruction does not take."""

    label = "unknown flag"
    reference = "unknown-flag"


class InvalidDirective(KubefileError):
    """A malformed or repeated `# escape=` parser directive."""

    label = "invalid directive"
    reference = "invalid-directive"


class MissingInstruction(KubefileError):
    """A required instruction (FROM) is absent."""

    label = "missing instruction"
    reference = "missing-instruction"


class MisplacedInstruction(KubefileError):
    """An instruction stands where the Kubefile rules forbid it."""

    label = "misplaced instruction"
    reference = "misplaced-instruction"


class DuplicateInstruction(KubefileError):
    """An instruction allowed once appears twice."""

    label = "duplicate instruction"
    reference = "duplicate-instruction"


class DuplicateApp(DuplicateInstruction):
    """Two APP/CNI/CSI instructions declare the same app name."""

    label = "duplicate app"
    reference = "duplicate-app"


class ConflictingInstruction(KubefileError):
    """Two instructions that exclude each other (CMD and LAUNCH, LAUNCH and CMDS)."""

    label = "conflicting instruction"
    reference = "conflicting-instruction"


class UnsupportedSource(KubefileError):
    """An app source whose scheme is not local://, http:// or https://."""

    label = "unsupported source"
    reference = "unsupported-source"


class UnknownApp(KubefileError):
    """APPCMDS, APPENV or LAUNCH names an app neither declared nor inherited."""

    label = "unknown app"
    reference = "unknown-app"


class BadSubstitution(KubefileError):
    """A malformed `${...}` met during variable expansion."""

    label = "bad substitution"
    reference = "bad-substitution"


class InvalidCharacter(KubefileError):
    """A byte that is not UTF-8 (read as a lone surrogate), or a NUL, in the Kubefile text.

    Either would pass the parser and fail much later: a config label cannot be written as
    UTF-8 JSON, and no process can be given a NUL in its environment.
    """

    label = "invalid character"
    reference = "invalid-character"


class LimitExceeded(KubefileError):
    """A size or nesting limit of `kubefile_grammar.limits` is crossed."""

    label = "limit exceeded"
    reference = "limit-exceeded"


class UnexpectedToken(KubefileError):
    """A syntax error that no more precise class describes."""

    label = "unexpected token"
    reference = "unexpected-token"
