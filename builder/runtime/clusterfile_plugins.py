"""sealer's Plugin documents (hooks.py), read strictly from the YAML node tree: of a Clusterfile
(clusterfile.py calls `read_plugin` for each `kind: Plugin` document) and of an image's
`plugins/*.yaml` (`clusterfile.parse_plugin_file`). Every error names the file, the line and the
field. `hooks_of_documents` turns a Cluster's kept Plugin documents (checked when the file was
read) into hooks again at plan time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from builder.runtime.clusterfile_reader import NodeReader, document_head, parsed
from builder.runtime.hooks import (
    HOOK_PHASES,
    HOOK_TYPES,
    PLUGIN_API_VERSION,
    PLUGIN_KIND,
    ShellHook,
    parse_action,
    parse_scope,
)

_SPEC_FIELDS = ("type", "action", "scope", "data")


def is_plugin(data: Mapping[str, Any]) -> bool:
    return data.get("kind") == PLUGIN_KIND


def read_plugin(reader: NodeReader, node: yaml.Node, where: str, source: str) -> ShellHook:
    """The Plugin document at `node` as a hook; `source` ("FILE:LINE") is kept for the plan."""
    name, top = document_head(
        reader, node, where, kind="Plugin", api_version=PLUGIN_API_VERSION,
        name_hint="metadata.name names the hook (hooks of a phase run in name order)",
    )  # fmt: skip
    if "spec" not in top:
        reader.fail(node, f"{where}.spec", "missing", hint="spec: {type: SHELL, action: PHASE, data: SHELL}")
    spec = reader.mapping(top["spec"], f"{where}.spec", _SPEC_FIELDS)
    for key in ("type", "action", "data"):
        if key not in spec:
            reader.fail(top["spec"], f"{where}.spec.{key}", "missing")
    kind = reader.required_string(spec["type"], f"{where}.spec.type")
    if kind not in HOOK_TYPES:
        reader.fail(
            spec["type"],
            f"{where}.spec.type",
            f"unknown type {kind!r}",
            hint=f"types: {', '.join(HOOK_TYPES)}",
        )
    phases = parsed(
        reader,
        spec["action"],
        f"{where}.spec.action",
        parse_action,
        hint=f"phases, joined by |: {', '.join(HOOK_PHASES)}",
    )
    scope = (
        parsed(
            reader, spec["scope"], f"{where}.spec.scope", parse_scope, hint="roles, joined by |: master, node"
        )
        if "scope" in spec
        else ()
    )
    data = reader.required_string(spec["data"], f"{where}.spec.data")
    if not data.strip():
        reader.fail(spec["data"], f"{where}.spec.data", "is empty", hint="the shell commands the hook runs")
    return ShellHook(name, phases, data.rstrip("\n"), scope, source)


def hooks_of_documents(
    documents: Iterable[Mapping[str, Any]], source: str = "Clusterfile"
) -> tuple[ShellHook, ...]:
    """The hooks of a Cluster's Plugin documents (kept as parsed; `read_plugin` checked them)."""
    out: list[ShellHook] = []
    for doc in documents:
        if not is_plugin(doc):
            continue
        spec = doc["spec"]
        scope = parse_scope(spec["scope"]) if spec.get("scope") is not None else ()
        out.append(
            ShellHook(
                str(doc["metadata"]["name"]),
                parse_action(spec["action"]),
                str(spec["data"]).rstrip("\n"),
                scope,
                source,
            )
        )
    return tuple(out)
