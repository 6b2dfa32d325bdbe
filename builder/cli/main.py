"""The `sealer` command: the group, global options and the one error-to-exit mapping.

Exit codes: 0 success; 1 a failure of the work asked for (build, store, registry, cluster);
2 bad usage (flags, arguments, references); 130 interrupted. Every failure prints one line
`error: ...` on stderr, then a hint and, for Kubefile errors, the source excerpt; never a
traceback unless --debug.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from builder.cli.output import print_error
from builder.errors import SealerError
from kubefile_grammar import KubefileError


class _Group(click.Group):
    """Maps our error roots to one line and an exit code; click handles its own usage errors."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SealerError as err:
            print_error(err.message, hint=err.hint)
            ctx.exit(err.exit_code)
        except KubefileError as err:
            print_error(str(err), hint=err.hint, excerpt=err.context)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            print_error("interrupted")
            ctx.exit(130)


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
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def _register() -> None:
    from builder.cli import build, images, registry

    cli.add_command(build.build)
    for command in (*images.COMMANDS, *registry.COMMANDS):
        cli.add_command(command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="sealer", standalone_mode=True)
    except SealerError as err:  # raised outside a subcommand's invoke (rare)
        print_error(err.message, hint=err.hint)
        sys.exit(err.exit_code)
