"""The hosts of a Clusterfile's Cluster document: `spec.ssh` and `hosts[].ssh` (sealer's
`v1.SSH`, with this implementation's useAgent, knownHosts, verifyHostKeys, proxyJump and
connectTimeout), `spec.hosts[]` {ips, roles, ssh, env, labels, taints, local, count} and
`spec.hostAliases[]`, read strictly with the file's NodeReader (errors at their line).
clusterfile_cluster.py calls these; clusterfile_writer.py writes `SSH_KEYS` back.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from functools import partial
from typing import Any

import yaml

from builder.errors import InvalidCluster
from builder.runtime.cluster_addresses import parse_host_ip, placeholder_ip
from builder.runtime.cluster_hosts import HostAlias, HostSpec, Role, SSHSpec, check_label, check_taint
from builder.runtime.clusterfile_reader import NodeReader

MAX_CONTAINERS_PER_ENTRY = 64  # a laptop's or a CI runner's worth of containers
_HOST_FIELDS = ("ips", "roles", "ssh", "env", "labels", "taints", "local", "count")
# Clusterfile key -> SSHSpec field.
SSH_KEYS = {
    "user": "user",
    "passwd": "password",
    "pk": "key_files",
    "pkPasswd": "passphrase",
    "port": "port",
    "useAgent": "use_agent",
    "knownHosts": "known_hosts",
    "verifyHostKeys": "verify_host_keys",
    "proxyJump": "proxy_jump",
    "connectTimeout": "connect_timeout_s",
}
_SSH_FIELDS = (*SSH_KEYS, "encrypted")


def read_hosts(
    reader: NodeReader, node: yaml.Node, ssh: SSHSpec, *, containers: bool = False
) -> tuple[HostSpec, ...]:
    items = reader.sequence(node, "spec.hosts")
    hosts: list[HostSpec] = []
    first_seen: dict[str, tuple[str, Role]] = {}
    family: int | None = None
    local_at: str | None = None
    for i, item in enumerate(items):
        where = f"spec.hosts[{i}]"
        entry = reader.mapping(item, where, _HOST_FIELDS)
        for key in ("roles",) if "count" in entry else ("ips", "roles"):
            if key not in entry:
                reader.fail(item, f"{where}.{key}", "missing")
        role_nodes = reader.sequence(entry["roles"], f"{where}.roles")
        roles = [_role(reader, r, f"{where}.roles[{j}]") for j, r in enumerate(role_nodes)]
        if len(roles) != 1:
            reader.fail(
                entry["roles"], f"{where}.roles", f"needs exactly one of master, node; has {len(roles)}"
            )
        role = roles[0]
        host_ssh = read_ssh(reader, entry["ssh"], f"{where}.ssh", ssh) if "ssh" in entry else ssh
        env = reader.env(entry["env"], f"{where}.env") if "env" in entry else {}
        labels = _labels(reader, entry["labels"], f"{where}.labels") if "labels" in entry else {}
        taints = _taints(reader, entry["taints"], f"{where}.taints") if "taints" in entry else ()
        local = reader.boolean(entry["local"], f"{where}.local") if "local" in entry else False
        if "count" in entry:  # containers to make: placeholders until they exist
            for _ in range(_count(reader, entry, where, containers)):
                hosts.append(HostSpec(placeholder_ip(len(hosts)), (role,), host_ssh, env, labels, taints))
            continue
        ip_nodes = reader.sequence(entry["ips"], f"{where}.ips")
        if not ip_nodes:
            reader.fail(entry["ips"], f"{where}.ips", "is empty")
        for j, ip_node in enumerate(ip_nodes):
            ip_where = f"{where}.ips[{j}]"
            raw = reader.required_string(ip_node, ip_where)
            ip = reader.check(
                ip_node,
                ip_where,
                partial(parse_host_ip, raw),
                hint="one address per item; ranges are for --masters/--nodes",
            )
            if ip in first_seen:
                other, other_role = first_seen[ip]
                what = "is both a master and a node" if other_role is not role else "is listed twice"
                reader.fail(ip_node, ip_where, f"{ip} {what} (also at {other})")
            first_seen[ip] = (ip_where, role)
            version = 6 if ":" in ip else 4
            if family is not None and version != family:
                reader.fail(ip_node, ip_where, f"{ip}: all hosts must be IPv4 or all IPv6, not a mix")
            family = version
            if local:
                if local_at is not None:
                    reader.fail(
                        entry["local"],
                        f"{where}.local",
                        f"only one host can be the local machine (also {local_at})",
                    )
                local_at = ip_where
            hosts.append(HostSpec(ip, (role,), host_ssh, env, labels, taints, local))
    if not any(h.role is Role.MASTER for h in hosts):
        reader.fail(
            reader.keys.get(id(node), node),
            "spec.hosts",
            "no host has role master",
            hint="the first master is master0, where the cluster starts",
        )
    return tuple(hosts)


def _count(reader: NodeReader, entry: dict[str, yaml.Node], where: str, containers: bool) -> int:
    """hosts[].count: how many containers of this entry a CONTAINER cluster has."""
    node = entry["count"]
    if not containers:
        reader.fail(node, f"{where}.count", "is for spec.provider: CONTAINER", hint="list SSH hosts by ips")
    if "ips" in entry:
        reader.fail(node, f"{where}.count", "give ips or count, not both")
    text = reader.required_string(node, f"{where}.count")
    if not text.isdigit() or not 1 <= int(text) <= MAX_CONTAINERS_PER_ENTRY:
        reader.fail(node, f"{where}.count", f"{text!r} is not a count from 1 to {MAX_CONTAINERS_PER_ENTRY}")
    return int(text)


def _role(reader: NodeReader, node: yaml.Node, where: str) -> Role:
    text = reader.required_string(node, where)
    return reader.check(node, where, lambda: Role.parse(text))


def read_ssh(reader: NodeReader, node: yaml.Node, where: str, base: SSHSpec) -> SSHSpec:
    """`base` overlaid with the fields set here; empty values inherit, as sealer's mergo.Merge."""
    entry = reader.mapping(node, where, _SSH_FIELDS)
    changes: dict[str, Any] = {}
    for key, value_node in entry.items():
        field_where = f"{where}.{key}"
        if reader.is_null(value_node):
            continue
        if key == "encrypted":
            if reader.boolean(value_node, field_where):
                reader.fail(
                    value_node,
                    field_where,
                    "sealer-encrypted passwords are not supported",
                    hint="give the plain password; the saved state is 0600",
                )
            continue
        target = SSH_KEYS[key]
        if target in ("use_agent", "verify_host_keys"):
            changes[target] = reader.boolean(value_node, field_where)
        elif target == "port":
            changes[target] = reader.port(value_node, field_where)
        elif target == "connect_timeout_s":
            changes[target] = reader.seconds(value_node, field_where)
        elif target == "key_files":
            many = isinstance(value_node, yaml.SequenceNode)
            keys = []
            for j, item in enumerate(value_node.value if many else [value_node]):
                item_where = f"{field_where}[{j}]" if many else field_where
                key = reader.required_string(item, item_where)
                keys.append(reader.check(item, item_where, partial(check_ssh_file, key, "private key")))
            changes[target] = tuple(keys)
        else:
            value = reader.required_string(value_node, field_where)
            if value == "":
                continue  # empty inherits, as in sealer
            if target == "known_hosts":
                reader.check(value_node, field_where, partial(check_ssh_file, value, "known_hosts file"))
            changes[target] = value
    return reader.check(node, where, lambda: replace(base, **changes))


