"""Registry commands: login, logout, push, pull."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from builder._fs import atomic_write
from builder.cli._options import (
    MAX_TIMEOUT_S,
    TIMEOUT_ENV,
    RegistryCommand,
    ask,
    is_terminal,
    login_options,
    make_registry_options,
    open_store,
    registry_options,
)
from builder.cli.output import print_json
from builder.cli.progress import transfer_progress
from builder.errors import UsageError
from builder.image.descriptor import Platform


def timeout_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--timeout SECONDS (or SEALER_REGISTRY_TIMEOUT): the operation's no-progress budget."""
    return click.option(
        "--timeout",
        "timeout_s",
        type=click.FloatRange(min=0, min_open=True, max=MAX_TIMEOUT_S),
        envvar=TIMEOUT_ENV,
        metavar="SECONDS",
        help="Give up after this long without progress from the registry, retries included; "
        f"each request waits a third of it (default 30; env {TIMEOUT_ENV}).",
    )(func)


@click.command(cls=RegistryCommand)
@click.argument("registry")
@click.option("-u", "--username", help="User name (asked on a terminal when left out).")
@click.option("-p", "--password", help="Password (visible in the process list: prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@login_options
@timeout_option
def login(
    registry: str,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    tls_verify: bool,
    plain_http: bool,
    ca_cert: Path | None,
    authfile: Path | None,
    timeout_s: float | None,
) -> None:
    """Check credentials against REGISTRY and keep them as docker does.

    On a terminal the user name and password are asked for (the password without echo) when
    not given. They are kept in the credential helper that config.json names (credsStore,
    credHelpers), else in config.json itself; docker, skopeo, oras and podman read the same
    file, so one login serves them all.

    \b
    Examples:
      sealer login registry.example.com
      echo "$PASSWORD" | sealer login registry.example.com -u ci-bot --password-stdin
    """
    if password_stdin:
        if password is not None:
            raise UsageError("give the password with -p or --password-stdin, not both")
        if not username:
            raise UsageError(
                "--password-stdin needs the user name", hint="add -u USER (standard input holds the password)"
            )
        password = sys.stdin.readline().rstrip("\r\n")
    elif is_terminal():
        if not username:
            username = ask("Username", secret=False).strip()
        if password is None:
            password = ask("Password", secret=True)
    if not username:
        raise UsageError("no user name given", hint="add -u USER")
    if not password:
        raise UsageError("no password given", hint="use --password-stdin (or -p PASSWORD, or a terminal)")
    options = make_registry_options(
        tls_verify, plain_http, ca_cert, authfile, timeout_s, creating_authfile=True
    )
    from builder.registry.client import RegistryClient  # requests/oras: slow to import

    RegistryClient(options).login(registry, username, password)
    click.echo(f"Login succeeded: {registry}")


@click.command()
@click.argument("registry")
@click.option(
    "--authfile",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="REGISTRY_AUTH_FILE",
    help="Credentials file (default $DOCKER_CONFIG/config.json or ~/.docker/config.json; "
    "env REGISTRY_AUTH_FILE).",
)
def logout(registry: str, authfile: Path | None) -> None:
    """Forget the credentials kept for REGISTRY (in config.json and its credential helper).

    Not being logged in is a note, not an error, as with docker logout."""
    from builder.registry.client import RegistryClient, RegistryOptions

    if not RegistryClient(RegistryOptions(auth_file=authfile)).logout(registry):
        click.echo(f"Not logged in to {registry}")
        return
    click.echo(f"Removed login credentials for {registry}")


@click.command(cls=RegistryCommand)
@click.argument("name")
@click.argument("dest", required=False)
@click.option(
    "--digestfile", type=click.Path(dir_okay=False, path_type=Path), help="Write the pushed digest here."
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Print only the digest.")
@registry_options
@timeout_option
@click.pass_context
def push(
    ctx: click.Context,
    name: str,
    dest: str | None,
    digestfile: Path | None,
    fmt: str,
    quiet: bool,
    tls_verify: bool,
    plain_http: bool,
    ca_cert: Path | None,
    authfile: Path | None,
    creds: str | None,
    timeout_s: float | None,
) -> None:
    """Push local image NAME to its registry, or to DEST.

    \b
    Examples:
      sealer push 127.0.0.1:5000/demo/app:v1
      sealer push demo/app:v1 registry.example.com/team/app:v1 --digestfile app.digest
    """
    from builder.registry.client import RegistryClient

    # Before the progress display: --creds USER may ask for the password on the terminal.
    options = make_registry_options(tls_verify, plain_http, ca_cert, authfile, timeout_s, creds=creds)
    store = open_store(ctx)
    progress = transfer_progress(quiet=quiet or fmt == "json")
    try:
        client = RegistryClient(options, progress)
        desc = client.push(store, name, dest)
    finally:
        progress.close()
    if digestfile is not None:
        atomic_write(digestfile, f"{desc.digest}\n".encode())
    if fmt == "json":
        print_json(
            {
                "name": name,
                "destination": dest or name,
                "digest": str(desc.digest),
                "mediaType": desc.media_type,
                "size": desc.size,
            }
        )
    else:
        click.echo(str(desc.digest))


@click.command(cls=RegistryCommand)
@click.argument("name")
@click.option("--platform", help="Platform to pull from a multi-platform image (default: this host's).")
@click.option("--all-platforms", is_flag=True, help="Pull every platform of a multi-platform image.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Print only the digest.")
@registry_options
@timeout_option
@click.pass_context
def pull(
    ctx: click.Context,
    name: str,
    platform: str | None,
    all_platforms: bool,
    fmt: str,
    quiet: bool,
    tls_verify: bool,
    plain_http: bool,
    ca_cert: Path | None,
    authfile: Path | None,
    creds: str | None,
    timeout_s: float | None,
) -> None:
    """Pull NAME from its registry into the local store."""
    from builder.registry.client import RegistryClient

    if platform and all_platforms:
        raise UsageError("--platform and --all-platforms exclude each other")
    options = make_registry_options(tls_verify, plain_http, ca_cert, authfile, timeout_s, creds=creds)
    store = open_store(ctx)
    progress = transfer_progress(quiet=quiet or fmt == "json")
    try:
        client = RegistryClient(options, progress)
        desc = client.pull(
            store, name, platform=Platform.parse(platform) if platform else None, all_platforms=all_platforms
        )
    finally:
        progress.close()
    if fmt == "json":
        print_json(
            {"name": name, "digest": str(desc.digest), "mediaType": desc.media_type, "size": desc.size}
        )
    else:
        click.echo(str(desc.digest))


COMMANDS = [login, logout, push, pull]
