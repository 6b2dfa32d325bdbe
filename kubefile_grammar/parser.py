"""`parse(text, path)`: Kubefile text to a typed `Kubefile`, or a KubefileError.

The grammar (`kubefile.lark`) splits the text into instructions, flags and argument
text, skipping comments and joining continued lines; the transformer below reads each
instruction's arguments (`_arguments.py`) into its dataclass; `rules.check_rules` then
checks the whole file.  Lark's exceptions are mapped here and nowhere else: a syntax
error through the `_examples.py` table, a transformer error unwrapped from VisitError.
(Over 400 lines because the transformer holds one short method per instruction; splitting
it would scatter the instruction set over several files.)
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import Literal

from lark import Lark, Token, Transformer, v_args
from lark import lexer as lark_lexer
from lark.exceptions import UnexpectedInput, VisitError
from lark.exceptions import UnexpectedToken as LarkUnexpectedToken
from lark.lexer import PatternRE, TerminalDef
from lark.tree import Meta

from ._arguments import ArgText, Word
from ._examples import KEYWORDS, examples
from .errors import (
    InvalidArgument,
    InvalidCharacter,
    InvalidDirective,
    KubefileError,
    LimitExceeded,
    MissingArgument,
    UnexpectedToken,
    UnknownFlag,
    UnknownInstruction,
    UnsupportedSource,
)
from .instructions import (
    SYNTAX,
    Add,
    App,
    AppCmds,
    AppEnv,
    Arg,
    Cmd,
    Cmds,
    Copy,
    Env,
    From,
    Instruction,
    Kubefile,
    KubeVersion,
    Label,
    Launch,
    Maintainer,
    Run,
    Span,
)
from .limits import MAX_KUBEFILE_BYTES
from .rules import check_rules

__all__ = ["parse"]

_BOM = "\ufeff"
# Docker's parser-directive form; only `escape` means something to us (`syntax` and
# `check` are BuildKit's and are accepted and ignored).
_DIRECTIVE = re.compile(r"[ \t]*#[ \t]*([A-Za-z][A-Za-z0-9]*)[ \t]*=[ \t]*(.*?)[ \t]*")
_ESCAPE_TERMINALS = frozenset({"TEXT", "FLAG", "_CONT"})
# A lone surrogate is what a byte that is not UTF-8 becomes when read with surrogateescape
# (U+DC80..U+DCFF); a NUL cannot reach a process's environment or argv.
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# App names become directory names (application/apps/<name>/), so no "/" and no "..".
_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_APP_SOURCE = re.compile(r"(?:local|https?)://\S+", re.IGNORECASE)
_MODE = re.compile(r"[0-7]{3,4}")
_FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "COPY": frozenset({"chmod"}),
    "ADD": frozenset({"chmod"}),
}


def parse(text: str, path: str = "Kubefile") -> Kubefile:
    """Parse Kubefile `text` (read from `path`, used in errors) into a `Kubefile`.

    Accepts a UTF-8 BOM and CRLF line ends.  Checks the syntax of every instruction and
    the whole-file rules of `rules.check_rules`, but not app names against the base
    image (see `check_app_references`).  Refuses text over `MAX_KUBEFILE_BYTES` in UTF-8,
    a NUL, and lone surrogates (bytes that were not UTF-8, decoded with surrogateescape).
    Whatever the input, the only exceptions are KubefileError subclasses, with path, line,
    column, label, hint and a caret excerpt.
    """
    source = text.removeprefix(_BOM)
    try:
        _check_size(source)
        source = source.replace("\r\n", "\n")
        if not source.endswith("\n"):
            source += "\n"  # the grammar ends every line with a newline; columns are unchanged
        _check_characters(source)
        escape = _read_escape(source)
        try:
            tree = _parser(escape).parse(source)
        except UnexpectedInput as err:
            raise _syntax_error(err, source, escape) from None
        try:
            instructions = _ToInstructions(escape).transform(tree)
        except VisitError as err:
            if isinstance(err.orig_exc, KubefileError):
                raise err.orig_exc from None
            raise
        kubefile = Kubefile(path, tuple(instructions), escape, source)
        check_rules(kubefile)
    except KubefileError as err:
        err.with_source(path, source)
        raise
    return kubefile


def _check_size(source: str) -> None:
    """LimitExceeded at the line where the text crosses MAX_KUBEFILE_BYTES of UTF-8."""
    head = source[: MAX_KUBEFILE_BYTES + 1].encode("utf-8", "surrogatepass")
    if len(head) <= MAX_KUBEFILE_BYTES:
        return
    # Lone surrogates (3 bytes each here) and a character cut at the limit are dropped: the
    # position is where the limit falls, to the character.
    inside = head[:MAX_KUBEFILE_BYTES].decode("utf-8", "ignore")
    line, column = _position(inside, len(inside))
    raise LimitExceeded(
        f"the Kubefile is larger than {MAX_KUBEFILE_BYTES} bytes (1 MiB)",
        hint="a Kubefile describes the build; move long scripts and data into the context and COPY them",
        line=line,
        column=column,
    )


def _check_characters(source: str) -> None:
    """InvalidCharacter at the first NUL or lone surrogate (a byte that was not UTF-8)."""
    match = _BAD_CHARACTER.search(source)
    if match is None:
        return
    code = ord(match.group())
    if code == 0:
        message, hint = "NUL character", "remove the NUL byte; a Kubefile is text"
    elif 0xDC80 <= code <= 0xDCFF:
        message, hint = f"invalid UTF-8 byte 0x{code - 0xDC00:02x}", "save the Kubefile as UTF-8"
    else:
        message, hint = f"invalid character U+{code:04X} (a lone surrogate)", "save the Kubefile as UTF-8"
    line, column = _position(source, match.start())
    raise InvalidCharacter(message, hint=hint, line=line, column=column)


def _position(source: str, index: int) -> tuple[int, int]:
    """The 1-based (line, column) of `source[index]`."""
    line_start = source.rfind("\n", 0, index) + 1
    return source.count("\n", 0, index) + 1, index - line_start + 1


def _read_escape(source: str) -> str:
    """The escape character set by a `# escape=` directive at the top, else `\\`.

    As in Docker, directives are the comment lines of that form before anything else;
    the first other line (blank, comment, instruction) ends them.
    """
    escape = ""
    for number, line in enumerate(source.split("\n"), start=1):
        match = _DIRECTIVE.fullmatch(line)
        if match is None:
            break
        if match[1].lower() != "escape":
            continue
        if escape:
            raise InvalidDirective("only one escape directive may be given", line=number)
        if match[2] not in ("\\", "`"):
            raise InvalidDirective(
                f"invalid escape character {_show(match[2])}",
                hint="use # escape=\\ or # escape=`",
                line=number,
            )
        escape = match[2]
    return escape or "\\"


@functools.cache
def _parser(escape: str) -> Lark:
    """The LALR parser for `escape`, built once on first use.

    Built without lark's `strict` collision check: that check (interegular) costs ~150 ms per
    process, which a no-op rebuild cannot afford; `tests/unit/kubefile_grammar` builds the
    same grammar with strict=True, so a colliding terminal still fails the tests.
    """
    return build_parser(escape, strict=False)


def build_parser(escape: str, *, strict: bool) -> Lark:
    """Construct the LALR parser for `escape` (tests use strict=True)."""

    def use_escape(terminal: TerminalDef) -> None:
        # In these terminals `\\` (a regex-escaped backslash) always means the escape character.
        if escape != "\\" and terminal.name in _ESCAPE_TERMINALS:
            pattern = terminal.pattern.value.replace("\\\\", re.escape(escape))
            terminal.pattern = PatternRE(pattern, terminal.pattern.flags)

    # FIXME: lark runs interegular's terminal-collision check whenever interegular is
    # importable, strict or not (lark/lexer.py, BasicLexer.__init__), ~250 ms per process;
    # lark has no option to skip it. Hide interegular while building a non-strict parser;
    # drop this when lark grows such an option.
    saved = lark_lexer.has_interegular
    lark_lexer.has_interegular = saved and strict
    try:
        return Lark.open_from_package(
            "kubefile_grammar",
            "kubefile.lark",
            parser="lalr",
            lexer="contextual",
            strict=strict,
            propagate_positions=True,
            edit_terminals=use_escape,
        )
    finally:
        lark_lexer.has_interegular = saved


def _syntax_error(err: UnexpectedInput, source: str, escape: str) -> KubefileError:
    """Map a lark syntax error to a labelled KubefileError through the example table."""
    cls = err.match_examples(_parser(escape).parse, examples(escape), use_accepts=True)
    if cls is None:
        position = getattr(getattr(err, "state", None), "position", None)
        cls = _classes_by_state(escape).get(position) if isinstance(position, int) else None
    line, column, pos = err.line, err.column, err.pos_in_stream or 0
    if isinstance(err, LarkUnexpectedToken) and err.token.type == "$END":
        before = source.rstrip()
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
    if cls is UnknownInstruction:
        word = re.match(r"[^ \t\n]*", source[pos:])
        name = word.group() if word and word.group() else source[pos : pos + 1]
        close = difflib.get_close_matches(name.upper(), KEYWORDS, n=1, cutoff=0.6)
        suggestion = f" (did you mean {close[0]}?)" if close else ""
        return UnknownInstruction(
            f"unknown instruction {_show(name)}{suggestion}",
            hint="instructions are " + ", ".join(KEYWORDS),
            line=line,
            column=column,
        )
    if cls is MissingArgument:
        keyword = _last_keyword(err)
        if keyword is not None:
            name = keyword.value.upper()
            return MissingArgument(
                f"{name} needs an argument",
                hint=f"usage: {SYNTAX[name]}",
                line=keyword.line or line,
                column=keyword.column or column,
            )
    if isinstance(err, LarkUnexpectedToken):
        names = {"$END": "end of file", "_NL": "end of line"}
        what = names.get(err.token.type) or _show(str(err.token))
    else:
        what = _show(source[pos : pos + 1])
    return UnexpectedToken(f"unexpected {what}", line=line, column=column)


@functools.cache
def _classes_by_state(escape: str) -> dict[int, type[KubefileError]]:
    """The example table keyed by LR state alone, ignoring the stack depth `match_examples` compares."""
    by_state: dict[int, type[KubefileError]] = {}
    for cls, snippets in examples(escape).items():
        for snippet in snippets:
            try:
                _parser(escape).parse(snippet)
            except UnexpectedInput as err:
                state = getattr(err, "state", None)
                if state is not None:
                    by_state.setdefault(state.position, cls)
    return by_state


def _last_keyword(err: UnexpectedInput) -> Token | None:
    """The keyword token of the instruction being parsed when `err` happened, if any."""
    state = getattr(err, "state", None)
    for value in reversed(getattr(state, "value_stack", None) or []):
        if isinstance(value, Token) and value.type in KEYWORDS:
            return value
    return None


def _show(text: str) -> str:
    """Quote user text for a message: double quotes, at most 40 characters, printable."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in shown) + '"'