def _labels(reader: NodeReader, node: yaml.Node, where: str) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode):
        reader.fail(node, where, "expected a mapping of label: value")
    out: dict[str, str] = {}
    for key_node, value_node in node.value:
        key = reader.required_string(key_node, where)
        if key in out:
            reader.fail(key_node, f"{where}.{key}", "is given twice")
        value = "" if reader.is_null(value_node) else reader.required_string(value_node, f"{where}.{key}")
        out[key] = reader.check(key_node, f"{where}.{key}", partial(check_label, key, value))[1]
    return out


def _taints(reader: NodeReader, node: yaml.Node, where: str) -> tuple[str, ...]:
    out = []
    for i, item in enumerate(reader.sequence(node, where)):
        taint = reader.required_string(item, f"{where}[{i}]")
        out.append(reader.check(item, f"{where}[{i}]", partial(check_taint, taint)))
    return tuple(out)


def read_host_aliases(reader: NodeReader, node: yaml.Node) -> tuple[HostAlias, ...]:
    out = []
    for i, item in enumerate(reader.sequence(node, "spec.hostAliases")):
        where = f"spec.hostAliases[{i}]"
        entry = reader.mapping(item, where, ("ip", "hostnames"))
        for key in ("ip", "hostnames"):
            if key not in entry:
                reader.fail(item, f"{where}.{key}", "missing")
        ip = reader.required_string(entry["ip"], f"{where}.ip")
        names = reader.strings(entry["hostnames"], f"{where}.hostnames")
        out.append(reader.check(item, where, partial(HostAlias, ip, names)))
    return tuple(out)


def check_ssh_file(path: str, what: str) -> str:
    """`path` unless it names something that is not a regular file (a directory, a device, a
    FIFO): the SSH driver would fail on it at connect time, after the plan, or read forever.
    A file that does not exist yet is left to the driver, which names it."""
    try:
        mode = os.stat(os.path.expanduser(path)).st_mode
    except OSError:
        return path
    if stat.S_ISDIR(mode):
        raise InvalidCluster(f"{path} is a directory, not a {what}", hint=f"name the {what} file itself")
    if not stat.S_ISREG(mode):
        raise InvalidCluster(
            f"{path} is not a regular file, so not a {what}", hint=f"name the {what} file itself"
        )
    return path
