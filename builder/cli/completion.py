"""`sealer completion bash|zsh|fish`: the shell's completion script, from click's own shell
completion (the `_SEALER_COMPLETE` protocol), so it completes the lazily loaded commands
(`main._Group` lists them and loads only the ones that match), their options and choices.

    eval "$(sealer completion bash)"                      # ~/.bashrc
    sealer completion fish > ~/.config/fish/completions/sealer.fish
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
PROG_NAME = "sealer"  # what `main` passes click, whatever the executable is called
COMPLETE_VAR = "_SEALER_COMPLETE"  # click's default for that prog_name: what `main` answers


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script of SHELL (bash, zsh or fish).

    \b
    bash: eval "$(sealer completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(sealer completion zsh)"    (in ~/.zshrc)
    fish: sealer completion fish > ~/.config/fish/completions/sealer.fish
    """
    cls = get_completion_class(shell)
    assert cls is not None  # every name in SHELLS is one of click's
    click.echo(cls(ctx.find_root().command, {}, PROG_NAME, COMPLETE_VAR).source())
