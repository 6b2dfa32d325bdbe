"""Shared argument handling of the commands: opening the store, K=V options."""

from __future__ import annotations

from collections.abc import Iterable

import click

from builder.errors import UsageError
from builder.store.layout import Store


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
