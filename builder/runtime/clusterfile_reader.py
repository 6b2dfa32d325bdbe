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


_DOCUMENT_FIELDS = ("apiVersion", "kind", "metadata", "spec")


def document_head(
    reader: NodeReader,
    node: yaml.Node,
    where: str,
    *,
    kind: str,
    api_version: str,
    name_hint: str | None = None,
) -> tuple[str, dict[str, yaml.Node]]:
    """The head of one of sealer's other documents (Plugin, Config, Application): its fields
    checked, `api_version` required, and (metadata.name or "", the top fields by name).
    `name_hint`: metadata.name is required, the hint saying why."""
    top = reader.mapping(node, where, _DOCUMENT_FIELDS)
    version = reader.required_string(top["apiVersion"], f"{where}.apiVersion")
    if version != api_version:
        reader.fail(
            top["apiVersion"],
            f"{where}.apiVersion",
            f"{version} is not {'an' if kind[0] in 'AEIOU' else 'a'} {kind} version this implementation reads",
            hint=f"write apiVersion: {api_version}",
        )
    if "metadata" not in top:
        if name_hint is not None:
            reader.fail(node, f"{where}.metadata", "missing", hint=name_hint)
        return "", top
    metadata = reader.mapping(top["metadata"], f"{where}.metadata", ("name", "labels", "annotations"))
    if "name" not in metadata:
        if name_hint is not None:
            reader.fail(top["metadata"], f"{where}.metadata.name", "missing", hint=name_hint)
        return "", top
    return reader.required_string(metadata["name"], f"{where}.metadata.name"), top
