"""Shared argument handling of the commands: opening the store, K=V options."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from builder.errors import UsageError
from builder.store.layout import Store

if TYPE_CHECKING:
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


def registry_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--tls-verify, --plain-http, --ca-cert and --authfile, shared by every registry command."""
    for decorator in reversed(
        [
            click.option(
                "--tls-verify",
                type=click.BOOL,
                default=True,
                show_default=True,
                metavar="BOOL",
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
                help="Credentials file (default $DOCKER_CONFIG/config.json or ~/.docker/config.json).",
            ),
        ]
    ):
        func = decorator(func)
    return func


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
) -> RegistryOptions:
    """The client's options from the shared flags; `timeout_s` None: SEALER_REGISTRY_TIMEOUT,
    else the client's default (so that builds pulling FROM images honour the variable too)."""
    import os

    from builder.registry.client import RegistryOptions  # requests/oras: slow to import

    if timeout_s is None and os.environ.get(TIMEOUT_ENV):
        timeout_s = parse_timeout(os.environ[TIMEOUT_ENV], TIMEOUT_ENV)
    options = RegistryOptions(
        tls_verify=tls_verify, plain_http=True if plain_http else None, ca_cert=ca_cert, auth_file=authfile
    )
    return options if timeout_s is None else replace(options, timeout_s=timeout_s)
