"""Variable expansion as Dockerfiles do it: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}`.

Only the algorithm lives here; which variables are visible (ARG before FROM only for FROM,
ENV, the ARCH built-ins) is the build's decision, passed in as `lookup`.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import BadSubstitution, KubefileError, LimitExceeded
from .instructions import Span
from .limits import MAX_EXPANSION_CHARS, MAX_NESTING

__all__ = ["expand"]

_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")


def expand(
    text: str,
    lookup: Mapping[str, str],
    *,
    escape: str = "\\",
    path: str = "Kubefile",
    span: Span | None = None,
    max_chars: int = MAX_EXPANSION_CHARS,
) -> str:
    """Return `text` with every variable reference replaced, as a Dockerfile would.

    `$NAME` and `${NAME}` give the value, or "" when NAME is not in `lookup`;
    `${NAME:-word}` gives word when NAME is unset or empty, `${NAME-word}` only when unset;
    `${NAME:+word}` gives word when NAME is set and not empty, `${NAME+word}` when set.
    The word is expanded too, so `${A:-${B}}` nests.  The escape character before `$` or
    before itself stands for that character (`\\$HOME` stays `$HOME`); before anything
    else it is kept as written.  A `$` not followed by a name or `{` is literal.
    A malformed `${...}` (unterminated, empty or bad name, unknown modifier) raises
    BadSubstitution located at `span` (its start) in `path`.  LimitExceeded, at the same
    place, when the characters produced (variable values, literal text and the defaults
    evaluated on the way) pass `max_chars`, or `${...}` nests deeper than MAX_NESTING.
    """
    result, _ = _Expander(text, lookup, escape, path, span, max_chars).word(0, stop=None)
    return result


class _Expander:
    def __init__(
        self, text: str, lookup: Mapping[str, str], escape: str, path: str, span: Span | None, max_chars: int
    ) -> None:
        self.text = text
        self.lookup = lookup
        self.escape = escape
        self.path = path
        self.span = span
        self.budget = max_chars  # characters still allowed; counted where they are produced
        self.max_chars = max_chars
        self.depth = 0

    def fail(
        self, message: str, cls: type[KubefileError] = BadSubstitution, hint: str | None = None
    ) -> KubefileError:
        line, column = (self.span.line, self.span.column) if self.span is not None else (1, 1)
        return cls(
            message,
            hint=hint
            or "use $NAME, ${NAME}, ${NAME:-default} or ${NAME:+alternative}; write \\$ for a literal $",
            path=self.path,
            line=line,
            column=column,
        )

    def produce(self, piece: str) -> str:
        """Count `piece` against the budget; every character of the result passes here once."""
        self.budget -= len(piece)
        if self.budget < 0:
            raise self.fail(
                f"variable expansion is longer than {self.max_chars} characters",
                LimitExceeded,
                "a value made of a variable used twice (A=$B$B) doubles at each step; shorten the values",
            )
        return piece

    def word(self, i: int, stop: str | None) -> tuple[str, int]:
        """Expand from `i` up to `stop` (exclusive) or the end; return the text and the stop index."""
        text, out = self.text, list[str]()
        while i < len(text):
            ch = text[i]
            if ch == stop:
                return "".join(out), i
            if ch == self.escape and i + 1 < len(text) and text[i + 1] in ("$", self.escape, stop):
                out.append(self.produce(text[i + 1]))
                i += 2
            elif ch == "$":
                value, i = self.variable(i + 1)
                out.append(value)
            else:
                out.append(self.produce(ch))
                i += 1
        if stop is not None:
            raise self.fail(f"unterminated ${{...}} in {_show(text)}")
        return "".join(out), i

    def variable(self, i: int) -> tuple[str, int]:
        """Expand the reference whose `$` is just before `i`; return its value and the next index."""
        text = self.text
        if i < len(text) and text[i] == "{":
            return self.braced(i + 1)
        end = i
        if end < len(text) and text[end] in _NAME_START:
            while end < len(text) and text[end] in _NAME_CHARS:
                end += 1
            return self.produce(self.lookup.get(text[i:end], "")), end
        return self.produce("$"), i  # "$" before a non-name, or at the end, is literal (as in Docker)

    def braced(self, i: int) -> tuple[str, int]:
        text = self.text
        start = i
        while i < len(text) and text[i] in _NAME_CHARS:
            i += 1
        name = text[start:i]
        if i >= len(text):
            raise self.fail(f"unterminated ${{...}} in {_show(text)}")
        if not name or name[0] not in _NAME_START:
            raise self.fail(f"bad variable name in ${{...}}: {_show(text)}")
        value = self.lookup.get(name)
        if text[i] == "}":
            return self.produce(value or ""), i + 1
        colon = text[i] == ":"
        modifier = text[i + 1] if colon and i + 1 < len(text) else text[i]
        if modifier not in "-+":
            raise self.fail(f"unsupported modifier in ${{{name}{text[i : i + 2]}...}}: {_show(text)}")
        if self.depth >= MAX_NESTING:
            raise self.fail(
                f"${{...}} nested more than {MAX_NESTING} deep",
                LimitExceeded,
                "nest ${NAME:-${OTHER}} a few levels at most; declare an ARG for the inner value",
            )
        self.depth += 1
        word, end = self.word(i + 2 if colon else i + 1, stop="}")  # produced (and counted) inside
        self.depth -= 1
        present = bool(value) if colon else value is not None
        if modifier == "-":
            return self.produce(value or "") if present else word, end + 1
        return word if present else "", end + 1


def _show(text: str) -> str:
    """Quote `text` for an error message, short and printable."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in shown) + '"'
