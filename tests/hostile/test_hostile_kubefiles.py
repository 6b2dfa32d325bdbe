"""The hostile-Kubefile corpus: each input refused with a known error and a one-line message.

Found by a fault probe: bytes that are not UTF-8, a NUL, values that double at every ARG,
`${...}` nested thousands deep, oversized files, files that are no files (a FIFO with no
writer, /dev/zero), and many ENV lines (once quadratic in planning). Grammar and planning
cases run in-process through `parse` and `make_plan` as the build calls them; the cases that
could hang or eat memory on a regression run the real CLI in a child with a timeout and a
memory cap, and check it prints one error line plus a hint, exits non-zero, and no traceback.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import kubefile_grammar as kg
from builder.build.executor import build_image
from builder.build.plan import BuildOptions, make_plan
from builder.image.descriptor import Platform
from builder.store.layout import Store
from kubefile_grammar.limits import MAX_EXPANSION_CHARS, MAX_KUBEFILE_BYTES, MAX_NESTING

AMD64 = Platform("linux", "amd64")


def _doubling_args(count: int) -> bytes:
    lines = ["FROM scratch", "ARG A0=xxxx"]
    lines += [f"ARG A{i}=${{A{i - 1}}}${{A{i - 1}}}" for i in range(1, count)]
    return ("\n".join(lines) + f"\nLABEL x=$A{count - 1}\n").encode()


def _nested(depth: int) -> bytes:
    return b"FROM scratch\nLABEL x=" + b"${A:-" * depth + b"v" + b"}" * depth + b"\n"


@dataclass(frozen=True)
class Case:
    kubefile: bytes
    error: type[kg.KubefileError]
    message: str  # the exact one-line form, path "Kubefile"
    build_args: dict[str, str] = field(default_factory=dict)


# The bytes are decoded as the build decodes them (UTF-8 with surrogateescape).
CASES = {
    "label-not-utf8": Case(
        b'FROM scratch\nLABEL a="\xff\xfe"\n', kg.InvalidCharacter, "Kubefile:2:10: invalid UTF-8 byte 0xff"
    ),
    "env-not-utf8-after-continuation": Case(
        b"FROM scratch\nENV a=1 \\\n  b=\xc3(\n",
        kg.InvalidCharacter,
        "Kubefile:3:5: invalid UTF-8 byte 0xc3",
    ),
    "nul-in-env": Case(
        b"FROM scratch\nENV A=a\x00b\nRUN true\n", kg.InvalidCharacter, "Kubefile:2:8: NUL character"
    ),
    "doubling-args": Case(
        _doubling_args(40),
        kg.LimitExceeded,
        f"Kubefile:21:1: variable expansion is longer than {MAX_EXPANSION_CHARS} characters",
    ),
    "nested-defaults": Case(
        _nested(5000), kg.LimitExceeded, f"Kubefile:2:1: ${{...}} nested more than {MAX_NESTING} deep"
    ),
    "nested-one-too-deep": Case(
        _nested(MAX_NESTING + 1),
        kg.LimitExceeded,
        f"Kubefile:2:1: ${{...}} nested more than {MAX_NESTING} deep",
    ),
    "too-large": Case(
        b"FROM scratch\nRUN " + b"x" * MAX_KUBEFILE_BYTES + b"\n",
        kg.LimitExceeded,
        f"Kubefile:2:{MAX_KUBEFILE_BYTES - 13 + 1}: the Kubefile is larger than {MAX_KUBEFILE_BYTES} bytes (1 MiB)",
    ),
    "total-expansion": Case(
        b"FROM scratch\nARG BIG\n" + b"".join(b"ENV V%d=$BIG\n" % i for i in range(17)),
        kg.LimitExceeded,
        "Kubefile:19:1: variable expansions of this Kubefile pass 16777216 characters in all",
        {"BIG": "x" * 1_000_000},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_hostile_kubefile_is_one_line_error(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    with pytest.raises(kg.KubefileError) as info:
        kubefile = kg.parse(case.kubefile.decode("utf-8", "surrogateescape"), "Kubefile")
        options = BuildOptions(context=tmp_path, build_args=case.build_args)
        make_plan(kubefile, options, AMD64, Store.open(tmp_path / "root"))
    err = info.value
    assert type(err) is case.error
    assert str(err) == case.message
    assert "\n" not in str(err) and err.hint
    assert err.context.endswith("^")  # the excerpt, with a caret, for the CLI to show


def test_nesting_and_doubling_within_limits_still_expand(tmp_path: Path) -> None:
    text = _nested(MAX_NESTING).decode() + "".join(_doubling_args(19).decode().splitlines(True)[1:])
    plan = make_plan(kg.parse(text), BuildOptions(context=tmp_path), AMD64, Store.open(tmp_path / "root"))
    values = [dict(step.items)["x"] for step in plan.steps]  # type: ignore[union-attr]
    assert values == ["v", "x" * MAX_EXPANSION_CHARS]


def test_many_env_lines_plan_in_linear_time(tmp_path: Path) -> None:
    """30,000 ENV lines: planning merged every variable into a new dict per expansion (~9 s)."""
    instructions: list[kg.Instruction] = [kg.From("scratch", None, kg.Span(1, 1, 1, 13))]
    instructions += [kg.Env(((f"K{i}", f"v{i}-$K0"),), kg.Span(i + 2, 1, i + 2, 9)) for i in range(30_000)]
    kubefile = kg.Kubefile("Kubefile", tuple(instructions), "\\", "")
    started = time.monotonic()
    plan = make_plan(kubefile, BuildOptions(context=tmp_path), AMD64, Store.open(tmp_path / "root"))
    assert time.monotonic() - started < 3
    assert len(plan.steps) == 30_000


def test_many_env_lines_build_in_linear_time(tmp_path: Path) -> None:
    """10,000 ENV lines, built: the config's env list was rebuilt per ENV line (14 s; now ~1 s)."""
    (tmp_path / "ctx").mkdir()
    lines = ["FROM scratch"] + [f"ENV K{i}=v{i}" for i in range(10_000)] + ["ENV K0=last"]
    (tmp_path / "ctx" / "Kubefile").write_text("\n".join(lines) + "\n")
    store = Store.open(tmp_path / "root")
    options = BuildOptions(context=tmp_path / "ctx", tags=("env:v1",), bundle_images=False)
    started = time.monotonic()
    result = build_image(store, options)
    assert time.monotonic() - started < 6
    config = store.read_config(store.read_manifest(result.descriptor).config)
    assert config.config.env[:2] == ("K0=last", "K1=v1") and len(config.config.env) == 10_000


