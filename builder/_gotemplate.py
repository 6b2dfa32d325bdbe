"""Go text/template, the one engine behind `--format`, `.tmpl` rendering and chart image discovery.

`parse(text, functions, source=...)` returns a `Template`; `Template.execute(dot, dialect)`
renders it. The language is Go's: `{{ pipeline }}`, `{{- -}}` trimming, `{{/* comments */}}`,
`if`/`else if`/`else`/`end`, `with`/`else with`, `range` (with `$i, $v :=`, `else`, `break`,
`continue`), `$var :=`/`=`, `$`, parentheses, `(pipeline).Field`, string/raw/number/bool/nil
literals and pipelines `|`. `define`/`template`/`block` are refused. The function sets live in
`builder/_gotemplate_funcs.py`: Go's builtins, docker's `--format` extras, Helm's image-field
subset. What a field or a printed value means is the `Dialect`'s: the CLI matches field names
case-insensitively, `.tmpl` rendering refuses an unset variable, Helm renders nil as "".

No PyPI package implements text/template in Python and is kept up (checked: `go-template`
0.0.3 of 2019, a CGo wrapper at 0.0.2), so sealer keeps this one. Every failure is a
TemplateError: one line naming source and line (`--format:1: function "x" not defined`).
Lexer, parser and executor of the one language stay in this one module (~500 lines).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from builder.errors import TemplateError

MAX_OUTPUT_CHARS = 16 << 20  # a `range` nested in a `range` must not fill memory
MAX_RANGE_STEPS = 1_000_000


def is_empty(value: Any) -> bool:
    """Go's truth for `if`, `with`, `and`, `or`, `not`: false, 0, nil, "" and empty collections."""
    return not value


@dataclass(frozen=True)
class Dialect:
    """What a template means where it runs: its functions, field lookup and value printing."""

    functions: Mapping[str, Callable[..., Any]]
    lookup: Callable[[Any, str], Any]  # value.field; raise TemplateError if it has none
    show: Callable[[Any], str]  # how `{{ value }}` prints


# -- lexing -------------------------------------------------------------------------------------

_SPACE = " \t\r\n"
MAX_NESTING = 100  # blocks inside blocks, parentheses inside parentheses
MAX_EXCERPT = 60  # characters of an action quoted in an error
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    | (?P<str>"(?:[^"\\\n]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<char>'(?:[^'\\]|\\.)')
    | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))
    | (?P<assign>:=|=)
    | (?P<var>\$[A-Za-z0-9_]*)
    | (?P<field>\.[A-Za-z0-9_]+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[()|,])""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "0": "\0"}
_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    spaced: bool  # whitespace before it: `(x).F` chains a field, `(x) .F` is an argument


def _tokens(body: str, err: Callable[[str], TemplateError]) -> list[_Tok]:
    out: list[_Tok] = []
    pos, spaced = 0, True
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if m is None:
            raise err(f"unexpected {body[pos]!r} in {_quote(body)}")
        kind = m.lastgroup or ""
        if kind == "space":
            spaced = True
        else:
            out.append(_Tok(kind, m.group(), spaced))
            spaced = False
        pos = m.end()
    return out


def _quote(body: str) -> str:
    """An action as errors show it: on one line, at most MAX_EXCERPT characters."""
    body = " ".join(body.split())
    return "{{" + (body if len(body) <= MAX_EXCERPT else body[: MAX_EXCERPT - 3] + "...") + "}}"


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text[1:-1])


# -- syntax tree --------------------------------------------------------------------------------

# Expression nodes are tuples: ("lit", value) ("field", names) ("var", name, names) ("fn", name)
# ("pipe", Pipeline) ("chain", node, names) ("dot",)
_Node = tuple[Any, ...]


@dataclass
class Pipeline:
    decl: list[str]  # `$x :=` / `$i, $v :=` names
    assign: bool  # `=` rather than `:=`
    commands: list[list[_Node]]
    text: str


@dataclass
class _Block:
    keyword: str  # "if", "with", "range"
    pipe: Pipeline
    line: int
    body: list[Any] = field(default_factory=list)
    otherwise: list[Any] = field(default_factory=list)  # `else` branch (an `else if` nests a block)


@dataclass
class _Action:
    pipe: Pipeline
    line: int


