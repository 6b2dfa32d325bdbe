"""Planning: variable scopes as Dockerfiles have them, built-ins, unused build args."""

from __future__ import annotations

from pathlib import Path

import pytest

import kubefile_grammar as kg
from builder.build.plan import BuildOptions, ConfigStep, CopyStep, RunStep, make_plan
from builder.errors import ImageNotFound
from builder.image.descriptor import Platform
from builder.store.layout import Store

ARM = Platform("linux", "arm64", "v8")


def plan(text: str, tmp_path: Path, **build_args: str):  # type: ignore[no-untyped-def]
    store = Store.open(tmp_path / "root")
    kubefile = kg.parse(text, "Kubefile")
    return make_plan(kubefile, BuildOptions(context=tmp_path, build_args=build_args), ARM, store)


def test_arg_before_from_is_only_for_from(tmp_path: Path) -> None:
    p = plan("ARG DIR=x\nFROM scratch\nCOPY ${DIR}/a b/\nARG DIR\nCOPY ${DIR}/a c/\n", tmp_path)
    copies = [s for s in p.steps if isinstance(s, CopyStep)]
    assert copies[0].sources == ("/a",)  # not visible in the stage yet
    assert copies[1].sources == ("x/a",)  # brought in by ARG DIR without a value


def test_env_wins_over_arg_and_build_args_win_over_defaults(tmp_path: Path) -> None:
    p = plan("FROM scratch\nARG V=default\nCOPY $V d/\nENV V=env\nCOPY $V e/\n", tmp_path, V="cli")
    copies = [s for s in p.steps if isinstance(s, CopyStep)]
    assert [c.sources for c in copies] == [("cli",), ("env",)]


def test_builtins_and_run_env(tmp_path: Path) -> None:
    p = plan("FROM scratch\nARG A=1\nENV B=2\nCOPY ${ARCH}/${TARGETVARIANT} x/\nRUN echo $A $B\n", tmp_path)
    copy = next(s for s in p.steps if isinstance(s, CopyStep))
    assert copy.sources == ("arm64/v8",)
    run = next(s for s in p.steps if isinstance(s, RunStep))
    env = dict(run.env)
    assert env["A"] == "1" and env["B"] == "2" and env["ARCH"] == "arm64"
    assert env["TARGETPLATFORM"] == "linux/arm64/v8"
    assert run.command == "echo $A $B"  # the shell expands RUN, not the planner


def test_unused_build_args_are_reported(tmp_path: Path) -> None:
    p = plan("FROM scratch\nARG USED\nLABEL a=$USED\n", tmp_path, USED="1", TYPO="2")
    assert p.unused_build_args == ("TYPO",)
    label = next(s for s in p.steps if isinstance(s, ConfigStep))
    assert label.items == (("a", "1"),)


def test_bad_substitution_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(kg.KubefileError) as info:
        plan("FROM scratch\nCOPY ${BROKEN x/\n", tmp_path)
    assert str(info.value).startswith("Kubefile:2:")


def test_missing_base_image(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match="nothing/here") as info:
        plan("FROM nothing/here:v1\n", tmp_path)
    assert str(info.value).startswith("Kubefile:1:1: ") and "\n" not in str(info.value)


def test_kubeversion_that_expands_to_nothing_is_refused_at_its_line(tmp_path: Path) -> None:
    """The classic slip: ARG before FROM is not seen after it, so KUBEVERSION would silently be
    empty and the image would lose its kube version (label and Metadata)."""
    with pytest.raises(kg.InvalidArgument) as err:
        plan("ARG V=v1.29.4\nFROM scratch\nKUBEVERSION ${V}\n", tmp_path)
    assert str(err.value).startswith("Kubefile:3:1: KUBEVERSION ${V} expands to nothing")
    assert "declare it again after FROM" in (err.value.hint or "")
    p = plan("ARG V=v1.29.4\nFROM scratch\nARG V\nKUBEVERSION ${V}\n", tmp_path)
    assert [s.value for s in p.steps if isinstance(s, ConfigStep)][-1] == "v1.29.4"
