"""What the `sealer` command imports before it does anything (start-up is part of every
command's time: issue 16, push against curl). `sealer --help` lists every command from the
table in cli/main.py, as click would from the commands themselves, without importing one."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from builder.cli.main import COMMANDS, SUMMARIES, cli

# Modules no listing, help or push needs: the SSH stack, the runtime, the Kubefile grammar,
# build, YAML, rich, the Docker engine client.
HEAVY = (
    "asyncssh",
    "cryptography",
    "bcrypt",
    "builder.runtime",
    "builder.build",
    "kubefile_grammar",
    "lark",
    "yaml",
    "rich",
    "docker",
)
# ...and, for help and version, the HTTP stack (push imports it in its body).
HTTP = ("requests", "urllib3", "oras")

_RUN = """
import sys
from builder.cli.main import main
sys.argv = ["sealer", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("MODULES", " ".join(sorted(sys.modules)))
"""


def _loaded(args: list[str]) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _RUN, *args], capture_output=True, text=True, check=True, timeout=60
    )
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("MODULES "), out.stdout + out.stderr
    return set(line.split()[1:])


def _matching(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


@pytest.mark.parametrize("args", [["--help"], ["push", "--help"], ["pull", "--help"], ["--version"]])
def test_help_and_version_load_no_command_dependencies(args: list[str]) -> None:
    loaded = _loaded(args)
    assert _matching(loaded, (*HEAVY, *HTTP)) == []
    if args in (["--help"], ["--version"]):
        assert _matching(loaded, ("builder.cli",)) == [
            "builder.cli",
            "builder.cli.main",
            "builder.cli.output",
        ]


def test_push_path_loads_nothing_heavy() -> None:
    probe = (
        "import sys, builder.cli.main, builder.cli.registry, builder.registry.client\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split()[1:])
    # jsonschema is a stand-in until used (builder/registry/__init__.py); its stack is not loaded.
    assert _matching(loaded, (*HEAVY, "jsonschema.validators", "referencing", "attrs", "ctypes")) == []


def _listing(group_format: object, width: int) -> str:
    ctx = click.Context(cli, info_name="sealer")
    formatter = click.HelpFormatter(width=width)
    group_format(ctx, formatter)  # type: ignore[operator]
    return formatter.getvalue()


@pytest.mark.parametrize("width", [40, 80, 120, 400])
def test_help_lists_commands_as_click_does_from_the_commands(width: int) -> None:
    """The table's summaries give the same listing as click's own `format_commands`, which
    loads every command (at 400 columns nothing is shortened: the full first sentences)."""
    ours = _listing(cli.format_commands, width)
    clicks = _listing(lambda ctx, f: click.Group.format_commands(cli, ctx, f), width)
    assert sorted(SUMMARIES) == sorted(COMMANDS)
    assert ours == clicks
    assert len(ours.splitlines()) == len(COMMANDS) + 1
