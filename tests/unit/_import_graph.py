"""The import graph of the source tree, for test_import_rules.py: every import statement
resolved to an absolute module, where it stands (module level, function, TYPE_CHECKING), and the
cycles of the graph.

Relative imports are resolved against the importing module's package; `from P import X` is an
import of the module `P.X` when that file exists, else of the name `X` of `P`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

TOPS = ("kubefile_grammar", "builder")


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module, absolute
    name: str | None  # the name taken from `target` when it is not itself a module
    line: int
    where: str  # "module", "function" or "type-checking"

    @property
    def edge(self) -> str:
        return f"{self.source} -> {self.target}"

    def __str__(self) -> str:
        what = f"{self.target}.{self.name}" if self.name else self.target
        at = "" if self.where == "module" else f" ({self.where})"
        return f"{self.source}:{self.line} imports {what}{at}"


def discover(root: Path, tops: Iterable[str] = TOPS) -> dict[str, Path]:
    """Module name -> file, for every .py file under the top-level packages."""
    out: dict[str, Path] = {}
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(nodes: Iterable[ast.AST], where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, where
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(ast.iter_child_nodes(node), "function")
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, "type-checking" if where == "module" else where)
            yield from _walk(node.orelse, where)
        else:
            yield from _walk(ast.iter_child_nodes(node), where)


def imports_of(module: str, path: Path, modules: dict[str, Path], tops: Iterable[str] = TOPS) -> list[Import]:
    """The imports of `module` into the top-level packages, resolved to absolute module names."""
    tops = tuple(tops)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node, where in _walk(ast.parse(path.read_text(), str(path)).body, "module"):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, alias.name, None, node.lineno, where))
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in modules:
                found.append(Import(module, sub, None, node.lineno, where))
            else:
                name = None if alias.name == "*" else alias.name
                found.append(Import(module, base, name, node.lineno, where))
    return [i for i in found if i.target.split(".")[0] in tops]


def all_imports(root: Path, tops: Iterable[str] = TOPS) -> list[Import]:
    modules = discover(root, tops)
    return [i for module, path in modules.items() for i in imports_of(module, path, modules, tops)]


def cycles(imports: Iterable[Import]) -> list[list[str]]:
    """Each strongly connected set of modules (Tarjan), as one cycle through its first module."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, comp) for comp in sorted(components)]


def _cycle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle from the component's first module back to it (breadth first)."""
    start, members = component[0], set(component)
    parents: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if w not in parents:
                parents[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected set
