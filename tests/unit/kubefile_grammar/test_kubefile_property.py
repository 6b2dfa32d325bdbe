"""Whatever the input, `parse` returns a Kubefile or raises KubefileError, nothing else."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubefile_grammar import Kubefile, KubefileError, expand, parse

VALID = [
    "FROM kubernetes:v1.22.15\nCOPY imageList manifests\nCOPY ${ARCH}/bin/ bin/\n"
    "APP nginx local://nginx.yaml\nAPP dashboard local://dashboard.yaml\n"
    'APPCMDS nginx ["kubectl apply -f nginx.yaml"]\nLAUNCH ["nginx", "dashboard"]\n',
    '# escape=`\nARG V=1\nFROM --platform=linux/amd64 k:${V}\nRUN echo `\n  # c\n  "a b"\nENV a="x y" b=\'$z\'\n'
    'LABEL "k 2"=v\nCMDS ["a", "b"]\n',
    'FROM scratch\r\nCOPY --chmod=0755 ["a", "b"]\r\nRUN a \\\r\n\r\n  b\r\nKUBEVERSION v1\r\nCMD ["x"]\r\n',
    "\ufefffrom a\nmaintainer me <m@x>\nappenv web k=v\ncni calico local://c.yaml\nCSI s https://x/y\n",
]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parses_or_raises_kubefile_error(text: str) -> None:
    try:
        result = parse(text)
    except KubefileError as err:
        str(err)  # the one-line form can always be built
        assert err.line >= 1 and err.column >= 1
        return
    assert isinstance(result, Kubefile)


@SETTINGS
@given(st.text())
def test_random_text(text: str) -> None:
    parses_or_raises_kubefile_error(text)


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("FROMCOPYRUNAPPENV \t\n\\`#[]\"'=-$:{}/\r\x00\ud800"))))
def test_random_text_from_kubefile_characters(text: str) -> None:
    parses_or_raises_kubefile_error(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
        position = draw(st.integers(0, len(text)))
        if op == "insert":
            text = text[:position] + draw(st.text(min_size=1, max_size=3)) + text[position:]
        elif op == "delete":
            text = text[:position] + text[position + 1 :]
        elif op == "replace":
            text = text[:position] + draw(st.characters()) + text[position + 1 :]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


@SETTINGS
@given(mutated())
def test_mutated_valid_kubefiles(text: str) -> None:
    parses_or_raises_kubefile_error(text)


def test_valid_samples_parse() -> None:
    for text in VALID:
        assert isinstance(parse(text), Kubefile)


def test_huge_and_nested_inputs() -> None:
    for text in [
        "FROM a\nRUN " + "x" * 1_000_000 + "\n",
        "FROM a\nCMDS " + "[" * 100_000 + "\n",
        "\x00" * 10_000,
    ]:
        parses_or_raises_kubefile_error(text)


@SETTINGS
@given(st.text())
def test_expand_raises_only_bad_substitution(text: str) -> None:
    with contextlib.suppress(KubefileError):
        expand(text, {"A": "1"})
