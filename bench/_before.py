"""`make bench BEFORE=REV`: the code of git revision REV timed beside the working tree's, in the
same interleaved rounds, so that a change's before and after meet the same machine state.

REV's builder/, kubefile_grammar/ and bench/ are extracted (git archive) to
bench/work/before-<rev>/. Its contenders run with that directory first on sys.path: PYTHONPATH
(the editable install's finder comes after the path entries), and as the working directory for
`python -m bench...`, whose sys.path starts with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench._measure import compile_bytecode

HERE = Path(__file__).resolve().parent
ENV = "SEALER_BENCH_BEFORE"


@dataclass(frozen=True)
class Before:
    rev: str  # short commit id
    tree: Path

    def label(self, name: str) -> str:
        return f"{name} (before: {self.rev})"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**(base if base is not None else os.environ), "PYTHONPATH": str(self.tree)}

    def shell(self, command: str) -> str:
        """`command` (a shell string) run from the tree with the tree first on sys.path."""
        return f"cd {self.tree} && PYTHONPATH={self.tree} {command}"


def before() -> Before | None:
    """The revision named by $SEALER_BENCH_BEFORE, extracted; None when unset."""
    rev = os.environ.get(ENV, "").strip()
    if not rev:
        return None
    found = subprocess.run(
        ["git", "rev-parse", "--short", f"{rev}^{{commit}}"], cwd=HERE, capture_output=True, text=True
    )
    if found.returncode != 0:
        raise SystemExit(f"{ENV}={rev}: not a commit of this repository")
    short = found.stdout.strip()
    tree = HERE / "work" / f"before-{short}"
    if not (tree / ".extracted").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", short, "builder", "kubefile_grammar", "bench"],
            cwd=HERE.parent,
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        (tree / ".extracted").touch()
    compile_bytecode(tree)  # as the working tree's: both run as an installed sealer does
    return Before(short, tree)