# --- through the CLI, in a child: a regression must not hang or exhaust the test process ------


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-m", "builder.cli", "--root", str(root), "build", "-t", "x", *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit_memory,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        check=False,
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {message}"
    assert lines[-1].startswith("hint: ")


def test_cli_refuses_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "Kubefile.fifo"
    os.mkfifo(fifo)
    (tmp_path / "ctx").mkdir()
    result = _cli(tmp_path / "root", "-f", str(fifo), str(tmp_path / "ctx"))
    _assert_one_line_error(result, f"Kubefile {fifo} is a FIFO, not a regular file")
    assert len(result.stderr.splitlines()) == 2


def test_cli_refuses_dev_zero(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    result = _cli(tmp_path / "root", "-f", "/dev/zero", str(tmp_path / "ctx"))
    _assert_one_line_error(result, "Kubefile /dev/zero is a character device, not a regular file")


def test_cli_refuses_oversized_kubefile_unread(tmp_path: Path) -> None:
    big = tmp_path / "Kubefile"
    with big.open("wb") as file:
        file.truncate(64 << 30)  # sparse: reading it whole would take minutes and 64 GiB
    result = _cli(tmp_path / "root", "-f", str(big), str(tmp_path))
    _assert_one_line_error(result, f"Kubefile {big} is larger than {MAX_KUBEFILE_BYTES} bytes")


def test_cli_invalid_utf8_label_is_located(tmp_path: Path) -> None:
    (tmp_path / "Kubefile").write_bytes(CASES["label-not-utf8"].kubefile)
    result = _cli(tmp_path / "root", str(tmp_path))
    _assert_one_line_error(result, f"{tmp_path / 'Kubefile'}:2:10: invalid UTF-8 byte 0xff")


def test_cli_refuses_build_arg_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "Kubefile").write_text("FROM scratch\nARG B\nLABEL b=$B\n")
    arg = os.fsdecode(b"--build-arg=B=\xff")
    result = _cli(tmp_path / "root", arg, str(tmp_path))
    _assert_one_line_error(result, "--build-arg B: not valid UTF-8")
    assert result.returncode == 2
