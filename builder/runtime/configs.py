"""sealer's Config documents: a rootfs file overwritten or merged on every host, before init.sh
and before the templates render. Values and the pure file transformation; no I/O.

    apiVersion: sealer.io/v1
    kind: Config
    metadata: {name: redis-config}
    spec:
      path: etc/redis.yaml          # rootfs-relative; a `.tmpl` path changes the template itself
      strategy: merge               # overwrite (default) | merge (YAML, every document of the file)
      process: value|toJson         # optional: value, toJson, toBase64, toSecret, joined by |
      data: |
        redis-user: root

The result travels in the per-cluster layer that carries the rendered templates
(delivery.render_layer), so every host gets the same file and a re-run changes nothing.

As sealer: `merge` deep-merges the data into each YAML document of the file, replacing values of
keys the document has and leaving out keys it lacks (a file of several documents gets a key only
where one is); a file the image lacks is written with the data. `value` makes the processors
below it work on each top-level value of the data instead of the whole text; `toJson` turns
YAML into JSON, `toBase64` encodes; `toSecret` puts the data's values, base64, into the `data`
of every `kind: Secret` document of the file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

CONFIG_API_VERSION = "sealer.io/v1"
CONFIG_KIND = "Config"
STRATEGIES = ("overwrite", "merge")  # a Config's; an Application's file merge is "merge-add"
PROCESSORS = ("value", "toJson", "toBase64", "toSecret")


class ConfigDataError(ValueError):
    """The data (or the file it merges into) is not what the strategy or processor needs."""


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """One Config document: `path` rootfs-relative, already checked to stay inside the rootfs."""

    name: str
    path: str
    data: str
    strategy: str = "overwrite"
    process: tuple[str, ...] = ()
    source: str = ""


def check_config_path(path: str) -> str:
    """`path` when it is a plain rootfs-relative file path; ValueError otherwise."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{path!r} is not a path inside the rootfs (relative, no '..', no empty parts)")
    return path


def parse_process(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split("|") if p.strip())
    for name in names:
        if name not in PROCESSORS:
            raise ValueError(f"unknown processor {name!r}")
    return names


def _load_map(text: str, what: str) -> dict[str, Any]:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigDataError(f"{what} is not YAML: {err}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigDataError(f"{what} is not a YAML mapping")
    return value


def _dump(value: object) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False)


def processed(config: ConfigFile) -> str:
    """The data after the processors other than toSecret (which acts on the file)."""
    data = config.data
    per_value = "value" in config.process
    for name in config.process:
        if name not in ("toJson", "toBase64"):
            continue
        if not per_value:
            data = (
                json.dumps(_load_map(data, "the data"))
                if name == "toJson"
                else base64.b64encode(data.encode()).decode()
            )
            continue
        values = _load_map(data, "the data")
        if name == "toJson":
            values = {k: json.dumps(v) for k, v in values.items()}
        else:
            values = {k: base64.b64encode(str(v).encode()).decode() for k, v in values.items()}
        data = _dump(values)
    return data


def _merge(dst: dict[str, Any], src: Mapping[str, Any], *, add: bool) -> None:
    """sealer's deep merges: values of the keys `dst` has are replaced by `src`'s, mappings
    merged key by key; keys only `src` has are added with `add` (an Application's files, merged
    by mergo), else left out (a Config's)."""
    for key, value in src.items():
        if key not in dst:
            if add:
                dst[key] = value
            continue
        if isinstance(dst[key], dict) and isinstance(value, Mapping):
            _merge(dst[key], value, add=add)
        else:
            dst[key] = value


def _documents(text: str, what: str) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise ConfigDataError(f"{what} is not YAML: {err}") from None


def apply_config(config: ConfigFile, current: str | None) -> str:
    """The file's new text: `current` is what the image has at the path (None: no such file)."""
    data = processed(config)
    if "toSecret" in config.process and current is not None:
        values = _load_map(config.data, "the data")
        docs = _documents(current, config.path)
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                secret = doc.setdefault("data", {}) or {}
                secret.update({k: base64.b64encode(str(v).encode()).decode() for k, v in values.items()})
                doc["data"] = secret
        return "---\n".join(_dump(d) for d in docs)
    if config.strategy not in ("merge", "merge-add") or current is None:
        return data
    patch = _load_map(data, "the data")
    docs = _documents(current, config.path)
    for doc in docs:
        if isinstance(doc, dict):
            _merge(doc, patch, add=config.strategy == "merge-add")
    return "---\n".join(_dump(d) for d in docs)
