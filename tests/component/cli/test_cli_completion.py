"""`sealer completion bash|zsh|fish` prints click's completion script, and the `sealer` entry
point answers click's completion protocol (COMP_WORDS/COMP_CWORD + _SEALER_COMPLETE) with
the lazily loaded commands: `sealer bu<TAB>` gives `build`. The bash script is run by bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SealerRunner

SEALER = Path(sys.executable).with_name("sealer")


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _sealer_completion sealer"),
        ("zsh", "#compdef sealer"),
        ("fish", "complete --no-files --command sealer"),
    ],
)
def test_completion_prints_the_shells_script(sealer: SealerRunner, shell: str, marker: str) -> None:
    out = sealer("completion", shell).stdout
    assert marker in out and f"_SEALER_COMPLETE={shell}_complete" in out


def test_completion_of_another_shell_is_a_usage_error(sealer: SealerRunner) -> None:
    assert sealer("completion", "tcsh", expect=2).stdout == ""


def _complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(cword), "_SEALER_COMPLETE": "bash_complete"}
    done = subprocess.run([str(SEALER)], env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def test_the_entry_point_completes_commands_and_options() -> None:
    assert _complete("sealer bu", 1) == ["plain,build"]
    assert _complete("sealer compl", 1) == ["plain,completion"]
    assert "plain,--dry-run" in _complete("sealer run --dry", 2)


def test_bash_runs_the_script_and_completes_sealer_bu(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None, "bash is needed to run the completion script"
    script = subprocess.run(
        [str(SEALER), "completion", "bash"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    (tmp_path / "sealer.bash").write_text(script)
    probe = (
        f"source {tmp_path / 'sealer.bash'}\n"
        "COMP_WORDS=(sealer bu); COMP_CWORD=1\n"
        "_sealer_completion sealer\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{SEALER.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [bash, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["build"]