@dataclass(frozen=True, slots=True)
class _RawArgs:
    """What the `args` rule gives: the flag tokens and the text/blank tokens after them."""

    flags: tuple[Token, ...]
    pieces: tuple[Token, ...]


@v_args(meta=True)
class _ToInstructions(Transformer[Token, list[Instruction]]):
    """Turns the parse tree into instruction dataclasses; raises KubefileError on bad arguments."""

    def __init__(self, escape: str) -> None:
        super().__init__()
        self.escape = escape

    # -- plumbing -------------------------------------------------------------------

    def start(self, meta: Meta, children: list[Instruction | Token]) -> list[Instruction]:
        return [child for child in children if not isinstance(child, Token)]

    def args(self, meta: Meta, children: list[Token]) -> _RawArgs:
        flags = tuple(t for t in children if t.type == "FLAG")
        first_text = next(i for i, t in enumerate(children) if t.type == "TEXT")
        return _RawArgs(flags, tuple(children[first_text:]))

    def _read(self, keyword: Token, raw: _RawArgs) -> tuple[str, ArgText, Span, dict[str, str]]:
        """The upper-case keyword, the argument text, the span and the checked flags."""
        name = keyword.value.upper()
        pieces = [(t.value, t.line or 1, t.column or 1) for t in raw.pieces]
        text = ArgText(pieces, name, keyword.line or 1, keyword.column or 1)
        last = next(t for t in reversed(raw.pieces) if t.type == "TEXT")
        end_column = (last.column or 1) + len(last.value.rstrip(" \t"))
        span = Span(keyword.line or 1, keyword.column or 1, last.line or 1, end_column)
        return name, text, span, self._flags(name, raw.flags)

    def _flags(self, keyword: str, tokens: tuple[Token, ...]) -> dict[str, str]:
        allowed = _FLAGS.get(keyword, frozenset())
        flags: dict[str, str] = {}
        for token in tokens:
            flag, equals, value = token.value[2:].partition("=")
            line, column = token.line or 1, token.column or 1
            takes = ", ".join(f"--{f}=VALUE" for f in sorted(allowed)) or "no flags"
            if flag not in allowed:
                raise UnknownFlag(
                    f"unknown flag --{flag} for {keyword}",
                    hint=f"{keyword} takes {takes}",
                    line=line,
                    column=column,
                )
            if not equals or not value:
                raise MissingArgument(
                    f"flag --{flag} needs a value", hint=f"write --{flag}=VALUE", line=line, column=column
                )
            if flag in flags:
                raise InvalidArgument(
                    f"flag --{flag} is given twice", hint=f"{keyword} takes {takes}", line=line, column=column
                )
            flags[flag] = value
        return flags

    def _app_name(self, text: ArgText, name: str, offset: int) -> str:
        if not _APP_NAME.fullmatch(name):
            raise text.error(
                InvalidArgument,
                f"invalid app name {_show(name)}",
                offset,
                "app names start with a letter or digit and use only letters, digits, '.', '_' and '-'",
            )
        return name

    def _pairs(self, text: ArgText, start: int, *, legacy: bool) -> tuple[tuple[str, str], ...]:
        """KEY=VALUE words from `start`; with `legacy`, also Docker's `KEY VALUE WITH SPACES`."""
        words = text.quoted_words(start, self.escape)
        if not words:
            raise text.error(
                MissingArgument, f"{text.keyword} needs KEY=VALUE", len(text.text), SYNTAX[text.keyword]
            )
        if legacy and words[0].assignment() is None:
            name = words[0].plain()
            rest = text.quoted_words(words[0].end, self.escape, split=False)
            if not rest or not rest[0].chars:
                raise text.error(
                    MissingArgument,
                    f"{text.keyword} {name} needs a value",
                    words[0].start,
                    SYNTAX[text.keyword],
                )
            legacy_value = Word(rest[0].start, _lstrip(rest[0].chars))
            return ((name, legacy_value.stored(self.escape)),)
        pairs = []
        for word in words:
            split = word.assignment()
            if split is None:
                raise text.error(
                    InvalidArgument,
                    f"{_show(word.plain())} is not KEY=VALUE",
                    word.start,
                    SYNTAX[text.keyword],
                )
            key, value = split
            if not key.chars:
                raise text.error(InvalidArgument, "empty name before =", word.start, SYNTAX[text.keyword])
            pairs.append((key.plain(), value.stored(self.escape)))
        return tuple(pairs)

    # -- instructions ---------------------------------------------------------------

    def from_(self, meta: Meta, children: tuple[Token, _RawArgs]) -> From:
        _, text, span, flags = self._read(*children)
        words = text.words()
        if len(words) != 1:
            raise text.error(
                InvalidArgument,
                "FROM takes one image",
                words[1][1],
                "sealer builds one stage: FROM IMAGE (no AS NAME, no second image)",
            )
        return From(words[0][0], flags.get("platform"), span)

    def _copy(self, children: tuple[Token, _RawArgs]) -> tuple[tuple[str, ...], str, str | None, Span]:
        name, text, span, flags = self._read(*children)
        chmod = flags.get("chmod")
        if chmod is not None and not _MODE.fullmatch(chmod):
            flag = children[1].flags[0]
            raise InvalidArgument(
                f"invalid --chmod mode {_show(chmod)}",
                hint="give an octal mode such as --chmod=0755",
                line=flag.line or 1,
                column=flag.column or 1,
            )
        paths = text.maybe_json_list()
        if paths is None:
            paths = tuple(word for word, _ in text.words())
        if len(paths) < 2:
            raise text.error(
                MissingArgument, f"{name} needs a source and a destination", 0, f"usage: {SYNTAX[name]}"
            )
        return paths[:-1], paths[-1], chmod, span

    def copy(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Copy:
        return Copy(*self._copy(children))

    def add(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Add:
        return Add(*self._copy(children))

    def _command(self, children: tuple[Token, _RawArgs]) -> tuple[ArgText, str | tuple[str, ...], Span]:
        _, text, span, _ = self._read(*children)
        exec_form = text.maybe_json_list()
        return text, (text.text if exec_form is None else exec_form), span

    def run(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Run:
        text, command, span = self._command(children)
        if not command:
            raise text.error(MissingArgument, "RUN needs a command", 0, f"usage: {SYNTAX['RUN']}")
        return Run(command, span)

    def cmd(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Cmd:
        _, command, span = self._command(children)
        return Cmd(command, span)

    def _commands(self, text: ArgText, start: int) -> tuple[str, ...]:
        if text.text.startswith("[", start):
            commands = text.json_list(start, "commands")
        else:
            commands = (text.text[start:],)
        if not commands:
            raise text.error(
                MissingArgument, f"{text.keyword} needs a command", start, f"usage: {SYNTAX[text.keyword]}"
            )
        return commands

    def cmds(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Cmds:
        _, text, span, _ = self._read(*children)
        return Cmds(self._commands(text, 0), span)

    def launch(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Launch:
        _, text, span, _ = self._read(*children)
        if text.text.startswith("["):
            names = text.json_list(0, "app names")
            checked = tuple(self._app_name(text, n, 0) for n in names)
        else:
            checked = tuple(self._app_name(text, n, offset) for n, offset in text.words())
        if not checked:
            raise text.error(MissingArgument, "LAUNCH needs an app name", 0, f"usage: {SYNTAX['LAUNCH']}")
        return Launch(checked, span)

    def arg(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Arg:
        _, text, span, _ = self._read(*children)
        items: list[tuple[str, str | None]] = []
        for word in text.quoted_words(0, self.escape):
            split = word.assignment()
            name, value = (
                (word.plain(), None) if split is None else (split[0].plain(), split[1].stored(self.escape))
            )
            if not _ARG_NAME.fullmatch(name):
                raise text.error(
                    InvalidArgument,
                    f"invalid ARG name {_show(name)}",
                    word.start,
                    "ARG names are letters, digits and _, not starting with a digit",
                )
            items.append((name, value))
        return Arg(tuple(items), span)

    def env(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Env:
        _, text, span, _ = self._read(*children)
        return Env(self._pairs(text, 0, legacy=True), span)

    def label(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Label:
        _, text, span, _ = self._read(*children)
        return Label(self._pairs(text, 0, legacy=True), span)

    def maintainer(self, meta: Meta, children: tuple[Token, _RawArgs]) -> Maintainer:
        _, text, span, _ = self._read(*children)
        return Maintainer(text.text, span)

    def _app(self, kind: Literal["APP", "CNI", "CSI"], children: tuple[Token, _RawArgs]) -> App:
        _, text, span, _ = self._read(*children)
        words = text.words()
        if len(words) < 2:
            raise text.error(
                MissingArgument, f"{kind} needs a name and at least one source", 0, f"usage: {SYNTAX[kind]}"
            )
        name = self._app_name(text, *words[0])
        for source, offset in words[1:]:
            if not _APP_SOURCE.fullmatch(source):
                raise text.error(
                    UnsupportedSource,
                    f"unsupported source {_show(source)} for {kind} {name}",
                    offset,
                    "app sources are local://PATH (in the build context), http://URL or https://URL",
                )
        return App(kind, name, tuple(source for source, _ in words[1:]), span)

    def app(self, meta: Meta, children: tuple[Token, _RawArgs]) -> App:
        return self._app("APP", children)

    def cni(self, meta: Meta, children: tuple[Token, _RawArgs]) -> App:
        return self._app("CNI", children)

    def csi(self, meta: Meta, children: tuple[Token, _RawArgs]) -> App:
        return self._app("CSI", children)

    def appcmds(self, meta: Meta, children: tuple[Token, _RawArgs]) -> AppCmds:
        _, text, span, _ = self._read(*children)
        words = text.words()
        name = self._app_name(text, *words[0])
        if len(words) < 2:
            raise text.error(
                MissingArgument, "APPCMDS needs commands after the app name", 0, SYNTAX["APPCMDS"]
            )
        return AppCmds(name, self._commands(text, words[1][1]), span)

    def appenv(self, meta: Meta, children: tuple[Token, _RawArgs]) -> AppEnv:
        _, text, span, _ = self._read(*children)
        words = text.words()
        name = self._app_name(text, *words[0])
        if len(words) < 2:
            raise text.error(
                MissingArgument, "APPENV needs KEY=VALUE after the app name", 0, SYNTAX["APPENV"]
            )
        return AppEnv(name, self._pairs(text, words[1][1], legacy=False), span)

    def kubeversion(self, meta: Meta, children: tuple[Token, _RawArgs]) -> KubeVersion:
        _, text, span, _ = self._read(*children)
        words = text.words()
        if len(words) != 1:
            raise text.error(
                InvalidArgument, "KUBEVERSION takes one version", words[1][1], SYNTAX["KUBEVERSION"]
            )
        return KubeVersion(words[0][0], span)


def _lstrip(chars: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """`chars` without leading unquoted blanks."""
    index = 0
    while index < len(chars) and chars[index][0] in " \t" and not chars[index][1]:
        index += 1
    return chars[index:]
