"""sealer's Config documents (configs.py), read strictly from a Clusterfile's node tree
(clusterfile.py calls `read_config` for each `kind: Config` document), and turned back into
values from a Cluster's kept documents at run time (`configs_of_documents`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from builder.runtime.clusterfile_reader import NodeReader, document_head, parsed
from builder.runtime.configs import (
    CONFIG_API_VERSION,
    CONFIG_KIND,
    PROCESSORS,
    STRATEGIES,
    ConfigFile,
    check_config_path,
    parse_process,
)

_SPEC_FIELDS = ("path", "data", "strategy", "process")


def is_config(data: Mapping[str, Any]) -> bool:
    return data.get("kind") == CONFIG_KIND


def read_config(reader: NodeReader, node: yaml.Node, where: str, source: str) -> ConfigFile:
    name, top = document_head(reader, node, where, kind="Config", api_version=CONFIG_API_VERSION)
    if "spec" not in top:
        reader.fail(node, f"{where}.spec", "missing", hint="spec: {path: ROOTFS_PATH, data: TEXT}")
    spec = reader.mapping(top["spec"], f"{where}.spec", _SPEC_FIELDS)
    for key in ("path", "data"):
        if key not in spec:
            reader.fail(top["spec"], f"{where}.spec.{key}", "missing")
    path = parsed(
        reader, spec["path"], f"{where}.spec.path", check_config_path, hint="a path inside the rootfs"
    )
    strategy = "overwrite"
    if "strategy" in spec:
        strategy = reader.required_string(spec["strategy"], f"{where}.spec.strategy")
        if strategy not in STRATEGIES:
            reader.fail(spec["strategy"], f"{where}.spec.strategy", f"unknown strategy {strategy!r}",
                        hint=f"strategies: {', '.join(STRATEGIES)}")  # fmt: skip
    process: tuple[str, ...] = ()
    if "process" in spec:
        process = parsed(
            reader, spec["process"], f"{where}.spec.process", parse_process,
            hint=f"processors, joined by |: {', '.join(PROCESSORS)}",
        )  # fmt: skip
    data = reader.required_string(spec["data"], f"{where}.spec.data")
    return ConfigFile(name, path, data, strategy, process, source)


def configs_of_documents(documents: Iterable[Mapping[str, Any]]) -> tuple[ConfigFile, ...]:
    """The Config documents of a Cluster (kept as parsed; `read_config` checked them)."""
    out: list[ConfigFile] = []
    for doc in documents:
        if not is_config(doc):
            continue
        spec = doc["spec"]
        out.append(
            ConfigFile(
                str((doc.get("metadata") or {}).get("name") or ""),
                str(spec["path"]),
                str(spec["data"]),
                str(spec.get("strategy") or "overwrite"),
                parse_process(str(spec["process"])) if spec.get("process") is not None else (),
                "Clusterfile",
            )
        )
    return tuple(out)
