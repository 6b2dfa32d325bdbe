"""`expand`: Docker's documented forms, escapes, nesting, unset variables, bad substitutions."""

from __future__ import annotations

import pytest

from kubefile_grammar import BadSubstitution, LimitExceeded, Span, expand
from kubefile_grammar.limits import MAX_NESTING

LOOKUP = {"ARCH": "amd64", "EMPTY": "", "NAME": "web", "B": "bee"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$ARCH/bin", "amd64/bin"),
        ("${ARCH}/bin", "amd64/bin"),
        ("${ARCH}x", "amd64x"),
        ("$ARCHx", ""),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${UNSET-default}", "default"),
        ("${NAME:-default}", "web"),
        ("${NAME:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("${UNSET:-${B}}", "bee"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${NAME:+${B}-x}", "bee-x"),
        ("\\$ARCH", "$ARCH"),
        ("\\${ARCH}", "${ARCH}"),
        ("\\\\$ARCH", "\\amd64"),
        ("a\\b", "a\\b"),
        ("$", "$"),
        ("$1", "$1"),
        ("cost: 5$", "cost: 5$"),
        ("${UNSET:-a\\}b}", "a}b"),
        ("", ""),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, LOOKUP) == expected


def test_backtick_escape() -> None:
    assert expand("`$ARCH and $ARCH and \\x", LOOKUP, escape="`") == "$ARCH and amd64 and \\x"


@pytest.mark.parametrize("text", ["${", "${ARCH", "${}", "${1A}", "${A:-x", "${A:?x}", "${A#x}", "${A:-${B}"])
def test_bad_substitution(text: str) -> None:
    with pytest.raises(BadSubstitution) as info:
        expand(text, LOOKUP, path="sub/Kubefile", span=Span(3, 5, 3, 20))
    err = info.value
    assert str(err).startswith("sub/Kubefile:3:5: ")
    assert err.label == "bad substitution" and err.reference == "bad-substitution"
    assert err.hint is not None


def test_expansion_is_capped_where_characters_are_produced() -> None:
    assert expand("$A$A", {"A": "x" * 5}, max_chars=10) == "x" * 10
    for text in ("$A$A$A", "${U:-$A$A}$A", "${A:+$A$A$A}"):
        with pytest.raises(LimitExceeded, match="longer than 10 characters") as info:
            expand(text, {"A": "x" * 5}, max_chars=10, span=Span(4, 2, 4, 9))
        assert str(info.value).startswith("Kubefile:4:2: ")
        assert info.value.reference == "limit-exceeded"


def test_nesting_is_capped_without_recursion_error() -> None:
    def nested(depth: int) -> str:
        return "${A:-" * depth + "v" + "}" * depth

    assert expand(nested(MAX_NESTING), {}) == "v"
    for depth in (MAX_NESTING + 1, 20_000):
        with pytest.raises(LimitExceeded, match=f"nested more than {MAX_NESTING} deep"):
            expand(nested(depth), {})
