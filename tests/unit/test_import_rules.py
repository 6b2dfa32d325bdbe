"""The package import rules of DESIGN.md section 1 (like ggcr's cmd/crane/depcheck_test.go).

grammar -> nothing of builder; image -> nothing; layers, store -> image; build -> grammar,
layers, store, image, and registry (FROM and bundled images pull through it, issue 3); registry -> store, image; runtime -> registry, store, layers, image (never
build); cli -> all. `builder.errors`, `builder._fs` and `builder._reclaim` are shared by everyone; `builder.rootfs`
is the store/layers glue that build, runtime and cli use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = {
    "builder.errors",
    "builder._fs",
    "builder._reclaim",
    "builder._gotemplate",
    "builder._gotemplate_funcs",
    "builder",
}

ALLOWED: dict[str, set[str]] = {
    "kubefile_grammar": {"kubefile_grammar"},
    "builder.image": {"builder.image"},
    "builder.layers": {"builder.layers", "builder.image"},
    "builder.store": {"builder.store", "builder.image"},
    "builder.rootfs": {"builder.store", "builder.layers", "builder.image"},
    "builder.build": {
        "kubefile_grammar",
        "builder.build",
        "builder.layers",
        "builder.store",
        "builder.image",
        "builder.rootfs",
        "builder.registry",
    },
    "builder.registry": {"builder.registry", "builder.store", "builder.image"},
    "builder.runtime": {
        "builder.runtime",
        "builder.registry",
        "builder.store",
        "builder.layers",
        "builder.image",
        "builder.rootfs",
    },
    "builder.cli": {"kubefile_grammar", "builder"},
}


def _package_of(module: str) -> str:
    for pkg in sorted(ALLOWED, key=len, reverse=True):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return module


def _modules() -> list[tuple[str, Path]]:
    out = []
    for top in ("kubefile_grammar", "builder"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.append((".".join(parts), path))
    return out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] in ("builder", "kubefile_grammar")}


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_module_imports_only_what_its_package_may(module: str, path: Path) -> None:
    package = _package_of(module)
    allowed = ALLOWED.get(package)
    if allowed is None:
        assert module in SHARED, f"{module} belongs to no package of the import rules; add it to ALLOWED"
        allowed = {"builder.errors", "builder._fs", "builder.image"} if module == "builder._fs" else set()
    bad = []
    for imported in sorted(_imports(path)):
        if imported in SHARED or any(imported == a or imported.startswith(a + ".") for a in allowed):
            continue
        if "builder" in allowed and imported.startswith("builder"):
            continue
        bad.append(imported)
    assert not bad, f"{module} ({package}) may not import {', '.join(bad)}"


def test_grammar_imports_nothing_of_builder() -> None:
    for module, path in _modules():
        if module.startswith("kubefile_grammar"):
            assert not any(m.startswith("builder") for m in _imports(path)), module
