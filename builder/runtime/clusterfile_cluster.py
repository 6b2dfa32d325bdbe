"""The Clusterfile's kind: Cluster document (sealer.io/v2) -> `Cluster`: its top fields,
metadata.name and the spec's own fields (image, env, cmds, appNames, provider, nodeImage,
dataRoot, containerRuntime, distribution), read strictly from the node tree with the file's
NodeReader; the hosts and SSH settings are clusterfile_hosts.py's, spec.registry
clusterfile_registry.py's. clusterfile.py finds the document and calls `read_cluster`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import yaml

from builder.errors import InvalidCluster
from builder.image.reference import Reference
from builder.runtime.cluster import DEFAULT_CLUSTER_NAME, Cluster, RegistrySpec, SSHSpec, check_cluster_name
from builder.runtime.cluster_fields import (
    check_container_runtime,
    check_data_root,
    check_distribution,
    check_provider,
)
from builder.runtime.clusterfile_hosts import read_host_aliases, read_hosts, read_ssh
from builder.runtime.clusterfile_reader import NodeReader
from builder.runtime.clusterfile_registry import read_registry

API_VERSION = "sealer.io/v2"
# sealer.cloud/v2 is what sealer wrote before the sealerio move (sealerio/basefs etc/Clusterfile).
_API_VERSIONS = frozenset({API_VERSION, "sealer.cloud/v2"})

_TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
# creationTimestamp: Go's ObjectMeta marshals it (as null) into every Clusterfile sealer writes.
_METADATA_FIELDS = ("name", "creationTimestamp")
_SPEC_FIELDS = (
    "image",
    "env",
    "cmds",
    "cmd",
    "cmd_args",
    "appNames",
    "ssh",
    "hosts",
    "hostAliases",
    "registry",
    "provider",
    "nodeImage",
    "dataRoot",
    "containerRuntime",
    "distribution",
)


def read_cluster(
    reader: NodeReader, node: yaml.MappingNode, documents: tuple[Mapping[str, object], ...]
) -> Cluster:
    """The Cluster of the kind: Cluster document at `node`; `documents` are the file's others."""
    top = reader.mapping(node, "", _TOP_FIELDS)
    version_node = top.get("apiVersion")
    version = reader.string(version_node, "apiVersion") if version_node is not None else None
    if version not in _API_VERSIONS:
        hint = f"write apiVersion: {API_VERSION}"
        if version is not None and version.endswith(("/v1", "/v1alpha1")):
            hint = f"Clusterfile v1 (masters/nodes ipList) is not read; convert it to {API_VERSION} hosts"
        reader.fail(version_node or node, "apiVersion", f"{version!r} is not a Clusterfile version", hint)
    status = top.get("status")
    if status is not None and not reader.is_empty(status):
        reader.fail(status, "status", "must be empty: a Clusterfile states what is wanted")

    name = DEFAULT_CLUSTER_NAME
    if "metadata" in top:
        meta = reader.mapping(top["metadata"], "metadata", _METADATA_FIELDS)
        if "name" in meta:
            name = reader.required_string(meta["name"], "metadata.name")
            reader.check(meta["name"], "metadata.name", lambda: check_cluster_name(name))

    if "spec" not in top:
        reader.fail(node, "spec", "missing", hint="spec holds image and hosts")
    spec_node = top["spec"]
    spec = reader.mapping(spec_node, "spec", _SPEC_FIELDS)

    if "image" not in spec:
        reader.fail(
            spec_node,
            "spec.image",
            "missing",
            hint="the ClusterImage to run, e.g. docker.io/sealerio/kubernetes:v1.22.15",
        )
    image = reader.required_string(spec["image"], "spec.image")
    reader.check(spec["image"], "spec.image", lambda: Reference.parse(image))

    if "cmd" in spec and "cmds" in spec:
        reader.fail(spec["cmd"], "spec.cmd", "give cmd or cmds, not both (they are the same list)")
    cmds_key = "cmd" if "cmd" in spec else "cmds"

    ssh = read_ssh(reader, spec["ssh"], "spec.ssh", SSHSpec()) if "ssh" in spec else SSHSpec()
    if "hosts" not in spec:
        reader.fail(
            spec_node, "spec.hosts", "missing", hint="list the hosts: - {ips: [...], roles: [master]}"
        )
    provider = (
        reader.required_string(spec["provider"], "spec.provider") if "provider" in spec else "BAREMETAL"
    )
    reader.check(spec.get("provider", spec_node), "spec.provider", lambda: check_provider(provider, "", ()))
    hosts = read_hosts(reader, spec["hosts"], ssh, containers=provider == "CONTAINER")
    aliases = read_host_aliases(reader, spec["hostAliases"]) if "hostAliases" in spec else ()
    registry = read_registry(reader, spec["registry"]) if "registry" in spec else RegistrySpec()
    node_image = reader.required_string(spec["nodeImage"], "spec.nodeImage") if "nodeImage" in spec else ""
    data_root = _data_root(reader, spec["dataRoot"]) if "dataRoot" in spec else ""
    distribution = _distribution(reader, spec["distribution"]) if "distribution" in spec else ""
    runtime, runtime_at = (
        _container_runtime(reader, spec["containerRuntime"]) if "containerRuntime" in spec else ("", "")
    )
    try:
        return Cluster(
            name=name,
            image=image,
            hosts=hosts,
            env=reader.env(spec["env"], "spec.env") if "env" in spec else {},
            cmds=reader.strings(spec[cmds_key], f"spec.{cmds_key}") if cmds_key in spec else (),
            cmd_args=reader.strings(spec["cmd_args"], "spec.cmd_args") if "cmd_args" in spec else (),
            app_names=reader.strings(spec["appNames"], "spec.appNames") if "appNames" in spec else (),
            ssh=ssh,
            host_aliases=aliases,
            documents=documents,
            registry=registry,
            provider=provider,
            node_image=node_image,
            data_root=data_root,
            container_runtime=runtime,
            container_runtime_at=runtime_at,
            distribution=distribution,
        )
    except InvalidCluster as err:  # the checks above should have caught it, with a better line
        at = reader.keys.get(id(spec["hosts"])) if err.field == "hosts" else None
        reader.fail(at or spec_node, f"spec.{err.field}" if err.field else "spec", err.message, err.hint)


def _data_root(reader: NodeReader, node: yaml.Node) -> str:
    """sealer's spec.dataRoot; empty (or sealer's default) is the default, kept as ""."""
    text = reader.string(node, "spec.dataRoot") or ""
    return reader.check(node, "spec.dataRoot", partial(check_data_root, text)) if text else ""


def _distribution(reader: NodeReader, node: yaml.Node) -> str:
    """spec.distribution: ssh | fanout | auto (fanout.py), refused at its line otherwise."""
    text = reader.required_string(node, "spec.distribution")
    return reader.check(node, "spec.distribution", partial(check_distribution, text))


def _container_runtime(reader: NodeReader, node: yaml.Node) -> tuple[str, str]:
    """sealer's spec.containerRuntime {type}: the type ("" for the image's) and its line."""
    entry = reader.mapping(node, "spec.containerRuntime", ("type",))
    text = reader.string(entry["type"], "spec.containerRuntime.type") if "type" in entry else None
    if not text:
        return "", ""
    value = reader.check(entry["type"], "spec.containerRuntime.type", partial(check_container_runtime, text))
    return value, f"{reader.path}:{entry['type'].start_mark.line + 1}"
