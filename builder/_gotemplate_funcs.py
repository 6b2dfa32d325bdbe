"""The function sets of `builder._gotemplate`: Go's builtins, docker's `--format` extras, Helm's.

`go_text` prints a value as Go's `fmt` does (`[a b]`, `map[k:v]`, `true`, `<nil>`).
`builtin_functions(show)` are text/template's own (and, or, not, len, index, slice, print,
printf, println, eq, ne, lt, le, gt, ge) plus what docker's `--format` adds (json, join, split,
lower, upper, title, truncate, pad) and b64enc/b64dec (sealer's `.tmpl` files use them).
`HELM_FUNCTIONS` are the sprig functions Helm charts put in `image:` fields.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from builder._gotemplate import is_empty
from builder.errors import TemplateError


def go_text(value: Any, *, nil: str = "<nil>") -> str:
    """`fmt.Sprint(value)` for JSON-shaped values."""
    if value is None:
        return nil
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_text(value[k])}" for k in sorted(value, key=str)) + "]"
    return str(value)


def to_json(value: Any) -> str:
    """What docker's `json` function prints: compact JSON."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise TemplateError(f"json: {err}") from None


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([a-zA-Z%])")


def sprintf(fmt: str, args: tuple[Any, ...], show: Callable[[Any], str]) -> str:
    """Go's `fmt.Sprintf` for the verbs templates use: %s %v %q %d %t %f %e %g %x %X %c %%."""
    it = iter(args)

    def sub(m: re.Match[str]) -> str:
        flags, width, prec, verb = m.group(1), m.group(2) or "", m.group(3), m.group(4)
        if verb == "%":
            return "%"
        try:
            arg = next(it)
        except StopIteration:
            return f"%!{verb}(MISSING)"
        spec = flags.replace("#", "") + width
        if verb in "sv":
            text = show(arg) if prec is None else show(arg)[: int(prec)]
        elif verb == "q":
            text = json.dumps(arg if isinstance(arg, str) else show(arg), ensure_ascii=False)
        elif verb == "t" and isinstance(arg, bool):
            text = go_text(arg)
        elif verb in "dxXobc" and isinstance(arg, int) and not isinstance(arg, bool):
            return format(arg, spec + ("c" if verb == "c" else "d" if verb == "d" else verb))
        elif verb in "feEgG" and isinstance(arg, (int, float)) and not isinstance(arg, bool):
            return format(float(arg), spec + (f".{prec}" if prec else ".6" if verb in "feE" else "") + verb)
        else:
            return f"%!{verb}({type(arg).__name__}={show(arg)})"
        return format(text, (">" if "-" not in flags else "<") + width) if width else text

    return _VERB.sub(sub, fmt)


def _sprint(args: tuple[Any, ...], show: Callable[[Any], str]) -> str:
    # fmt.Sprint puts a space between operands when neither is a string.
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += show(arg)
    return out


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if value is None:
            raise TemplateError("index of untyped nil")
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"cannot index slice/array with type {type(key).__name__}")
            if not 0 <= key < len(value):
                raise TemplateError(f"index out of range: {key}")
            value = value[key]
        else:
            raise TemplateError(f"can't index item of type {type(value).__name__}")
    return value


def _slice(value: Any, *bounds: int) -> Any:
    if not isinstance(value, (list, tuple, str)):
        raise TemplateError(f"can't slice item of type {type(value).__name__}")
    if len(bounds) > 2 or any(not 0 <= b <= len(value) for b in bounds):
        raise TemplateError(f"slice bounds {list(bounds)} out of range for length {len(value)}")
    return value[slice(*bounds)] if bounds else value


def _len(value: Any) -> int:
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value)
    raise TemplateError(f"len of type {type(value).__name__}")


def _compare(op: str) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        numbers = (int, float)
        same = (isinstance(a, numbers) and isinstance(b, numbers)) or type(a) is type(b)
        if not same or isinstance(a, (bool, list, dict)) or a is None:
            raise TemplateError(f"incompatible types for comparison: {go_text(a)} {op} {go_text(b)}")
        return bool({"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op])

    return compare


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TemplateError(f"expected a string, got {type(value).__name__} {go_text(value)}")
    return value


def _join(items: Any, sep: Any) -> str:
    if not isinstance(items, (list, tuple)):
        raise TemplateError(f"join: expected a list, got {type(items).__name__}")
    return _text(sep).join(go_text(i) for i in items)


def _b64dec(value: Any) -> str:
    try:
        return base64.b64decode(_text(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as err:
        # sealer's b64dec renders the error text; a broken config file is worse than an error.
        raise TemplateError(f"b64dec: {err}") from None


def _and(*args: Any) -> Any:
    if not args:
        raise TemplateError("and: wrong number of args: want at least 1 got 0")
    return next((a for a in args if is_empty(a)), args[-1])


def _or(*args: Any) -> Any:
    if not args:
        raise TemplateError("or: wrong number of args: want at least 1 got 0")
    return next((a for a in args if not is_empty(a)), args[-1])


def builtin_functions(show: Callable[[Any], str]) -> dict[str, Callable[..., Any]]:
    """text/template's builtins and docker's extras, printing values with `show`."""
    return {
        "and": _and,
        "or": _or,
        "not": is_empty,
        "len": _len,
        "index": _index,
        "slice": _slice,
        "print": lambda *a: _sprint(a, show),
        "println": lambda *a: " ".join(show(x) for x in a) + "\n",
        "printf": lambda fmt, *a: sprintf(_text(fmt), a, show),
        "eq": lambda a, *others: any(a == o for o in others),
        "ne": lambda a, b: a != b,
        "lt": _compare("lt"),
        "le": _compare("le"),
        "gt": _compare("gt"),
        "ge": _compare("ge"),
        "json": to_json,
        "join": _join,
        "split": lambda s, sep: _text(s).split(_text(sep)),
        "lower": lambda s: _text(s).lower(),
        "upper": lambda s: _text(s).upper(),
        "title": lambda s: _text(s).title(),
        "truncate": lambda s, n: _text(s)[:n],
        "pad": lambda s, before, after: " " * before + _text(s) + " " * after,
        "b64enc": lambda s: base64.b64encode(_text(s).encode()).decode(),
        "b64dec": _b64dec,
    }


def _default(default: Any, *value: Any) -> Any:
    return default if not value or is_empty(value[0]) else value[0]


def _required(message: Any, value: Any) -> Any:
    if is_empty(value):
        raise TemplateError(f"required value is not set ({message})")
    return value


def helm_functions(show: Callable[[Any], str]) -> dict[str, Callable[..., Any]]:
    """The builtins plus the sprig functions image fields use (Helm prints nil as "")."""
    return {
        **builtin_functions(show),
        "default": _default,
        "quote": lambda *a: " ".join('"' + show(x) + '"' for x in a),
        "squote": lambda *a: " ".join("'" + show(x) + "'" for x in a),
        "print": lambda *a: "".join(show(x) for x in a),
        "toString": show,
        "trim": lambda s: show(s).strip(),
        "trimPrefix": lambda p, s: show(s).removeprefix(show(p)),
        "trimSuffix": lambda p, s: show(s).removesuffix(show(p)),
        "lower": lambda s: show(s).lower(),
        "upper": lambda s: show(s).upper(),
        "replace": lambda old, new, s: show(s).replace(show(old), show(new)),
        "required": _required,
        "coalesce": lambda *a: next((v for v in a if not is_empty(v)), None),
        "toYaml": lambda v: v,  # structure is kept; only the caller decides what a list means
    }
