"""Script environment: the env layers, the reserved SEALER_* variables and `.tmpl` rendering.

Precedence, later wins: image ENV < Clusterfile `spec.env` < the host's `env` < `-e` on the
command line; then the reserved variables (`reserved_env`) on top. Names starting `SEALER_`
are reserved in every layer, so a script can trust them.

Env lists follow sealer's `ConvertEnv`: entries are `KEY=VALUE`; a key given twice, or a value
with `;`, is a list, kept here as one string joined by `;` (`IP=a`, `IP=b` -> `IP=a;b`).

`render_template` is the subset of Go text/template that sealer's rootfs templates use
(sealer pkg/env `RenderTemplate`, sealerio/basefs `*.tmpl`): `{{ .Key }}`, `{{ or .Key "x" }}`,
the `b64enc`/`b64dec` functions, pipelines `|`, `{{-`/`-}}` trimming and `{{/* comments */}}`.
Unlike Go (which prints `<no value>`), a missing variable outside `or` is an error.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping

from builder.errors import ClusterError, UsageError
from builder.runtime.cluster import Cluster, HostSpec, Role

RESERVED_PREFIX = "SEALER_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InvalidEnv(ClusterError):
    """An env entry or name that is malformed or reserved; `source` names the layer."""

    reference = "invalid-env"

    def __init__(self, message: str, *, source: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message, hint=hint)
        self.source = source


class TemplateError(ClusterError):
    """A `.tmpl` file that cannot be rendered: names the file, the line and the variable."""

    reference = "template-error"

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int,
        variable: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{path}:{line}: {message}", hint=hint)
        self.path = path
        self.line = line
        self.variable = variable


def check_env_name(name: str, *, source: str | None = None) -> str:
    """A shell variable name, not reserved."""
    if not _NAME.match(name):
        raise InvalidEnv(
            f"{name!r} is not a valid variable name",
            source=source,
            hint="letters, digits and '_', not starting with a digit",
        )
    if name.startswith(RESERVED_PREFIX):
        raise InvalidEnv(
            f"{name} is reserved: sealer sets the {RESERVED_PREFIX}* variables itself", source=source
        )
    return name


def parse_env_entry(entry: str, *, source: str | None = None) -> tuple[str, str]:
    """`KEY=VALUE` (VALUE may be empty or contain `=`) into its parts."""
    key, sep, value = entry.partition("=")
    if not sep:
        raise InvalidEnv(f"{entry!r} is not KEY=VALUE", source=source)
    return check_env_name(key, source=source), value


def join_env_entries(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(key, value) pairs into an env the way sealer does: a repeated key is a `;` list, in
    order. The values are joined once at the end: growing the string per entry made a long
    list of one key quadratic."""
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    return {key: ";".join(parts) for key, parts in values.items()}


def parse_env_list(entries: Iterable[str], *, source: str | None = None) -> dict[str, str]:
    """A Clusterfile env list (`[K=V, ...]`) into a dict, repeated keys joined by `;`."""
    return join_env_entries(parse_env_entry(entry, source=source) for entry in entries)


def parse_env_args(values: Iterable[str]) -> dict[str, str]:
    """The `-e K=V` options of run/apply/join; UsageError (exit 2) naming the bad one."""
    try:
        return parse_env_list(values, source="-e")
    except InvalidEnv as err:
        raise UsageError(err.message, hint=err.hint) from None


def merge_env(
    image_env: Mapping[str, str],
    cluster_env: Mapping[str, str],
    host_env: Mapping[str, str],
    cli_env: Mapping[str, str],
) -> dict[str, str]:
    """The env of one host's scripts, before the reserved variables; later layers win.

    Every layer is checked for reserved or malformed names, the error naming the layer.
    """
    merged: dict[str, str] = {}
    for source, layer in (
        ("image ENV", image_env),
        ("Clusterfile env", cluster_env),
        ("host env", host_env),
        ("-e", cli_env),
    ):
        for key, value in layer.items():
            check_env_name(key, source=source)
            merged[key] = value
    return merged


def reserved_env(cluster: Cluster, host: HostSpec, rootfs_path: str) -> dict[str, str]:
    """The SEALER_* variables of `host`'s scripts; they go over `merge_env`'s result.

    SEALER_ROLE is `master` or `node` (master0 is a master; compare SEALER_HOST_IP with
    SEALER_MASTER0 to single it out). Lists are comma-separated, in host order.
    """
    return {
        "SEALER_ROLE": str(host.role),
        "SEALER_HOST_IP": host.ip,
        "SEALER_MASTER0": cluster.master0.ip,
        "SEALER_MASTERS": cluster.ip_list(Role.MASTER),
        "SEALER_NODES": cluster.ip_list(Role.NODE),
        "SEALER_CLUSTER": cluster.name,
        "SEALER_ROOTFS": rootfs_path,
    }


# --- templates -----------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r'\s*(?:(\|)|"((?:[^"\\]|\\.)*)"|`([^`]*)`|\.([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*)|(\S))'
)
_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


