"""The `sealer` command: the group, global options and the one error-to-exit mapping.

Exit codes: 0 success; 1 a failure of the work asked for (build, store, registry, cluster);
2 bad usage (flags, arguments, references); 128+N stopped by signal N (130 ^C, 143 SIGTERM,
129 SIGHUP): SIGTERM and SIGHUP unwind like ^C, so a cancelled CI job or a closed terminal
still stops a RUN's processes, undoes its mount and removes its temp files. Every failure prints one line
`error: ...` on stderr, then a hint and, for Kubefile errors, the source excerpt; never a
traceback unless --debug.
"""

from __future__ import annotations

import gc
import importlib
import logging
import signal
import sys
import traceback
import warnings
from pathlib import Path

import click

from builder.cli.output import print_error
from builder.errors import SealerError

# Commands by name -> (module, attribute), imported only when used: `sealer push` does not
# load the Kubefile parser, `sealer build` does not load requests/oras (start-up is part of
# every command's time).
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("builder.cli.build", "build"),
    **{
        name: ("builder.cli.images", name)
        for name in ("images", "inspect", "tag", "rmi", "prune", "fsck", "save", "load")
    },
    **{name: ("builder.cli.registry", name) for name in ("login", "logout", "push", "pull")},
    **{
        name: ("builder.cli.cluster", name)
        for name in ("run", "gen", "apply", "join", "delete", "upgrade", "cert", "cluster")
    },
    "exec": ("builder.cli.remote_exec", "exec_"),
    "completion": ("builder.cli.completion", "completion"),
}


class _Group(click.Group):
    """Maps our error roots to one line and an exit code; click handles its own usage errors."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        command = getattr(importlib.import_module(spec[0]), spec[1])
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SealerError as err:
            _show_traceback(ctx)
            print_error(err.message, hint=err.hint)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt as err:
            signum = err.signum if isinstance(err, Terminated) else signal.SIGINT
            print_error(
                "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            )
            ctx.exit(128 + signum)
        except Exception as err:
            # KubefileError, looked up only if the grammar was loaded: importing it here would
            # load lark for every command, and an error of an unloaded module cannot occur.
            grammar = sys.modules.get("kubefile_grammar.errors")
            if grammar is None or not isinstance(err, grammar.KubefileError):
                raise
            _show_traceback(ctx)
            print_error(str(err), hint=err.hint, excerpt=err.context)
            ctx.exit(err.exit_code)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that every `finally` runs as for ^C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    # Once: a second signal must not cut the clean-up of the first short (SIGKILL still works).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


# Third-party warnings a user can do nothing about, as (category, module, message) patterns:
# hidden unless --debug. Narrow on purpose, so that a new warning still shows (and fails
# tests/component/cli/test_cli_warnings.py).
KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # asyncssh names DSA key types in its annotations at import (asyncssh/crypto/dsa.py and
    # misc.py); cryptography >= 43 deprecates DSA and warns five times. CryptographyDeprecation-
    # Warning subclasses UserWarning; naming it would import cryptography for every command.
    (UserWarning, r"asyncssh(\..*)?$", r"DSA is deprecated"),
)


def filter_known_warnings(*, show: bool) -> None:
    """Hide (or, with `show`, show) KNOWN_WARNINGS. Called first thing in `main()`, before
    anything imports asyncssh (the cluster commands import it lazily), and again by the group
    callback once --debug is known: commands import asyncssh only after it runs. The later
    call's filter goes first, so it wins."""
    for category, module, message in KNOWN_WARNINGS:
        if show:
            warnings.filterwarnings("default", message=message, category=category, module=module)
        else:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)


def _show_traceback(ctx: click.Context) -> None:
    if ctx.obj and ctx.obj.get("debug"):
        traceback.print_exc()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SEALER_ROOT",
    help="Store directory (default /var/lib/sealer as root, else ~/.local/share/sealer; env SEALER_ROOT).",
)
@click.option("-d", "--debug", is_flag=True, help="Log debug details and show tracebacks.")
@click.version_option(package_name="sealer-py", prog_name="sealer")
@click.pass_context
def cli(ctx: click.Context, root: Path | None, debug: bool) -> None:
    """Build, store and move ClusterImages: OCI images that carry a whole Kubernetes."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root
    ctx.obj["debug"] = debug
    filter_known_warnings(show=debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    filter_known_warnings(show=False)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        cli.main(prog_name="sealer", standalone_mode=True)
    except SealerError as err:  # raised outside a subcommand's invoke (rare)
        print_error(err.message, hint=err.hint)
        sys.exit(err.exit_code)
    finally:
        # The process ends next. The interpreter's last collections would traverse every object
        # of the modules the command loaded (~25 ms of each run, issue 16); frozen, they are
        # skipped. atexit handlers and reference-count finalizers run as ever.
        gc.freeze()
