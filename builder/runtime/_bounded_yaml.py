"""A YAML SafeLoader for hostile Clusterfiles: nesting depth and alias expansion are bounded
while the node tree is composed, before anything walks it recursively.

PyYAML's composer recurses once per nesting level (a document 50,000 levels deep raised
RecursionError), and aliases let a few hundred bytes stand for billions of nodes ("billion
laughs") or for themselves (`&a [*a]`), which the runtime plugins' deep merges and the state's
JSON would then walk. Here every composed node records how many nodes and levels it stands for
with its aliases expanded; a node over `MAX_DEPTH` levels, over `MAX_NODES` nodes or an alias
to a node still being composed is a ClusterfileError naming the file and line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from builder.errors import ClusterfileError

MAX_DEPTH = 64  # a Clusterfile needs ~6 levels, a kubeadm or k0s document ~10
# With aliases expanded: one node per byte of the Clusterfile size cap, which no file without
# aliases reaches (`[a,a,...]` is two bytes a node).
MAX_NODES = 4 << 20

_LEAF = (1, 1)
_HINT = "a Clusterfile needs a few levels and few aliases; this one looks generated or hostile"


def _line(event: yaml.Event | None) -> int:
    return event.start_mark.line + 1 if event is not None and event.start_mark is not None else 1


def deep_error(path: str, line: int, how: str = "") -> ClusterfileError:
    return ClusterfileError(
        f"{path}:{line}: nested more than {MAX_DEPTH} levels deep{how}", path=path, line=line, hint=_HINT
    )


if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
elif yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _SafeLoader(CParser, Composer, SafeConstructor, Resolver):
        """SafeLoader with libyaml's scanner and parser (events) under PyYAML's composer, which
        is the one that can be bounded: a 4 MiB Clusterfile composes in ~4 s instead of ~50."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

        # CParser composes in C, without bounds: PyYAML's Python composer instead.
        check_node = Composer.check_node
        get_node = Composer.get_node
        get_single_node = Composer.get_single_node

else:  # PyYAML built without libyaml
    _SafeLoader = yaml.SafeLoader


class BoundedLoader(_SafeLoader):
    """A SafeLoader on `text` whose `get_node`/`get_data` refuse deep, self-referencing or
    alias-bomb documents; `path` names the file in the error."""

    def __init__(self, text: str, *, path: str) -> None:
        super().__init__(text)
        self._path = path
        self._depth = 0
        # id(node) -> (nodes, levels) with aliases expanded; per document, so a freed node's
        # id cannot stand for a later one.
        self._shape: dict[int, tuple[int, int]] = {}

    def _fail(self, event: yaml.Event | None, message: str) -> ClusterfileError:
        line = _line(event)
        return ClusterfileError(f"{self._path}:{line}: {message}", path=self._path, line=line, hint=_HINT)

    def compose_document(self) -> yaml.Node | None:
        self._shape = {}
        node: yaml.Node | None = super().compose_document()
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if node is not None and id(node) not in self._shape:
                raise self._fail(event, f"alias *{event.anchor} refers to a node that contains it")
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise deep_error(self._path, _line(event))
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:
            return None
        shape = self._shape
        if isinstance(node, yaml.ScalarNode):
            shape[id(node)] = _LEAF
            return node
        nodes, levels = 1, 0
        children = node.value if isinstance(node, yaml.SequenceNode) else [p for kv in node.value for p in kv]
        for child in children:
            child_nodes, child_levels = shape[id(child)]
            nodes += child_nodes
            if child_levels > levels:
                levels = child_levels
        levels += 1
        if levels > MAX_DEPTH:
            raise deep_error(self._path, _line(event), " once its aliases are expanded")
        if nodes > MAX_NODES:
            raise self._fail(event, f"stands for more than {MAX_NODES} nodes once its aliases are expanded")
        shape[id(node)] = (nodes, levels)
        return node
