"""Reading an instruction's arguments: the text after its flags, as Docker reads it.

The grammar hands over the argument text of one instruction in pieces (one per physical
line, continuations and skipped comment lines already gone) with their source positions.
This module joins them into Docker's "logical line" and reads the micro-syntax that is
not context-free: JSON arrays (an invalid one is shell form in RUN/CMD/COPY/ADD, as in
Docker), whitespace-separated words, and quote-aware KEY=VALUE words.  Every error it
raises points at the exact source column, even past a continuation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .errors import InvalidJSON, KubefileError, UnterminatedQuote

_BLANKS = " \t"
_WORD = re.compile(r"[^ \t]+")


class ArgText:
    """The logical argument text of one instruction, with a map from offsets to source positions."""

    def __init__(self, pieces: list[tuple[str, int, int]], keyword: str, line: int, column: int) -> None:
        # pieces: (text, line, column) in order; the caller has dropped leading blanks.
        self.keyword = keyword
        self._starts: list[tuple[int, int, int]] = []  # (offset, line, column)
        parts: list[str] = []
        offset = 0
        for text, piece_line, piece_column in pieces:
            self._starts.append((offset, piece_line, piece_column))
            parts.append(text)
            offset += len(text)
        self.text = "".join(parts).rstrip(_BLANKS)
        self._fallback = (line, column)

    def position(self, offset: int) -> tuple[int, int]:
        """The (line, column) in the source of the character at `offset`."""
        found = self._fallback
        for start, line, column in self._starts:
            if start > offset:
                break
            found = (line, column + offset - start)
        return found

    def error(
        self, cls: type[KubefileError], message: str, offset: int, hint: str | None = None
    ) -> KubefileError:
        line, column = self.position(offset)
        return cls(message, hint=hint, line=line, column=column)

    def words(self, start: int = 0) -> list[tuple[str, int]]:
        """Whitespace-separated words from `start`, with their offsets; quotes mean nothing here."""
        return [(m.group(), m.start()) for m in _WORD.finditer(self.text, start)]

    def maybe_json_list(self, start: int = 0) -> tuple[str, ...] | None:
        """The JSON list of strings at `start`, or None when the text there is not one (shell form)."""
        rest = self.text[start:]
        if not rest.startswith("["):
            return None
        try:
            value = json.loads(rest)
        except (ValueError, RecursionError):
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        return None

    def json_list(self, start: int, what: str) -> tuple[str, ...]:
        """The JSON list of strings at `start` (which begins with `[`); InvalidJSON if it is not one."""
        rest = self.text[start:]
        hint = (
            f'{self.keyword} takes a JSON list of {what}, e.g. {self.keyword} ["a", "b"], or the shell form'
        )
        try:
            value = json.loads(rest)
        except json.JSONDecodeError as err:
            raise self.error(InvalidJSON, f"invalid JSON list: {err.msg}", start + err.pos, hint) from None
        except (ValueError, RecursionError):
            raise self.error(InvalidJSON, "invalid JSON list", start, hint) from None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(InvalidJSON, f"{self.keyword} needs a JSON list of strings", start, hint)
        return tuple(value)

    def quoted_words(self, start: int, escape: str, *, split: bool = True) -> list[Word]:
        """Quote-aware words from `start`, as Docker's shell lexer reads ENV/LABEL/ARG words.

        Outside quotes the escape character makes the next character literal and blanks
        split words (unless `split` is false); inside single quotes everything is
        literal; inside double quotes only `"`, `$` and the escape can be escaped and `$`
        still expands.  An unclosed quote raises UnterminatedQuote at the quote.
        """
        text, words = self.text, []
        current: Word | None = None
        quote, quote_at, i = "", 0, start
        while i < len(text):
            ch = text[i]
            if not quote and ch in _BLANKS and split:
                if current is not None:
                    current.end = i
                    words.append(current)
                    current = None
                i += 1
                continue
            if current is None:
                current = Word(i)
            if quote == "'":
                quote = "" if ch == "'" else quote
                if quote:
                    current.chars.append((ch, True))
                i += 1
            elif quote == '"':
                if ch == '"':
                    quote = ""
                elif ch == escape and i + 1 < len(text) and text[i + 1] in ('"', "$", escape):
                    current.chars.append((text[i + 1], True))
                    i += 1
                else:
                    current.chars.append((ch, ch != "$"))
                i += 1
            elif ch == escape and i + 1 < len(text):
                current.chars.append((text[i + 1], True))
                i += 2
            elif ch in "\"'":
                quote, quote_at = ch, i
                i += 1
            else:
                current.chars.append((ch, ch == escape))
                i += 1
        if quote:
            raise self.error(
                UnterminatedQuote,
                f"unterminated quote: {quote} opened here is never closed",
                quote_at,
                hint=f"close the quote, or escape it as {escape}{quote}",
            )
        if current is not None:
            current.end = len(text)
            words.append(current)
        return words


@dataclass(slots=True)
class Word:
    """One quote-aware word: its characters, each marked literal (quoted/escaped) or not."""

    start: int
    chars: list[tuple[str, bool]] = field(default_factory=list)
    end: int = 0

    def plain(self) -> str:
        """The word with quotes and escapes removed (names and keys are not expanded)."""
        return "".join(ch for ch, _ in self.chars)

    def stored(self, escape: str) -> str:
        """The word for later `expand`: unquoted, a literal `$` written escape + `$`.

        A literal escape character is doubled only where `expand` would otherwise read it as
        an escape (before `$` or another escape), so common values stay as the user wrote them.
        """
        out = []
        for index, (ch, literal) in enumerate(self.chars):
            if ch == "$" and literal:
                out.append(escape + "$")
            elif ch == escape:
                following = self.chars[index + 1][0] if index + 1 < len(self.chars) else ""
                out.append(escape * 2 if following in ("$", escape) else escape)
            else:
                out.append(ch)
        return "".join(out)

    def assignment(self) -> tuple[Word, Word] | None:
        """Split at the first unquoted, unescaped `=`: (key, value), or None without one."""
        for index, (ch, literal) in enumerate(self.chars):
            if ch == "=" and not literal:
                key = Word(self.start, self.chars[:index], self.start + index)
                return key, Word(self.start + index + 1, self.chars[index + 1 :], self.end)
        return None
