"""sealer's Application document (app_launch.py), read strictly from a Clusterfile's node tree
(clusterfile.py calls `read_application` for the `kind: Application` document; one at most),
and back from a Cluster's kept documents at run time (`application_of_documents`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from builder.runtime.app_launch import (
    APPLICATION_API_VERSION,
    APPLICATION_KIND,
    FILE_STRATEGIES,
    AppConfig,
    AppLaunch,
    app_file,
)
from builder.runtime.clusterfile_reader import NodeReader, document_head, parsed
from builder.runtime.configs import check_config_path
from builder.runtime.env import parse_env_list

_SPEC_FIELDS = ("cmds", "launchApps", "configs")
_CONFIG_FIELDS = ("name", "launch", "env", "files")
_FILE_FIELDS = ("path", "data", "strategy")


def is_application(data: Mapping[str, Any]) -> bool:
    return data.get("kind") == APPLICATION_KIND


def read_application(reader: NodeReader, node: yaml.Node, where: str, source: str) -> AppLaunch:
    _, top = document_head(reader, node, where, kind="Application", api_version=APPLICATION_API_VERSION)
    if "spec" not in top:
        return AppLaunch(source=source)
    spec = reader.mapping(top["spec"], f"{where}.spec", _SPEC_FIELDS)
    cmds = reader.strings(spec["cmds"], f"{where}.spec.cmds") if "cmds" in spec else ()
    launch = reader.strings(spec["launchApps"], f"{where}.spec.launchApps") if "launchApps" in spec else None
    configs: list[AppConfig] = []
    if "configs" in spec:
        items = spec["configs"]
        if not isinstance(items, yaml.SequenceNode):
            reader.fail(items, f"{where}.spec.configs", "expected a list")
        for i, item in enumerate(items.value):
            configs.append(_config(reader, item, f"{where}.spec.configs[{i}]", source))
    names = [c.name for c in configs]
    for i, name in enumerate(names):
        if name in names[:i]:
            reader.fail(
                spec["configs"].value[i], f"{where}.spec.configs[{i}].name", f"app {name} is configured twice"
            )
    return AppLaunch(tuple(cmds), tuple(launch) if launch is not None else None, tuple(configs), source)


def _config(reader: NodeReader, node: yaml.Node, where: str, source: str) -> AppConfig:
    entry = reader.mapping(node, where, _CONFIG_FIELDS)
    if "name" not in entry:
        reader.fail(node, f"{where}.name", "missing", hint="the name of one of the image's apps")
    name = reader.required_string(entry["name"], f"{where}.name")
    cmds: tuple[str, ...] = ()
    if "launch" in entry:
        launch = reader.mapping(entry["launch"], f"{where}.launch", ("cmds",))
        cmds = reader.strings(launch["cmds"], f"{where}.launch.cmds") if "cmds" in launch else ()
    env: dict[str, str] = {}
    if "env" in entry:
        env = reader.env(entry["env"], f"{where}.env")
    files = []
    if "files" in entry:
        items = entry["files"]
        if not isinstance(items, yaml.SequenceNode):
            reader.fail(items, f"{where}.files", "expected a list")
        for i, item in enumerate(items.value):
            fwhere = f"{where}.files[{i}]"
            f = reader.mapping(item, fwhere, _FILE_FIELDS)
            for key in ("path", "data", "strategy"):
                if key not in f:
                    reader.fail(item, f"{fwhere}.{key}", "missing")
            path = parsed(
                reader, f["path"], f"{fwhere}.path", check_config_path, hint="a path inside the app's tree"
            )
            strategy = reader.required_string(f["strategy"], f"{fwhere}.strategy")
            if strategy not in FILE_STRATEGIES:
                reader.fail(f["strategy"], f"{fwhere}.strategy", f"unknown strategy {strategy!r}",
                            hint=f"strategies: {', '.join(FILE_STRATEGIES)}")  # fmt: skip
            data = reader.required_string(f["data"], f"{fwhere}.data")
            files.append(app_file(name, path, data, strategy, f"{source} {name}"))
    return AppConfig(name, tuple(cmds), env, tuple(files))


def application_of_documents(documents: Iterable[Mapping[str, Any]]) -> AppLaunch | None:
    """The Cluster's Application document (checked by `read_application` when read), if any."""
    for doc in documents:
        if not is_application(doc):
            continue
        spec = doc.get("spec") or {}
        configs = []
        for c in spec.get("configs") or ():
            name = str(c["name"])
            files = tuple(
                app_file(name, str(f["path"]), str(f["data"]), str(f["strategy"]), f"Clusterfile {name}")
                for f in c.get("files") or ()
            )
            env = parse_env_list(str(e) for e in c.get("env") or ())
            cmds = tuple(str(x) for x in (c.get("launch") or {}).get("cmds") or ())
            configs.append(AppConfig(name, cmds, env, files))
        launch = spec.get("launchApps")
        return AppLaunch(
            tuple(str(x) for x in spec.get("cmds") or ()),
            tuple(str(x) for x in launch) if launch is not None else None,
            tuple(configs),
            "Clusterfile",
        )
    return None