class _ExprParser:
    def __init__(self, toks: list[_Tok], functions: Mapping[str, Any], err: Callable[[str], TemplateError]):
        self.toks, self.pos, self.functions, self.err = toks, 0, functions, err
        self.depth = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def pipeline(self, text: str, *, decl_ok: bool) -> Pipeline:
        decl: list[str] = []
        assign = False
        if decl_ok:
            j = 0
            names = []
            while j < len(self.toks) and self.toks[j].kind == "var":
                names.append(self.toks[j].text)
                if j + 1 < len(self.toks) and self.toks[j + 1].text == ",":
                    j += 2
                    continue
                j += 1
                break
            if names and j < len(self.toks) and self.toks[j].kind == "assign" and len(names) <= 2:
                decl, assign, self.pos = names, self.toks[j].text == "=", j + 1
        pipe = Pipeline(decl, assign, self._commands(text), text)
        if self.peek() is not None:
            raise self.err(f"unexpected {self.peek().text!r} in {_quote(text)}")  # type: ignore[union-attr]
        return pipe

    def _commands(self, text: str) -> list[list[_Node]]:
        commands = [self._command(text)]
        while (tok := self.peek()) is not None and tok.text == "|":
            self.pos += 1
            commands.append(self._command(text))
        return commands

    def _command(self, text: str) -> list[_Node]:
        args: list[_Node] = []
        while (tok := self.peek()) is not None and tok.text not in ("|", ")"):
            args.append(self._operand(text))
        if not args:
            raise self.err(f"missing value for command in {_quote(text)}")
        if any(a[0] == "fn" for a in args[1:]):
            bad = next(a[1] for a in args[1:] if a[0] == "fn")
            raise self.err(f"function {bad!r} used as an argument (wrap it in parentheses) in {_quote(text)}")
        return args

    def _operand(self, text: str) -> _Node:
        tok = self.toks[self.pos]
        self.pos += 1
        node: _Node
        if tok.kind == "str":
            node = ("lit", _unquote(tok.text))
        elif tok.kind == "raw":
            node = ("lit", tok.text[1:-1])
        elif tok.kind == "char":
            node = ("lit", ord(_unquote(tok.text)))
        elif tok.kind == "num":
            node = ("lit", _number(tok.text))
        elif tok.kind == "field":
            names = [tok.text[1:]] if tok.text != "." else []
            names += self._chain()
            node = ("field", names) if names else ("dot",)
        elif tok.kind == "var":
            node = ("var", tok.text, self._chain())
        elif tok.kind == "ident":
            if tok.text in ("true", "false"):
                node = ("lit", tok.text == "true")
            elif tok.text == "nil":
                node = ("lit", None)
            elif tok.text in _KEYWORDS:
                raise self.err(f"unexpected keyword {tok.text!r} in {_quote(text)}")
            elif tok.text not in self.functions:
                raise self.err(f'function "{tok.text}" not defined')
            else:
                node = ("fn", tok.text)
        elif tok.text == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise self.err(f"parentheses nested more than {MAX_NESTING} deep")
            inner = Pipeline([], False, self._commands(text), text)
            self.depth -= 1
            closing = self.peek()
            if closing is None or closing.text != ")":
                raise self.err(f"unclosed left paren in {_quote(text)}")
            self.pos += 1
            chain = self._chain()
            node = ("chain", ("pipe", inner), chain) if chain else ("pipe", inner)
        else:
            raise self.err(f"unexpected {tok.text!r} in {_quote(text)}")
        return node

    def _chain(self) -> list[str]:
        names = []
        while (tok := self.peek()) is not None and tok.kind == "field" and tok.text != "." and not tok.spaced:
            names.append(tok.text[1:])
            self.pos += 1
        return names


def _number(text: str) -> int | float:
    if text.lower().lstrip("+-").startswith("0x"):
        return int(text, 16)
    return float(text) if any(c in text for c in ".eE") else int(text)


@dataclass
class Template:
    """A parsed template; `execute` renders it (a Template is reusable and never changes)."""

    nodes: list[Any]
    source: str

    def execute(
        self, dot: Any, dialect: Dialect, *, root: Any = None, variables: Mapping[str, Any] | None = None
    ) -> str:
        """Render with `.` = `dot` and `$` = `root` (default `dot`); `variables` are predeclared."""
        out: list[str] = []
        state = _State(dialect, {**(variables or {}), "$": dot if root is None else root}, self.source, out)
        try:
            state.run(self.nodes, dot)
        except (_Break, _Continue):
            raise TemplateError("break or continue outside range", source=self.source) from None
        return "".join(out)


