"""What the readers of a Clusterfile's parts (clusterfile_registry.py, clusterfile_plugins.py,
clusterfile_configs.py) need of clusterfile.py's strict node reader: each method checks one node
and fails with `FILE:LINE: FIELD.PATH: message`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn, Protocol, TypeVar

import yaml

_T = TypeVar("_T")


class NodeReader(Protocol):
    def fail(self, node: yaml.Node | None, where: str, message: str, hint: str | None = None) -> NoReturn: ...
    def check(self, node: yaml.Node, where: str, make: Callable[[], _T], hint: str | None = None) -> _T: ...
    def mapping(self, node: yaml.Node, where: str, allowed: Sequence[str]) -> dict[str, yaml.Node]: ...
    def strings(self, node: yaml.Node, where: str) -> tuple[str, ...]: ...
    def string(self, node: yaml.Node, where: str) -> str | None: ...
    def required_string(self, node: yaml.Node, where: str) -> str: ...
    def boolean(self, node: yaml.Node, where: str) -> bool: ...
    def port(self, node: yaml.Node, where: str) -> int: ...
    def env(self, node: yaml.Node, where: str) -> dict[str, str]: ...


def parsed(reader: NodeReader, node: yaml.Node, where: str, parse: Callable[[str], _T], *, hint: str) -> _T:
    """`parse` of the string at `node`; its ValueError fails at the node with `hint`."""
    text = reader.required_string(node, where)
    try:
        return parse(text)
    except ValueError as err:
        reader.fail(node, where, str(err), hint=hint)
