"""YAML and JSON reading for discovery, with errors that name the file, line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from builder.errors import ImageDiscoveryError

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_FILE_BYTES = 64 << 20


def _read(path: Path, display: str) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageDiscoveryError(f"{display}: larger than {MAX_FILE_BYTES >> 20} MiB", path=display)
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ImageDiscoveryError(f"{display}: not UTF-8 text ({err.reason})", path=display) from None
    except OSError as err:
        raise ImageDiscoveryError(f"{display}: cannot read: {err.strerror}", path=display) from None


def load_documents(path: Path, display: str) -> list[Any]:
    """Every document of a YAML file (or the one value of a `.json` file); empty ones dropped."""
    text = _read(path, display)
    if path.suffix == ".json":
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as err:
            raise ImageDiscoveryError(
                f"{display}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}", path=display, line=err.lineno
            ) from None
    try:
        return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        if mark is None:
            raise ImageDiscoveryError(f"{display}: invalid YAML: {problem}", path=display) from None
        line = mark.line + 1
        raise ImageDiscoveryError(
            f"{display}:{line}:{mark.column + 1}: invalid YAML: {problem}",
            path=display,
            line=line,
            hint="images are read from every YAML document here; fix the file or move it out",
        ) from None


def load_mapping(path: Path, display: str) -> dict[str, Any]:
    """A file holding one YAML mapping (Chart.yaml, values.yaml); an empty file is {}."""
    docs = load_documents(path, display)
    if not docs:
        return {}
    if not isinstance(docs[0], dict):
        raise ImageDiscoveryError(f"{display}: expected a YAML mapping", path=display, line=1)
    return docs[0]


def read_text(path: Path, display: str) -> str:
    return _read(path, display)
