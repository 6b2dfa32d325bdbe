"""Argument handling the command groups share: opening the store, K=V options, registry
connection options and credentials, prompts."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from builder.errors import UsageError
from builder.store.layout import Store

if TYPE_CHECKING:
    from builder.registry.auth import Credentials
    from builder.registry.client import RegistryOptions


def open_store(ctx: click.Context) -> Store:
    root = ctx.find_root().obj.get("root") if ctx.find_root().obj else None
    return Store.open(root)


def parse_key_values(values: Iterable[str], flag: str) -> dict[str, str]:
    """`--build-arg K=V` style options into a dict; `K` alone takes the caller's environment."""
    import os

    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in os.environ:
                raise UsageError(f"{flag} {item!r}: expected KEY=VALUE (or KEY set in the environment)")
            value = os.environ[key]
        out[key] = value
    return out


class RegistryCommand(click.Command):
    """A command with the registry options: a bare `--tls-verify` means `--tls-verify=true`.

    `--tls-verify=false` needs an option that takes a value, and such an option took the next
    argument as its value (`sealer pull --tls-verify NAME` read NAME as the boolean); click's
    optional values (`flag_value`) still take a next argument that does not start with `-`.
    So the bare flag is spelled out before parsing, as podman's `--tls-verify` behaves (a bool
    flag: only `--tls-verify=false` turns it off, a separate `false` is an argument)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        fixed: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                fixed.extend(args[i:])
                break
            fixed.append("--tls-verify=true" if arg == "--tls-verify" else arg)
        return super().parse_args(ctx, fixed)


def _connection_options() -> list[Callable[[Callable[..., Any]], Callable[..., Any]]]:
    return [
        click.option(
            "--tls-verify",
            type=click.BOOL,
            default=True,
            show_default=True,
            metavar="[=BOOL]",
            help="Verify the registry's TLS certificate (--tls-verify=false to skip).",
        ),
        click.option("--plain-http", is_flag=True, help="Talk plain HTTP to the registry."),
        click.option(
            "--ca-cert",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="CA certificate that signed the registry's certificate.",
        ),
        click.option(
            "--authfile",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="REGISTRY_AUTH_FILE",
            help="Credentials file (default $DOCKER_CONFIG/config.json or ~/.docker/config.json; "
            "env REGISTRY_AUTH_FILE).",
        ),
    ]


def _apply(func: Callable[..., Any], decorators: list[Callable[..., Any]]) -> Callable[..., Any]:
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def login_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--tls-verify, --plain-http, --ca-cert and --authfile (for `login`, which has -u/-p)."""
    return _apply(func, _connection_options())


def registry_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--tls-verify, --plain-http, --ca-cert, --authfile and --creds, shared by the commands
    that read from or write to registries (push, pull, build). Use with `cls=RegistryCommand`."""
    creds = click.option(
        "--creds",
        metavar="USER[:PASSWORD]",
        help="Credentials for the registry, instead of the auth file (without :PASSWORD it is "
        "asked on the terminal).",
    )
    return _apply(func, [*_connection_options(), creds])


def is_terminal() -> bool:
    """Whether a person can be asked: standard input is a terminal (as docker login decides)."""
    return sys.stdin.isatty()


def ask(prompt: str, *, secret: bool) -> str:
    """Ask on the terminal (prompt on stderr, so stdout stays the command's output); a secret
    is read without echo, through getpass."""
    answer: str = click.prompt(prompt, hide_input=secret, err=True, default="", show_default=False)
    return answer


def parse_creds(text: str) -> Credentials:
    """`--creds USER[:PASSWORD]`, as skopeo and buildah take it; the password is asked on a
    terminal when left out."""
    from builder.registry.auth import Credentials

    username, sep, password = text.partition(":")
    if not username:
        raise UsageError("--creds: the user name is empty", hint="give --creds USER[:PASSWORD]")
    if not sep:
        if not is_terminal():
            raise UsageError(
                f"--creds {username}: no password, and no terminal to ask for it",
                hint="give --creds USER:PASSWORD, or log in first: sealer login HOST -u USER --password-stdin",
            )
        password = ask(f"Password for {username}", secret=True)
    return Credentials(username, password)


TIMEOUT_ENV = "SEALER_REGISTRY_TIMEOUT"
MAX_TIMEOUT_S = 86400


def parse_timeout(text: str, where: str) -> float:
    """Seconds > 0 for --timeout / SEALER_REGISTRY_TIMEOUT."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_TIMEOUT_S:
        raise UsageError(f"{where}={text!r}: expected a number of seconds in (0, {MAX_TIMEOUT_S}]")
    return value


def make_registry_options(
    tls_verify: bool,
    plain_http: bool,
    ca_cert: Path | None,
    authfile: Path | None,
    timeout_s: float | None = None,
    *,
    creds: str | None = None,
    creating_authfile: bool = False,
) -> RegistryOptions:
    """The client's options from the shared flags; `timeout_s` None: SEALER_REGISTRY_TIMEOUT,
    else the client's default (so that builds pulling FROM images honour the variable too).

    An `authfile` named by --authfile or REGISTRY_AUTH_FILE must exist unless the command
    creates it (login), as podman checks it: a mistyped path silently meant no credentials."""
    import os

    from builder.registry.client import RegistryOptions  # requests/oras: slow to import

    if authfile is not None and not creating_authfile and not authfile.exists():
        raise UsageError(
            f"the auth file {authfile} (--authfile or REGISTRY_AUTH_FILE) does not exist",
            hint="fix the path, or create it with: sealer login HOST --authfile FILE",
        )
    if timeout_s is None and os.environ.get(TIMEOUT_ENV):
        timeout_s = parse_timeout(os.environ[TIMEOUT_ENV], TIMEOUT_ENV)
    options = RegistryOptions(
        tls_verify=tls_verify,
        plain_http=True if plain_http else None,
        ca_cert=ca_cert,
        auth_file=authfile,
        credentials=parse_creds(creds) if creds is not None else None,
    )
    return options if timeout_s is None else replace(options, timeout_s=timeout_s)