def evaluate(
    expr: str, dialect: Dialect, dot: Any, variables: dict[str, Any], *, source: str = "template"
) -> Any:
    """The value of one action's pipeline (`.Values.tag | default "x"`); `$x := ...` declares
    `$x` in `variables` (which also holds `$`) and returns None."""

    def err(detail: str) -> TemplateError:
        return TemplateError(detail, source=source)

    toks = _tokens(expr, err)
    if not toks:
        raise err("missing value for command")
    pipe = _ExprParser(toks, dialect.functions, err).pipeline(expr, decl_ok=True)
    value = _State(dialect, variables, source, []).pipeline(pipe, dot)
    return None if pipe.decl else value


def parse(text: str, functions: Mapping[str, Any], *, source: str = "template") -> Template:
    """Parse `text`; TemplateError at the first syntax error (unknown functions included)."""
    root: list[Any] = []
    stack: list[tuple[_Block, list[Any]]] = []  # (block, the list that receives its nodes)
    current = root
    pos, trim_next, line = 0, False, 1
    # A find() scan, not a regex: each character is looked at a bounded number of times, so an
    # unclosed `{{` among 20,000 others fails at once (a lazy regex took 35 s on it).
    while (start := text.find("{{", pos)) >= 0:
        line += text.count("\n", pos, start)
        end = text.find("}}", start + 2)
        if end < 0:
            raise TemplateError("unclosed action: '{{' without '}}'", line=line, source=source)
        inner = text[start + 2 : end]
        trim_left = len(inner) > 1 and inner[0] == "-" and inner[1] in _SPACE
        trim_right = len(inner) > 1 and inner[-1] == "-" and inner[-2] in _SPACE
        literal = text[pos:start]
        if trim_next:
            literal = literal.lstrip()
        if trim_left:
            literal = literal.rstrip()
        if literal:
            current.append(literal)
        body = inner[1 if trim_left else 0 : len(inner) - (1 if trim_right else 0)].strip()
        current = _parse_action(body, line, functions, source, stack, current)
        line += inner.count("\n")
        trim_next, pos = trim_right, end + 2
    rest = text[pos:]
    rest = rest.lstrip() if trim_next else rest
    if rest:
        current.append(rest)
    if stack:
        block = stack[-1][0]
        raise TemplateError(
            f"unexpected EOF: {{{{{block.keyword}}}}} without {{{{end}}}}", line=block.line, source=source
        )
    return Template(root, source)


def _parse_action(
    body: str,
    line: int,
    functions: Mapping[str, Any],
    source: str,
    stack: list[tuple[_Block, list[Any]]],
    current: list[Any],
) -> list[Any]:
    def err(detail: str) -> TemplateError:
        return TemplateError(detail, line=line, source=source)

    if body.startswith("/*"):
        if not body.endswith("*/"):
            raise err("unclosed comment")
        return current
    toks = _tokens(body, err)
    if not toks:
        raise err("missing value for command")
    word = toks[0].text if toks[0].kind == "ident" else ""
    if word in ("define", "template", "block"):
        raise err(
            f"{{{{{word}}}}} is not supported here",
        )
    if word in ("if", "with", "range"):
        if len(stack) >= MAX_NESTING:
            raise err(f"blocks nested more than {MAX_NESTING} deep")
        pipe = _ExprParser(toks[1:], functions, err).pipeline(body, decl_ok=word != "if")
        block = _Block(word, pipe, line)
        current.append(block)
        stack.append((block, current))
        return block.body
    if word == "else":
        if not stack or stack[-1][0].otherwise or current is stack[-1][0].otherwise:
            raise err("unexpected {{else}}")
        block = stack[-1][0]
        if len(toks) > 1:  # `else if` / `else with`: a nested block closed by the same `end`
            kind = toks[1].text
            if kind not in ("if", "with") or kind != block.keyword:
                raise err(f"unexpected {_quote(body)}")
            inner = _Block(
                kind, _ExprParser(toks[2:], functions, err).pipeline(body, decl_ok=kind == "with"), line
            )
            block.otherwise.append(inner)
            stack[-1] = (inner, stack[-1][1])
            return inner.body
        return block.otherwise
    if word == "end":
        if len(toks) > 1 or not stack:
            raise err("unexpected {{end}}")
        return stack.pop()[1]
    if word in ("break", "continue"):
        if not any(b.keyword == "range" for b, _ in stack):
            raise err(f"{{{{{word}}}}} outside {{{{range}}}}")
        current.append(word)
        return current
    current.append(_Action(_ExprParser(toks, functions, err).pipeline(body, decl_ok=True), line))
    return current


