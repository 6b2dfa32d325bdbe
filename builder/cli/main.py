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
    **{name: ("builder.cli.run", name) for name in ("run", "gen")},
    **{name: ("builder.cli.membership", name) for name in ("apply", "join", "delete")},
    **{name: ("builder.cli.maintenance", name) for name in ("upgrade", "cert")},
    "cluster": ("builder.cli.cluster", "cluster"),
    "exec": ("builder.cli.remote_exec", "exec_"),
    "completion": ("builder.cli.completion", "completion"),
}

# The first sentence of each command's help, which `sealer --help` lists without importing any
# command module (it loaded them all, the runtime, lark and asyncssh included: ~55 ms);
# tests/unit/cli/test_cli_start_up.py holds the listing equal to click's own from the commands.
SUMMARIES: dict[str, str] = {
    "apply": "Make the cluster what the Clusterfile says: new hosts join, missing hosts leave.",
    "build": "Build a ClusterImage from a Kubefile and a context directory.",
    "cert": "The API server certificates of the saved cluster, one master at a time.",
    "cluster": "Saved clusters (~/.sealer/<cluster>/).",
    "completion": "Print the completion script of SHELL (bash, zsh or fish).",
    "delete": "Remove hosts from the cluster, or the whole cluster with --all.",
    "exec": "Run COMMAND on the cluster's hosts in parallel; each output line is prefixed by its host.",
    "fsck": "Check the store: every name resolves, every blob is there and matches its digest.",
    "gen": "Print the Clusterfile `sealer run` would use for these flags (secrets included).",
    "images": "List the images in the local store.",
    "inspect": "Show an image's manifest, config, sealer extension and layers as JSON (read-only).",
    "join": "Add hosts to the saved cluster (SSH settings default to the cluster's).",
    "load": "Load images from an OCI archive (sealer save, skopeo oci-archive:), a docker archive "
    "(docker save, skopeo docker-archive:), an OCI layout directory, or stdin.",
    "login": "Check credentials against REGISTRY and keep them as docker does.",
    "logout": "Forget the credentials kept for REGISTRY (in config.json and its credential helper).",
    "prune": "Remove blobs, unpacked layers and temp files that no image uses.",
    "pull": "Pull NAME from its registry into the local store.",
    "push": "Push local image NAME to its registry, or to DEST.",
    "rmi": "Remove images: a NAME loses that name; an IMAGE ID (12+ hex digits) or digest loses every "
    "name of that image (with -f when there are several, as docker).",
    "run": "Run IMAGE as a cluster on the hosts (this machine when no --masters are given).",
    "save": "Write images to an archive file, a layout directory or stdout (as docker save).",
    "tag": "Give an image more names: sealer tag SOURCE|IMAGE_ID TARGET...",
    "upgrade": "Upgrade the saved cluster to IMAGE, a newer image of the same runtime.",
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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with each command's short help made from the table's summary by
        click's own rule (`get_short_help_str`), so that listing imports no command module."""
        listed = [
            (name, self.commands.get(name) or click.Command(name, help=SUMMARIES[name]))
            for name in self.list_commands(ctx)
        ]
        rows = [(name, command) for name, command in listed if not command.hidden]
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SealerError as err:
            _show_traceback(ctx)
            print_error(err.message, hint=err.hint)
            ctx.exit(err.exit_code)
        except click.UsageError as err:
            # A subcommand's bad flag or argument: one line as every other error, not click's
            # usage block (exit 2 all the same: docs/registry.md's exit codes).
            where = err.ctx.command_path if err.ctx is not None else ctx.command_path
            print_error(err.format_message(), hint=f"see '{where} --help'")
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
    # Start-up builds ~100k objects that live as long as the process (modules, classes,
    # functions) and next to no garbage; at CPython's default threshold (a collection every 700
    # allocations) the collector traversed them ~60 times while `sealer push` imported its
    # modules (3-7 ms, issue 16). What is loaded by now is moved out of its sight, and it runs
    # every 20000 allocations: still often enough for the cyclic garbage of long runs.
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
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
