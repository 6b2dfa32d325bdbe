"""Hostile Go templates (`--format`, `.tmpl` files, chart image fields share the engine).

Each is refused with a TemplateError whose message is one line naming the position, quickly
and without a RecursionError or a traceback. The unclosed-`{{` case took 35 s before the
lexer became a find() scan; the nested cases raised RecursionError.
"""

from __future__ import annotations

import time

import pytest

from builder._gotemplate import MAX_NESTING, MAX_OUTPUT_CHARS, MAX_RANGE_STEPS
from builder.cli._format import render_format
from builder.errors import RootfsTemplateError, TemplateError
from builder.runtime.env import render_template


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{" * 20000, "--format:1: unclosed action"),
        ("x\n" * 5000 + "{{ .A", "--format:5001: unclosed action"),
        ("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}", f"parentheses nested more than {MAX_NESTING} deep"),
        ("{{if 1}}" * 5000 + "{{end}}" * 5000, f"blocks nested more than {MAX_NESTING} deep"),
        ("{{range 2000}}{{range 1000}}{{end}}{{end}}", f"more than {MAX_RANGE_STEPS} range iterations"),
        (
            '{{range 20000}}{{printf "%1000s" "x"}}{{end}}',
            f"output larger than {MAX_OUTPUT_CHARS} characters",
        ),
        ("{{ " + "{" * 100000 + " }}", "unexpected '{'"),
        ("{{ .A\n\n| nope }}", 'function "nope" not defined'),
    ],
    ids=["unclosed", "unclosed-late", "parens", "blocks", "range-steps", "output", "braces", "multiline"],
)
def test_hostile_template_is_one_line_error(template: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as info:
        render_format(template, {"A": 1})
    assert message in info.value.message
    assert "\n" not in info.value.message and len(info.value.message) < 200
    assert time.monotonic() - started < 5  # linear: the unclosed case took 35 s


def test_hostile_tmpl_file_names_file_and_line() -> None:
    with pytest.raises(RootfsTemplateError) as info:
        render_template("a\n" + "{{if .A}}" * 1000, {"A": "1"}, path="etc/x.tmpl")
    assert info.value.message == f"etc/x.tmpl:2: blocks nested more than {MAX_NESTING} deep"