class _Missing:
    """A variable absent from the env: falsy for `or`, an error anywhere else."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_Value = str | _Missing


def _unquote(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def _b64dec(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as err:
        # sealer's b64dec renders the error text; a broken config file is worse than an error.
        raise ValueError(f"b64dec: {err}") from None


_FUNCS = {
    "b64enc": lambda v: base64.b64encode(v.encode()).decode(),
    "b64dec": _b64dec,
}


def render_template(text: str, env: Mapping[str, str], *, path: str) -> str:
    """Render one `.tmpl` file's text with `env`; TemplateError names file, line and variable."""
    out: list[str] = []
    pos = 0
    trim_next = False
    for match in _ACTION.finditer(text):
        chunk = text[pos : match.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if match.group(1):
            chunk = chunk.rstrip()
        out.append(chunk)
        line = text.count("\n", 0, match.start()) + 1
        out.append(_run_action(match.group(2).strip(), env, path=path, line=line))
        trim_next = bool(match.group(3))
        pos = match.end()
    tail = text[pos:]
    if "{{" in tail:
        line = text.count("\n", 0, pos + tail.index("{{")) + 1
        raise TemplateError("unclosed action: '{{' without '}}'", path=path, line=line)
    out.append(tail.lstrip() if trim_next else tail)
    return "".join(out)


def _run_action(body: str, env: Mapping[str, str], *, path: str, line: int) -> str:
    if body.startswith("/*"):
        if not body.endswith("*/"):
            raise TemplateError("unclosed comment", path=path, line=line)
        return ""
    commands: list[list[tuple[str, str]]] = [[]]
    for m in _TOKEN.finditer(body):
        pipe, dq, bq, var, ident, other = m.groups()
        if pipe:
            commands.append([])
        elif dq is not None:
            commands[-1].append(("str", _unquote(dq)))
        elif bq is not None:
            commands[-1].append(("str", bq))
        elif var:
            commands[-1].append(("var", var))
        elif ident:
            if ident in _KEYWORDS:
                raise TemplateError(
                    f"'{{{{ {ident} }}}}' is not supported: only {{{{ .Key }}}}, or, b64enc, b64dec",
                    path=path,
                    line=line,
                    hint="compute the value in the Clusterfile env instead",
                )
            commands[-1].append(("func", ident))
        elif other:
            raise TemplateError(f"unexpected {other!r} in '{{{{ {body} }}}}'", path=path, line=line)
    if any(not c for c in commands):
        raise TemplateError(f"empty command in '{{{{ {body} }}}}'", path=path, line=line)

    value: _Value | None = None
    for command in commands:
        value = _run_command(command, value, env, body=body, path=path, line=line)
    assert value is not None
    if isinstance(value, _Missing):
        raise _missing(value, path=path, line=line)
    return value


def _run_command(
    command: list[tuple[str, str]],
    piped: _Value | None,
    env: Mapping[str, str],
    *,
    body: str,
    path: str,
    line: int,
) -> _Value:
    kind, name = command[0]
    if any(k == "func" for k, _ in command[1:]):
        raise TemplateError(
            f"a function as an argument is not supported in '{{{{ {body} }}}}'",
            path=path,
            line=line,
            hint="use a pipeline: {{ .Key | b64enc }}",
        )
    args: list[_Value] = [_operand(k, v, env) for k, v in command[1:]]
    if piped is not None:
        args.append(piped)
    if kind != "func":
        if args:
            raise TemplateError(f"{name!r} is not a function in '{{{{ {body} }}}}'", path=path, line=line)
        return _operand(kind, name, env)
    if name == "or":
        if not args:
            raise TemplateError("or needs at least one argument", path=path, line=line)
        # Go's `or` returns the first non-empty argument, else the last one.
        for arg in args:
            if isinstance(arg, str) and arg:
                return arg
        return args[-1]
    func = _FUNCS.get(name)
    if func is None:
        raise TemplateError(
            f"unknown function {name!r}", path=path, line=line, hint="functions: or, b64enc, b64dec"
        )
    if len(args) != 1:
        raise TemplateError(f"{name} takes one argument, got {len(args)}", path=path, line=line)
    arg = args[0]
    if isinstance(arg, _Missing):
        raise _missing(arg, path=path, line=line)
    try:
        return func(arg)
    except ValueError as err:
        raise TemplateError(str(err), path=path, line=line) from None


def _operand(kind: str, value: str, env: Mapping[str, str]) -> _Value:
    if kind == "var":
        return env[value] if value in env else _Missing(value)
    return value


def _missing(value: _Missing, *, path: str, line: int) -> TemplateError:
    return TemplateError(
        f"variable {value.name} is not set",
        path=path,
        line=line,
        variable=value.name,
        hint=f"set it in the Clusterfile env, the host env or with -e {value.name}=..., "
        f'or give a default: {{{{ or .{value.name} "default" }}}}',
    )
