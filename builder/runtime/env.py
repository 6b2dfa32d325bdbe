"""Script environment: the env layers, the reserved SEALER_* variables and `.tmpl` rendering.

Precedence, later wins: image ENV < Clusterfile `spec.env` < the host's `env` < `-e` on the
command line; then the reserved variables (`reserved_env`) on top. Names starting `SEALER_`
are reserved in every layer, so a script can trust them.

Env lists follow sealer's `ConvertEnv`: entries are `KEY=VALUE`; a key given twice, or a value
with `;`, is a list, kept here as one string joined by `;` (`IP=a`, `IP=b` -> `IP=a;b`).

`render_template` renders sealer's rootfs templates (sealer pkg/env `RenderTemplate`,
sealerio/basefs `*.tmpl`) with Go text/template (`builder._gotemplate`, the engine `--format`
and chart discovery share): `{{ .Key }}`, `{{ or .Key "x" }}`, `if`/`range`/`with`, the
builtins plus `b64enc`/`b64dec`. Unlike Go (which prints `<no value>`), a missing variable
outside `or`/`and`/`not` is an error.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Iterable, Mapping

from builder._gotemplate import Dialect, parse
from builder._gotemplate_funcs import builtin_functions, go_text
from builder.errors import InvalidEnv, RootfsTemplateError, TemplateError, UsageError
from builder.runtime.cluster import Cluster, HostSpec, Role

RESERVED_PREFIX = "SEALER_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


class _Missing:
    """A variable absent from the env: falsy for `or`/`and`/`not`, an error anywhere else."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __bool__(self) -> bool:
        return False


def _missing(name: str) -> TemplateError:
    return TemplateError(
        f"variable {name} is not set",
        variable=name,
        hint=f"set it in the Clusterfile env, the host env or with -e {name}=..., "
        f'or give a default: {{{{ or .{name} "default" }}}}',
    )


def _lookup(value: object, name: str) -> object:
    if isinstance(value, _Missing):
        raise _missing(value.name)
    if isinstance(value, Mapping):
        return value[name] if name in value else _Missing(name)
    raise TemplateError(f"can't evaluate field {name} in type {type(value).__name__}")


def _show(value: object) -> str:
    if isinstance(value, _Missing):
        raise _missing(value.name)
    return go_text(value, nil="<no value>")


def _strict(fn: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(fn)  # the engine checks the arity on the wrapped signature
    def call(*args: object) -> object:
        for arg in args:
            if isinstance(arg, _Missing):
                raise _missing(arg.name)
        return fn(*args)

    return call


_LENIENT = frozenset({"or", "and", "not"})  # Go's `or .A "x"` is how sealer's templates default
_DIALECT = Dialect(
    {k: f if k in _LENIENT else _strict(f) for k, f in builtin_functions(_show).items()}, _lookup, _show
)


def render_template(text: str, env: Mapping[str, str], *, path: str) -> str:
    """Render one `.tmpl` file's text with `env` (Go text/template, `builder._gotemplate`);
    RootfsTemplateError names file, line and variable."""
    try:
        return parse(text, _DIALECT.functions, source=path).execute(env, _DIALECT)
    except TemplateError as err:
        raise RootfsTemplateError(
            err.detail, path=path, line=err.line or 1, variable=err.variable, hint=err.hint
        ) from None


# --- secrets: on stdin, never in a command line ------------------------------------------------


def secret_stdin(secrets: Mapping[str, str]) -> tuple[str, bytes]:
    """(shell prefix, stdin bytes) that export `secrets` on a host without putting them in any
    command line (a host's `ps` shows argv, and env given as `export K=v;` is argv). One line
    per secret, `NAME BASE64`, read with `read` (which takes exactly one line from a pipe, so
    a step's own stdin follows intact); the value decoded exactly (trailing newlines kept)."""
    lines = "".join(
        f"{name} {base64.b64encode(value.encode()).decode()}\n" for name, value in secrets.items()
    )
    prefix = (
        f"__i=0; while [ $__i -lt {len(secrets)} ]; do IFS=' ' read -r __n __b || exit 1; "
        '__v=$(printf %s "$__b" | base64 -d && echo x) || exit 1; export "$__n=${__v%x}"; '
        "__i=$((__i + 1)); done; unset __i __n __b __v\n"
    )
    return prefix, lines.encode()
