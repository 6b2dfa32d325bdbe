"""The size formatter (`--format` templates: tests/unit/test_gotemplate.py)."""

from __future__ import annotations

from builder.cli.output import human_size


def test_human_size() -> None:
    assert human_size(999) == "999 B"
    assert human_size(1500) == "1.5 kB"
    assert human_size(704_000_000) == "704 MB"
