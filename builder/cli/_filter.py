"""`sealer images --filter`, with docker's semantics.

`reference=PATTERN` matches the familiar name (`demo/app:v1`, or `demo/app` alone) with Go's
path.Match glob: `*` and `?` never cross a `/`, `[...]` is a class. `label=KEY` keeps images
whose config has the label, `label=KEY=VALUE` with that value. Filters of the same key OR,
different keys AND (`--filter reference=a* --filter reference=b* --filter label=x`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from builder.errors import UsageError
from builder.image.reference import Reference
from builder.store.identity import ImageRecord

KEYS = ("reference", "label")


def parse_filters(filters: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """{key: [values]} from `KEY=VALUE` strings; UsageError for anything else."""
    out: dict[str, list[str]] = {}
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep or key not in KEYS or not value:
            raise UsageError(
                f"--filter: invalid filter {text!r}",
                hint="use reference=PATTERN or label=KEY[=VALUE]",
            )
        if key == "reference":
            _glob(value)  # a malformed class fails here, once
        out.setdefault(key, []).append(value)
    return out


def _glob(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise UsageError(f"--filter: reference pattern {pattern!r} has an unclosed '['")
            body = pattern[i + 1 : end]
            out += "[" + ("^" + re.escape(body[1:]) if body.startswith("^") else re.escape(body)) + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def _reference_matches(name: str, pattern: str) -> bool:
    ref = Reference.parse(name)
    regex = _glob(pattern)
    return any(regex.fullmatch(text) for text in (ref.familiar, ref.familiar_name))


def _label_matches(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def matches(record: ImageRecord, filters: Mapping[str, list[str]]) -> bool:
    """True when `record` passes every key (each key: any of its values)."""
    if "reference" in filters and not any(_reference_matches(record.name, p) for p in filters["reference"]):
        return False
    labels = dict(record.labels)
    return "label" not in filters or any(_label_matches(labels, w) for w in filters["label"])
