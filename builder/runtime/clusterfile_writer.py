"""A `Cluster` written back as a Clusterfile (`dump_clusterfile`): what `load_clusterfile`
reads back equal, secrets included (the saved state is written 0600 by its owner). The field
names are the readers' (clusterfile_cluster.py, clusterfile_hosts.py's `SSH_KEYS`,
clusterfile_registry.py's `dump_registry`): they change together for load(dump(c)) == c to hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import yaml

from builder.errors import ClusterError
from builder.runtime.cluster import Cluster, SSHSpec
from builder.runtime.clusterfile_cluster import API_VERSION
from builder.runtime.clusterfile_hosts import SSH_KEYS
from builder.runtime.clusterfile_registry import dump_registry


def dump_clusterfile(cluster: Cluster) -> str:
    """The Clusterfile of `cluster`: the Cluster document, then its other documents.

    Hosts sharing role, SSH overrides, env, labels and taints, and adjacent in host order, share
    one `hosts` entry. A host cannot unset an SSH secret the cluster sets (sealer merges empty
    fields from the cluster), so such a cluster is refused rather than written wrong.
    """
    spec: dict[str, Any] = {"image": cluster.image}
    if cluster.env:
        spec["env"] = _env_list(cluster.env)
    if cluster.cmds:
        spec["cmds"] = list(cluster.cmds)
    if cluster.cmd_args:
        spec["cmd_args"] = list(cluster.cmd_args)
    if cluster.app_names:
        spec["appNames"] = list(cluster.app_names)
    ssh = _ssh_map(cluster.ssh, SSHSpec())
    if ssh:
        spec["ssh"] = ssh
    groups: list[dict[str, Any]] = []
    last_key: object = None
    for host in cluster.hosts:
        entry: dict[str, Any] = {"roles": [str(r) for r in host.roles]}
        overrides = _ssh_map(host.ssh, cluster.ssh, host=host.ip)
        if overrides:
            entry["ssh"] = overrides
        if host.env:
            entry["env"] = _env_list(host.env)
        if host.labels:
            entry["labels"] = dict(host.labels)
        if host.taints:
            entry["taints"] = list(host.taints)
        if host.local:
            entry["local"] = True
        key = repr(entry)
        if key == last_key:
            groups[-1]["ips"].append(host.ip)
            continue
        groups.append({"ips": [host.ip], **entry})
        last_key = key
    spec["hosts"] = groups
    if cluster.host_aliases:
        spec["hostAliases"] = [{"ip": a.ip, "hostnames": list(a.hostnames)} for a in cluster.host_aliases]
    registry = dump_registry(cluster.registry)
    if registry is not None:
        spec["registry"] = registry
    if cluster.provider != "BAREMETAL":
        spec["provider"] = cluster.provider
    if cluster.node_image:
        spec["nodeImage"] = cluster.node_image
    if cluster.data_root:
        spec["dataRoot"] = cluster.data_root
    if cluster.distribution:
        spec["distribution"] = cluster.distribution
    if cluster.container_runtime:
        spec["containerRuntime"] = {"type": cluster.container_runtime}
    doc = {"apiVersion": API_VERSION, "kind": "Cluster", "metadata": {"name": cluster.name}, "spec": spec}
    return yaml.safe_dump_all(
        [doc, *(dict(d) for d in cluster.documents)],
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
    )


def _env_list(env: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in env.items()]


def _ssh_map(ssh: SSHSpec, base: SSHSpec, *, host: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = {f: k for k, f in SSH_KEYS.items()}
    for f in fields(SSHSpec):
        value, inherited = getattr(ssh, f.name), getattr(base, f.name)
        if value == inherited:
            continue
        if value is None or value == ():
            if host is not None:
                raise ClusterError(
                    f"host {host} unsets ssh {names[f.name]}, which the cluster sets; a Clusterfile cannot say that",
                    hint="set it per host instead of cluster-wide",
                )
            continue
        if f.name == "port":
            value = str(value)  # sealer's v1.SSH.Port is a string
        elif f.name == "key_files":
            value = value[0] if len(value) == 1 else list(value)
        elif f.name == "connect_timeout_s" and float(value).is_integer():
            value = int(value)
        out[names[f.name]] = value
    return out
