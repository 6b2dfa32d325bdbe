"""The example scripts (`make demo`) call sealer's Python by module and name: every module a
script runs with `python -m` or imports in `python -c` exists and has the names it takes. The
docker demo's engine check imported a module that had moved, failed silently (its stderr goes
to /dev/null, as a missing engine's would) and skipped the containers part of the demo."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FROM_IMPORT = re.compile(r"from (builder[\w.]*) import ([\w, ]+)")
RUN_MODULE = re.compile(r"-m (builder[\w.]*)")
SCRIPTS = sorted(EXAMPLES.glob("*.sh"))


def test_there_are_example_scripts() -> None:
    assert {p.name for p in SCRIPTS} >= {"demo.sh", "demo-docker.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_python_an_example_script_names_exists(script: Path) -> None:
    text = script.read_text()
    for module, names in FROM_IMPORT.findall(text):
        loaded = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(loaded, name), f"{script.name}: {module} has no {name}"
    for module in RUN_MODULE.findall(text):
        assert importlib.util.find_spec(module) is not None, f"{script.name}: no module {module}"
