"""The grammar passes lark's strict mode (no terminal collisions) for both escape characters.

The runtime parser skips the check for start-up speed; this test is where it is enforced.
"""

from __future__ import annotations

import pytest

from kubefile_grammar.parser import build_parser


@pytest.mark.parametrize("escape", ["\\", "`"])
def test_grammar_is_strict_clean(escape: str) -> None:
    parser = build_parser(escape, strict=True)
    assert parser.parse("FROM scratch\nCOPY a b\n") is not None
