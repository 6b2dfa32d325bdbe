"""The strict YAML node reader of a Clusterfile and of its parts' readers: `StrictNodeReader`
composes a file's documents (bounded, _bounded_yaml.py) and checks one node a call, failing with
`FILE:LINE: FIELD.PATH: message` and a hint. The readers of the parts (clusterfile_cluster.py,
clusterfile_hosts.py, clusterfile_registry.py, clusterfile_plugins.py, clusterfile_configs.py,
clusterfile_application.py) take it as the `NodeReader` protocol; clusterfile.py reads a whole
file with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import NoReturn, Protocol, TypeVar

import yaml

from builder.errors import ClusterfileError, ImageError, InvalidCluster, InvalidEnv
from builder.runtime._bounded_yaml import BoundedLoader, deep_error
from builder.runtime.env import join_env_entries, parse_env_entry

_T = TypeVar("_T")

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"


class NodeReader(Protocol):
    path: str
    keys: dict[int, yaml.Node]

    def fail(self, node: yaml.Node | None, where: str, message: str, hint: str | None = None) -> NoReturn: ...
    def check(self, node: yaml.Node, where: str, make: Callable[[], _T], hint: str | None = None) -> _T: ...
    def mapping(self, node: yaml.Node, where: str, allowed: Sequence[str]) -> dict[str, yaml.Node]: ...
    def sequence(self, node: yaml.Node, where: str, hint: str | None = None) -> list[yaml.Node]: ...
    def strings(self, node: yaml.Node, where: str) -> tuple[str, ...]: ...
    def string(self, node: yaml.Node, where: str) -> str | None: ...
    def required_string(self, node: yaml.Node, where: str) -> str: ...
    def boolean(self, node: yaml.Node, where: str) -> bool: ...
    def port(self, node: yaml.Node, where: str) -> int: ...
    def seconds(self, node: yaml.Node, where: str) -> float: ...
    def env(self, node: yaml.Node, where: str) -> dict[str, str]: ...
    def is_null(self, node: yaml.Node) -> bool: ...
    def is_empty(self, node: yaml.Node) -> bool: ...


class StrictNodeReader:
    """Reads the file at `path` (only named in messages): every failure is a ClusterfileError
    at the line of the node at fault."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.keys: dict[int, yaml.Node] = {}  # id(value node) -> its key node, for whole-field errors

    def fail(self, node: yaml.Node | None, where: str, message: str, hint: str | None = None) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else 1
        prefix = f"{where}: " if where else ""
        raise ClusterfileError(f"{self.path}:{line}: {prefix}{message}", path=self.path, line=line, hint=hint)

    def nodes(
        self, text: str, *, raw: Callable[[yaml.Node], bool] = lambda _: False
    ) -> Iterator[tuple[int, yaml.Node, object]]:
        """Each document's number (from 1), node and data (None for an empty document, and
        for a node `raw` keeps unconstructed, which the caller reads from the node tree); YAML
        errors become a ClusterfileError at their line."""
        loader = BoundedLoader(text, path=self.path)
        try:
            number = 0
            while loader.check_node():
                node = loader.get_node()
                number += 1
                if node is not None:
                    yield number, node, None if raw(node) else loader.construct_document(node)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line = mark.line + 1 if mark is not None else 1
            if err.problem == "exceeded maximum nesting depth":  # libyaml's own cap (1000), past ours
                raise deep_error(self.path, line) from None
            raise ClusterfileError(
                f"{self.path}:{line}: invalid YAML: {err.problem or err.context}", path=self.path, line=line
            ) from None
        except yaml.YAMLError as err:
            raise ClusterfileError(f"{self.path}: invalid YAML: {err}", path=self.path) from None
        finally:
            loader.dispose()

    # -- primitives --

    def check(self, node: yaml.Node, where: str, make: Callable[[], _T], hint: str | None = None) -> _T:
        """Run `make()`; a model error becomes a ClusterfileError at `node`."""
        try:
            return make()
        except (InvalidCluster, InvalidEnv, ImageError) as err:
            self.fail(node, where, err.message, err.hint or hint)

    def mapping(self, node: yaml.Node, where: str, allowed: Sequence[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, where or "document", "expected a mapping")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            field_where = f"{where}.{key}" if where else str(key)
            if not isinstance(key, str) or key not in allowed:
                self.fail(
                    key_node,
                    field_where,
                    "unknown field",
                    hint=f"fields here: {', '.join(allowed)}",
                )
            if key in out:
                self.fail(key_node, field_where, "is given twice")
            out[key] = value_node
            self.keys[id(value_node)] = key_node
        return out

    def sequence(self, node: yaml.Node, where: str, hint: str | None = None) -> list[yaml.Node]:
        if self.is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, where, "expected a list", hint)
        return list(node.value)

    def strings(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        return tuple(
            self.required_string(item, f"{where}[{i}]") for i, item in enumerate(self.sequence(node, where))
        )

    def string(self, node: yaml.Node, where: str) -> str | None:
        if self.is_null(node):
            return None
        return self.required_string(node, where)

    def required_string(self, node: yaml.Node, where: str) -> str:
        # The raw scalar text: `passwd: 123456` or `port: 22` mean those characters.
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            self.fail(node, where, "expected a string")
        return str(node.value)

    def boolean(self, node: yaml.Node, where: str) -> bool:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
            self.fail(node, where, "expected true or false")
        return str(node.value).lower() in ("true", "yes", "on", "y")

    def port(self, node: yaml.Node, where: str) -> int:
        text = self.required_string(node, where)
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            self.fail(node, where, f"{text!r} is not a port number (1-65535)")
        return int(text)

    def seconds(self, node: yaml.Node, where: str) -> float:
        text = self.required_string(node, where)
        try:
            value = float(text)
        except ValueError:
            self.fail(node, where, f"{text!r} is not a number of seconds")
        if not value > 0:
            self.fail(node, where, "must be more than 0 seconds")
        return int(value) if value.is_integer() else value

    def env(self, node: yaml.Node, where: str) -> dict[str, str]:
        pairs = []
        for i, item in enumerate(
            self.sequence(node, where, hint="env is a list of KEY=VALUE strings, as in sealer")
        ):
            entry = self.required_string(item, f"{where}[{i}]")
            pairs.append(self.check(item, f"{where}[{i}]", partial(parse_env_entry, entry)))
        return join_env_entries(pairs)

    def is_null(self, node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == _NULL

    def is_empty(self, node: yaml.Node) -> bool:
        return self.is_null(node) or (
            isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.value
        )


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