# -- execution ----------------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    def __init__(self, dialect: Dialect, variables: dict[str, Any], source: str, out: list[str]):
        self.dialect, self.vars, self.source, self.out = dialect, variables, source, out
        self.size, self.steps = 0, 0

    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT_CHARS:
            raise TemplateError(f"output larger than {MAX_OUTPUT_CHARS} characters", source=self.source)
        self.out.append(text)

    def run(self, nodes: list[Any], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, str):
                if node == "break":
                    raise _Break
                if node == "continue":
                    raise _Continue
                self.emit(node)
                continue
            try:
                if isinstance(node, _Action):
                    value = self.pipeline(node.pipe, dot)
                    if not node.pipe.decl:
                        self.emit(self.dialect.show(value))
                else:
                    self.block(node, dot)
            except TemplateError as err:
                raise err.located(self.source, node.line) from None

    def block(self, block: _Block, dot: Any) -> None:
        saved = dict(self.vars)
        try:
            if block.keyword == "range":
                self.range(block, dot)
                return
            value = self.pipeline(block.pipe, dot)
            if not is_empty(value):
                self.run(block.body, value if block.keyword == "with" else dot)
            else:
                self.run(block.otherwise, dot)
        finally:
            # Variables declared inside a block end with it; `=` assignments to outer ones stay.
            self.vars = {k: self.vars[k] for k in saved}

    def range(self, block: _Block, dot: Any) -> None:
        pipe = Pipeline([], False, block.pipe.commands, block.pipe.text)
        value = self.pipeline(pipe, dot)
        if isinstance(value, Mapping):
            items = [(k, value[k]) for k in sorted(value, key=str)]  # Go ranges maps in key order
        elif isinstance(value, (list, tuple, str)) or value is None:
            items = list(enumerate(value or ()))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise TemplateError(f"range can't iterate over {self.dialect.show(value)}")
        if not items:
            self.run(block.otherwise, dot)
            return
        for key, item in items:
            self.steps += 1
            if self.steps > MAX_RANGE_STEPS:
                raise TemplateError(f"more than {MAX_RANGE_STEPS} range iterations")
            if len(block.pipe.decl) == 2:
                self.vars[block.pipe.decl[0]], self.vars[block.pipe.decl[1]] = key, item
            elif block.pipe.decl:
                self.vars[block.pipe.decl[0]] = item
            try:
                self.run(block.body, item)
            except _Break:
                break
            except _Continue:
                continue

    def pipeline(self, pipe: Pipeline, dot: Any) -> Any:
        value: Any = None
        for i, command in enumerate(pipe.commands):
            value = self.command(command, dot, value, piped=i > 0)
        for name in pipe.decl:
            if pipe.assign and name not in self.vars:
                raise TemplateError(f"undefined variable: {name}")
            self.vars[name] = value
        return value

    def command(self, command: list[_Node], dot: Any, piped_value: Any, *, piped: bool) -> Any:
        head = command[0]
        if head[0] != "fn":
            if len(command) > 1 or piped:
                raise TemplateError(f"can't give argument to non-function {_describe(head)}")
            return self.value(head, dot)
        name = head[1]
        args = [self.value(a, dot) for a in command[1:]]
        if piped:
            args.append(piped_value)
        fn = self.dialect.functions[name]
        try:
            inspect.signature(fn).bind(*args)
        except TypeError:
            raise TemplateError(f"wrong number of args for {name}: got {len(args)}") from None
        except ValueError:
            pass  # a C function without a signature
        try:
            return fn(*args)
        except TemplateError:
            raise
        except TypeError as err:
            raise TemplateError(f"error calling {name}: {err}") from None
        except (ValueError, KeyError, IndexError, OverflowError) as err:
            raise TemplateError(f"error calling {name}: {err}") from None

    def value(self, node: _Node, dot: Any) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "dot":
            return dot
        if kind == "field":
            return self.fields(dot, node[1])
        if kind == "var":
            if node[1] not in self.vars:
                raise TemplateError(f"undefined variable: {node[1]}")
            return self.fields(self.vars[node[1]], node[2])
        if kind == "pipe":
            return self.pipeline(node[1], dot)
        if kind == "chain":
            return self.fields(self.value(node[1], dot), node[2])
        raise TemplateError(f"function {node[1]!r} used as a value")

    def fields(self, value: Any, names: list[str]) -> Any:
        for name in names:
            value = self.dialect.lookup(value, name)
        return value


def _describe(node: _Node) -> str:
    if node[0] == "field":
        return "." + ".".join(node[1])
    if node[0] == "var":
        return str(node[1]) + "".join("." + n for n in node[2])
    if node[0] == "lit":
        return repr(node[1])
    return "(...)" if node[0] in ("pipe", "chain") else "."
