"""What the CLI prints besides progress: errors, warnings, tables, JSON, sizes.

Results (digests, tables, JSON) go to stdout, so pipelines can read it; errors, warnings and
progress (`progress.py`) go to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click


def print_error(message: str, *, hint: str | None = None, excerpt: str | None = None) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    if excerpt:
        click.echo(excerpt.rstrip("\n"), err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)


def print_warning(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    fmt = "   ".join(f"{{:<{w}}}" for w in widths)
    click.echo(fmt.format(*headers).rstrip())
    for row in rows:
        click.echo(fmt.format(*row).rstrip())


def human_size(n: int | float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n} B"
