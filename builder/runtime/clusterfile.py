"""sealer's Clusterfile (apiVersion sealer.io/v2, kind Cluster) and `sealer run` flags -> `Cluster`.

Field names follow sealer's Go types (types/api/v2/cluster_types.go, types/api/v1 `SSH`):
`spec.image`, `spec.env` (a list of `K=V`), `spec.cmd`/`spec.cmds`, `spec.cmd_args`,
`spec.appNames`, `spec.ssh` {user, passwd, pk, pkPasswd, port, encrypted}, `spec.hosts[]`
{ips, roles, ssh, env, labels, taints}, `spec.hostAliases[]` {ip, hostnames}, `spec.registry`
{localRegistry | externalRegistry} (clusterfile_registry.py), `spec.dataRoot`,
`spec.containerRuntime` {type}. This
implementation adds `ssh.{useAgent, knownHosts, verifyHostKeys, proxyJump, connectTimeout}`
and `hosts[].local`. The file's other documents are kept verbatim in `Cluster.documents` when
they are ones this implementation reads (RUNTIME_DOCUMENT_KINDS; Plugin, Config and Application,
checked by clusterfile_plugins.py, clusterfile_configs.py and clusterfile_application.py); any
other kind is refused at its line.

The Cluster document is read from the YAML node tree, strictly: an unknown or repeated field is
an error, and every error reads `FILE:LINE: FIELD.PATH: what is wrong`, with a hint.
`dump_clusterfile` writes what `load_clusterfile` reads back equal (secrets included: the saved
state is written 0600 by its owner).

Longer than ~400 lines on purpose: the reader, the writer and the flags share one table of
field names and must change together for load(dump(c)) == c to hold.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields, replace
from functools import partial
from typing import Any, NoReturn, TypeVar

import yaml

from builder.errors import ClusterError, ClusterfileError, ImageError, InvalidCluster, InvalidEnv, UsageError
from builder.image.reference import Reference
from builder.runtime._bounded_yaml import BoundedLoader, deep_error
from builder.runtime.cluster import (
    DEFAULT_CLUSTER_NAME,
    Cluster,
    HostAlias,
    HostSpec,
    RegistrySpec,
    Role,
    SSHSpec,
    check_cluster_name,
    parse_ip,
    parse_ip_list,
)
from builder.runtime.cluster_addresses import parse_host_ip, placeholder_ip
from builder.runtime.cluster_fields import (
    check_container_runtime,
    check_data_root,
    check_distribution,
    check_provider,
)
from builder.runtime.cluster_hosts import check_label, check_taint
from builder.runtime.clusterfile_application import is_application, read_application
from builder.runtime.clusterfile_configs import is_config, read_config
from builder.runtime.clusterfile_plugins import is_plugin, read_plugin
from builder.runtime.clusterfile_registry import dump_registry, read_registry
from builder.runtime.env import check_env_name, join_env_entries, parse_env_entry
from builder.runtime.hooks import ShellHook

_T = TypeVar("_T")

API_VERSION = "sealer.io/v2"
# sealer.cloud/v2 is what sealer wrote before the sealerio move (sealerio/basefs etc/Clusterfile).
_API_VERSIONS = frozenset({API_VERSION, "sealer.cloud/v2"})
# The other documents a Clusterfile may hold, by API group: the runtimes' own configuration,
# which the runtime plugins merge (kubeadm's, the kubelet's, kube-proxy's, k0s's), and Plugin.
RUNTIME_DOCUMENT_KINDS = {
    "kubeadm.k8s.io": ("InitConfiguration", "ClusterConfiguration", "JoinConfiguration"),
    "kubelet.config.k8s.io": ("KubeletConfiguration",),
    "kubeproxy.config.k8s.io": ("KubeProxyConfiguration",),
    "k0s.k0sproject.io": ("ClusterConfig",),
}
SUPPORTED_DOCUMENTS = (
    "one Cluster (sealer.io/v2), Plugin and Config (sealer.io/v1), one Application (sealer.io/v2) and "
    + ", ".join(f"{'/'.join(kinds)} ({group}/*)" for group, kinds in RUNTIME_DOCUMENT_KINDS.items())
)

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
MAX_CONTAINERS_PER_ENTRY = 64  # a laptop's or a CI runner's worth of containers
_HOST_FIELDS = ("ips", "roles", "ssh", "env", "labels", "taints", "local", "count")
# Clusterfile key -> SSHSpec field.
_SSH_KEYS = {
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
_SSH_FIELDS = (*_SSH_KEYS, "encrypted")

# Read whole and parsed by pure-Python YAML (~2 s a MiB): the cap bounds both.
MAX_CLUSTERFILE_BYTES = 4 << 20

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


# --- reading -----------------------------------------------------------------------------------


def is_runtime_document(doc: Mapping[str, object]) -> bool:
    """A document of a runtime's own configuration (RUNTIME_DOCUMENT_KINDS)."""
    group = str(doc.get("apiVersion", "")).partition("/")[0]
    return doc.get("kind") in RUNTIME_DOCUMENT_KINDS.get(group, ())


def load_clusterfile(path: str | os.PathLike[str]) -> Cluster:
    """Read and check the Clusterfile at `path`; ClusterfileError names file, line and field.
    At most MAX_CLUSTERFILE_BYTES are read."""
    where = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO without a writer must not hang the open; only files are read.
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ClusterfileError(f"{where}: not a regular file, so not a Clusterfile", path=where)
            data = f.read(MAX_CLUSTERFILE_BYTES + 1)
        if len(data) > MAX_CLUSTERFILE_BYTES:
            raise _too_large(where)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ClusterfileError(f"{where}: cannot read the Clusterfile: {err}", path=where) from None
    return parse_clusterfile(text, path=where)


def parse_clusterfile(text: str, *, path: str = "Clusterfile") -> Cluster:
    """`load_clusterfile` on text already read; `path` is only used in messages."""
    if (
        len(text) > MAX_CLUSTERFILE_BYTES
        or len(text.encode("utf-8", "surrogatepass")) > MAX_CLUSTERFILE_BYTES
    ):
        raise _too_large(path)
    return _Reader(path).read(text)


def parse_plugin_file(text: str, *, path: str) -> tuple[ShellHook, ...]:
    """The Plugin documents of an image's `plugins/*.yaml` file (`path`, in messages), checked
    as strictly as a Clusterfile's; a document of another kind is an error at its line."""
    return _Reader(path).plugins(text)


def _too_large(path: str) -> ClusterfileError:
    return ClusterfileError(
        f"{path}: larger than {MAX_CLUSTERFILE_BYTES >> 20} MiB, the most a Clusterfile may be",
        path=path,
        hint="a Clusterfile of 5000 hosts is ~100 kB: drop generated bulk, or split the cluster",
    )


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.application_seen = False
        self.keys: dict[int, yaml.Node] = {}  # id(value node) -> its key node, for whole-field errors

    def fail(self, node: yaml.Node | None, where: str, message: str, hint: str | None = None) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else 1
        prefix = f"{where}: " if where else ""
        raise ClusterfileError(f"{self.path}:{line}: {prefix}{message}", path=self.path, line=line, hint=hint)

    # -- documents --

    def nodes(
        self, text: str, *, raw: Callable[[yaml.Node], bool] = lambda _: False
    ) -> Iterator[tuple[int, yaml.Node, object]]:
        """Each document's number (from 1), node and data (None for an empty document, and
        for a node `raw` keeps unconstructed, which the caller reads from the node tree); YAML
        errors become a ClusterfileError at their line."""
        loader = BoundedLoader(text, path=self.path)
        try:
            number = 0
            while loader.check_node():
                node = loader.get_node()
                number += 1
                if node is not None:
                    yield number, node, None if raw(node) else loader.construct_document(node)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line = mark.line + 1 if mark is not None else 1
            if err.problem == "exceeded maximum nesting depth":  # libyaml's own cap (1000), past ours
                raise deep_error(self.path, line) from None
            raise ClusterfileError(
                f"{self.path}:{line}: invalid YAML: {err.problem or err.context}", path=self.path, line=line
            ) from None
        except yaml.YAMLError as err:
            raise ClusterfileError(f"{self.path}: invalid YAML: {err}", path=self.path) from None
        finally:
            loader.dispose()

    def read(self, text: str) -> Cluster:
        cluster_node: yaml.MappingNode | None = None
        documents: list[Mapping[str, object]] = []
        for number, node, data in self.nodes(text, raw=self._is_cluster):
            if self._is_cluster(node):
                if cluster_node is not None:
                    self.fail(node, f"document {number}", "a second kind: Cluster document")
                assert isinstance(node, yaml.MappingNode)
                cluster_node = node
            elif data is not None:
                documents.append(self._document(node, data, number))
        if cluster_node is None:
            self.fail(
                None,
                "",
                "no kind: Cluster document",
                hint=f"the file needs a document with apiVersion: {API_VERSION} and kind: Cluster",
            )
        return self._cluster(cluster_node, tuple(documents))

    def plugins(self, text: str) -> tuple[ShellHook, ...]:
        hooks: list[ShellHook] = []
        for number, node, data in self.nodes(text):
            if data is None:
                continue
            where = f"document {number}"
            if not isinstance(data, dict) or not is_plugin(data):
                self.fail(
                    node, where, "expected a kind: Plugin document", hint="plugins/*.yaml hold Plugins only"
                )
            hooks.append(read_plugin(self, node, where, f"{self.path}:{node.start_mark.line + 1}"))
        return tuple(hooks)

    def _is_cluster(self, node: yaml.Node) -> bool:
        if not isinstance(node, yaml.MappingNode):
            return False
        return any(
            isinstance(k, yaml.ScalarNode) and k.value == "kind" and v.value == "Cluster"
            for k, v in node.value
        )

    def _document(self, node: yaml.Node, data: object, number: int) -> Mapping[str, object]:
        where = f"document {number}"
        if not isinstance(data, dict):
            self.fail(node, where, "expected a mapping with apiVersion and kind")
        for key in ("apiVersion", "kind"):
            if not isinstance(data.get(key), str) or not data[key]:
                self.fail(
                    node, where, f"missing {key}", hint="every document of a Clusterfile names its kind"
                )
        source = f"{self.path}:{node.start_mark.line + 1}"
        if is_plugin(data):
            read_plugin(self, node, where, source)
        elif is_config(data):
            read_config(self, node, where, source)
        elif is_application(data):
            if self.application_seen:
                self.fail(
                    node,
                    where,
                    "a second kind: Application document",
                    hint="one Application says what launches",
                )
            self.application_seen = True
            read_application(self, node, where, source)
        elif not is_runtime_document(data):
            self.fail(
                node,
                "",
                f"kind {data['kind']} (apiVersion {data['apiVersion']}) is not supported",
                hint=f"a Clusterfile holds {SUPPORTED_DOCUMENTS}",
            )
        return data

    # -- the Cluster document --

    def _cluster(self, node: yaml.MappingNode, documents: tuple[Mapping[str, object], ...]) -> Cluster:
        top = self.mapping(node, "", _TOP_FIELDS)
        version_node = top.get("apiVersion")
        version = self.string(version_node, "apiVersion") if version_node is not None else None
        if version not in _API_VERSIONS:
            hint = f"write apiVersion: {API_VERSION}"
            if version is not None and version.endswith(("/v1", "/v1alpha1")):
                hint = f"Clusterfile v1 (masters/nodes ipList) is not read; convert it to {API_VERSION} hosts"
            self.fail(version_node or node, "apiVersion", f"{version!r} is not a Clusterfile version", hint)
        status = top.get("status")
        if status is not None and not self._is_empty(status):
            self.fail(status, "status", "must be empty: a Clusterfile states what is wanted")

        name = DEFAULT_CLUSTER_NAME
        if "metadata" in top:
            meta = self.mapping(top["metadata"], "metadata", _METADATA_FIELDS)
            if "name" in meta:
                name = self.required_string(meta["name"], "metadata.name")
                self.check(meta["name"], "metadata.name", lambda: check_cluster_name(name))

        if "spec" not in top:
            self.fail(node, "spec", "missing", hint="spec holds image and hosts")
        spec_node = top["spec"]
        spec = self.mapping(spec_node, "spec", _SPEC_FIELDS)

        if "image" not in spec:
            self.fail(
                spec_node,
                "spec.image",
                "missing",
                hint="the ClusterImage to run, e.g. docker.io/sealerio/kubernetes:v1.22.15",
            )
        image = self.required_string(spec["image"], "spec.image")
        self.check(spec["image"], "spec.image", lambda: Reference.parse(image))

        if "cmd" in spec and "cmds" in spec:
            self.fail(spec["cmd"], "spec.cmd", "give cmd or cmds, not both (they are the same list)")
        cmds_key = "cmd" if "cmd" in spec else "cmds"

        ssh = self.ssh(spec["ssh"], "spec.ssh", SSHSpec()) if "ssh" in spec else SSHSpec()
        if "hosts" not in spec:
            self.fail(
                spec_node, "spec.hosts", "missing", hint="list the hosts: - {ips: [...], roles: [master]}"
            )
        provider = (
            self.required_string(spec["provider"], "spec.provider") if "provider" in spec else "BAREMETAL"
        )
        self.check(spec.get("provider", spec_node), "spec.provider", lambda: check_provider(provider, "", ()))
        hosts = self.hosts(spec["hosts"], ssh, containers=provider == "CONTAINER")
        aliases = self.host_aliases(spec["hostAliases"]) if "hostAliases" in spec else ()
        registry = read_registry(self, spec["registry"]) if "registry" in spec else RegistrySpec()
        node_image = self.required_string(spec["nodeImage"], "spec.nodeImage") if "nodeImage" in spec else ""
        data_root = self.data_root(spec["dataRoot"]) if "dataRoot" in spec else ""
        distribution = self.distribution(spec["distribution"]) if "distribution" in spec else ""
        runtime, runtime_at = (
            self.container_runtime(spec["containerRuntime"]) if "containerRuntime" in spec else ("", "")
        )
        try:
            return Cluster(
                name=name,
                image=image,
                hosts=hosts,
                env=self.env(spec["env"], "spec.env") if "env" in spec else {},
                cmds=self.strings(spec[cmds_key], f"spec.{cmds_key}") if cmds_key in spec else (),
                cmd_args=self.strings(spec["cmd_args"], "spec.cmd_args") if "cmd_args" in spec else (),
                app_names=self.strings(spec["appNames"], "spec.appNames") if "appNames" in spec else (),
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
            at = self.keys.get(id(spec["hosts"])) if err.field == "hosts" else None
            self.fail(at or spec_node, f"spec.{err.field}" if err.field else "spec", err.message, err.hint)

    def hosts(self, node: yaml.Node, ssh: SSHSpec, *, containers: bool = False) -> tuple[HostSpec, ...]:
        items = self.sequence(node, "spec.hosts")
        hosts: list[HostSpec] = []
        first_seen: dict[str, tuple[str, Role]] = {}
        family: int | None = None
        local_at: str | None = None
        for i, item in enumerate(items):
            where = f"spec.hosts[{i}]"
            entry = self.mapping(item, where, _HOST_FIELDS)
            for key in ("roles",) if "count" in entry else ("ips", "roles"):
                if key not in entry:
                    self.fail(item, f"{where}.{key}", "missing")
            role_nodes = self.sequence(entry["roles"], f"{where}.roles")
            roles = [self.role(r, f"{where}.roles[{j}]") for j, r in enumerate(role_nodes)]
            if len(roles) != 1:
                self.fail(
                    entry["roles"], f"{where}.roles", f"needs exactly one of master, node; has {len(roles)}"
                )
            role = roles[0]
            host_ssh = self.ssh(entry["ssh"], f"{where}.ssh", ssh) if "ssh" in entry else ssh
            env = self.env(entry["env"], f"{where}.env") if "env" in entry else {}
            labels = self.labels(entry["labels"], f"{where}.labels") if "labels" in entry else {}
            taints = self.taints(entry["taints"], f"{where}.taints") if "taints" in entry else ()
            local = self.boolean(entry["local"], f"{where}.local") if "local" in entry else False
            if "count" in entry:  # containers to make: placeholders until they exist
                for _ in range(self.count(entry, where, containers)):
                    hosts.append(HostSpec(placeholder_ip(len(hosts)), (role,), host_ssh, env, labels, taints))
                continue
            ip_nodes = self.sequence(entry["ips"], f"{where}.ips")
            if not ip_nodes:
                self.fail(entry["ips"], f"{where}.ips", "is empty")
            for j, ip_node in enumerate(ip_nodes):
                ip_where = f"{where}.ips[{j}]"
                raw = self.required_string(ip_node, ip_where)
                ip = self.check(
                    ip_node,
                    ip_where,
                    partial(parse_host_ip, raw),
                    hint="one address per item; ranges are for --masters/--nodes",
                )
                if ip in first_seen:
                    other, other_role = first_seen[ip]
                    what = "is both a master and a node" if other_role is not role else "is listed twice"
                    self.fail(ip_node, ip_where, f"{ip} {what} (also at {other})")
                first_seen[ip] = (ip_where, role)
                version = 6 if ":" in ip else 4
                if family is not None and version != family:
                    self.fail(ip_node, ip_where, f"{ip}: all hosts must be IPv4 or all IPv6, not a mix")
                family = version
                if local:
                    if local_at is not None:
                        self.fail(
                            entry["local"],
                            f"{where}.local",
                            f"only one host can be the local machine (also {local_at})",
                        )
                    local_at = ip_where
                hosts.append(HostSpec(ip, (role,), host_ssh, env, labels, taints, local))
        if not any(h.role is Role.MASTER for h in hosts):
            self.fail(
                self.keys.get(id(node), node),
                "spec.hosts",
                "no host has role master",
                hint="the first master is master0, where the cluster starts",
            )
        return tuple(hosts)

    def data_root(self, node: yaml.Node) -> str:
        """sealer's spec.dataRoot; empty (or sealer's default) is the default, kept as ""."""
        text = self.string(node, "spec.dataRoot") or ""
        return self.check(node, "spec.dataRoot", partial(check_data_root, text)) if text else ""

    def distribution(self, node: yaml.Node) -> str:
        """spec.distribution: ssh | fanout | auto (fanout.py), refused at its line otherwise."""
        text = self.required_string(node, "spec.distribution")
        return self.check(node, "spec.distribution", partial(check_distribution, text))

    def container_runtime(self, node: yaml.Node) -> tuple[str, str]:
        """sealer's spec.containerRuntime {type}: the type ("" for the image's) and its line."""
        entry = self.mapping(node, "spec.containerRuntime", ("type",))
        text = self.string(entry["type"], "spec.containerRuntime.type") if "type" in entry else None
        if not text:
            return "", ""
        value = self.check(
            entry["type"], "spec.containerRuntime.type", partial(check_container_runtime, text)
        )
        return value, f"{self.path}:{entry['type'].start_mark.line + 1}"

    def count(self, entry: dict[str, yaml.Node], where: str, containers: bool) -> int:
        """hosts[].count: how many containers of this entry a CONTAINER cluster has."""
        node = entry["count"]
        if not containers:
            self.fail(node, f"{where}.count", "is for spec.provider: CONTAINER", hint="list SSH hosts by ips")
        if "ips" in entry:
            self.fail(node, f"{where}.count", "give ips or count, not both")
        text = self.required_string(node, f"{where}.count")
        if not text.isdigit() or not 1 <= int(text) <= MAX_CONTAINERS_PER_ENTRY:
            self.fail(node, f"{where}.count", f"{text!r} is not a count from 1 to {MAX_CONTAINERS_PER_ENTRY}")
        return int(text)

    def role(self, node: yaml.Node, where: str) -> Role:
        text = self.required_string(node, where)
        return self.check(node, where, lambda: Role.parse(text))

    def ssh(self, node: yaml.Node, where: str, base: SSHSpec) -> SSHSpec:
        """`base` overlaid with the fields set here; empty values inherit, as sealer's mergo.Merge."""
        entry = self.mapping(node, where, _SSH_FIELDS)
        changes: dict[str, Any] = {}
        for key, value_node in entry.items():
            field_where = f"{where}.{key}"
            if self._is_null(value_node):
                continue
            if key == "encrypted":
                if self.boolean(value_node, field_where):
                    self.fail(
                        value_node,
                        field_where,
                        "sealer-encrypted passwords are not supported",
                        hint="give the plain password; the saved state is 0600",
                    )
                continue
            target = _SSH_KEYS[key]
            if target in ("use_agent", "verify_host_keys"):
                changes[target] = self.boolean(value_node, field_where)
            elif target == "port":
                changes[target] = self.port(value_node, field_where)
            elif target == "connect_timeout_s":
                changes[target] = self.seconds(value_node, field_where)
            elif target == "key_files":
                many = isinstance(value_node, yaml.SequenceNode)
                keys = []
                for j, item in enumerate(value_node.value if many else [value_node]):
                    item_where = f"{field_where}[{j}]" if many else field_where
                    key = self.required_string(item, item_where)
                    keys.append(self.check(item, item_where, partial(check_ssh_file, key, "private key")))
                changes[target] = tuple(keys)
            else:
                value = self.required_string(value_node, field_where)
                if value == "":
                    continue  # empty inherits, as in sealer
                if target == "known_hosts":
                    self.check(value_node, field_where, partial(check_ssh_file, value, "known_hosts file"))
                changes[target] = value
        return self.check(node, where, lambda: replace(base, **changes))

    def port(self, node: yaml.Node, where: str) -> int:
        text = self.required_string(node, where)
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            self.fail(node, where, f"{text!r} is not a port number (1-65535)")
        return int(text)

    def seconds(self, node: yaml.Node, where: str) -> float:
        text = self.required_string(node, where)
        try:
            value = float(text)
        except ValueError:
            self.fail(node, where, f"{text!r} is not a number of seconds")
        if not value > 0:
            self.fail(node, where, "must be more than 0 seconds")
        return int(value) if value.is_integer() else value

    def env(self, node: yaml.Node, where: str) -> dict[str, str]:
        pairs = []
        for i, item in enumerate(
            self.sequence(node, where, hint="env is a list of KEY=VALUE strings, as in sealer")
        ):
            entry = self.required_string(item, f"{where}[{i}]")
            pairs.append(self.check(item, f"{where}[{i}]", partial(parse_env_entry, entry)))
        return join_env_entries(pairs)

    def labels(self, node: yaml.Node, where: str) -> dict[str, str]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, where, "expected a mapping of label: value")
        out: dict[str, str] = {}
        for key_node, value_node in node.value:
            key = self.required_string(key_node, where)
            if key in out:
                self.fail(key_node, f"{where}.{key}", "is given twice")
            value = "" if self._is_null(value_node) else self.required_string(value_node, f"{where}.{key}")
            out[key] = self.check(key_node, f"{where}.{key}", partial(check_label, key, value))[1]
        return out

    def taints(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        out = []
        for i, item in enumerate(self.sequence(node, where)):
            taint = self.required_string(item, f"{where}[{i}]")
            out.append(self.check(item, f"{where}[{i}]", partial(check_taint, taint)))
        return tuple(out)

    def host_aliases(self, node: yaml.Node) -> tuple[HostAlias, ...]:
        out = []
        for i, item in enumerate(self.sequence(node, "spec.hostAliases")):
            where = f"spec.hostAliases[{i}]"
            entry = self.mapping(item, where, ("ip", "hostnames"))
            for key in ("ip", "hostnames"):
                if key not in entry:
                    self.fail(item, f"{where}.{key}", "missing")
            ip = self.required_string(entry["ip"], f"{where}.ip")
            names = self.strings(entry["hostnames"], f"{where}.hostnames")
            out.append(self.check(item, where, partial(HostAlias, ip, names)))
        return tuple(out)

    # -- primitives --

    def check(self, node: yaml.Node, where: str, make: Callable[[], _T], hint: str | None = None) -> _T:
        """Run `make()`; a model error becomes a ClusterfileError at `node`."""
        try:
            return make()
        except (InvalidCluster, InvalidEnv, ImageError) as err:
            self.fail(node, where, err.message, err.hint or hint)

    def mapping(self, node: yaml.Node, where: str, allowed: Sequence[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, where or "document", "expected a mapping")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            field_where = f"{where}.{key}" if where else str(key)
            if not isinstance(key, str) or key not in allowed:
                self.fail(
                    key_node,
                    field_where,
                    "unknown field",
                    hint=f"fields here: {', '.join(allowed)}",
                )
            if key in out:
                self.fail(key_node, field_where, "is given twice")
            out[key] = value_node
            self.keys[id(value_node)] = key_node
        return out

    def sequence(self, node: yaml.Node, where: str, hint: str | None = None) -> list[yaml.Node]:
        if self._is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, where, "expected a list", hint)
        return list(node.value)

    def strings(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        return tuple(
            self.required_string(item, f"{where}[{i}]") for i, item in enumerate(self.sequence(node, where))
        )

    def string(self, node: yaml.Node, where: str) -> str | None:
        if self._is_null(node):
            return None
        return self.required_string(node, where)

    def required_string(self, node: yaml.Node, where: str) -> str:
        # The raw scalar text: `passwd: 123456` or `port: 22` mean those characters.
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            self.fail(node, where, "expected a string")
        return str(node.value)

    def boolean(self, node: yaml.Node, where: str) -> bool:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
            self.fail(node, where, "expected true or false")
        return str(node.value).lower() in ("true", "yes", "on", "y")

    def _is_null(self, node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == _NULL

    def _is_empty(self, node: yaml.Node) -> bool:
        return self._is_null(node) or (
            isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.value
        )


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


# --- writing -----------------------------------------------------------------------------------


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
    names = {f: k for k, f in _SSH_KEYS.items()}
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


# --- flags -------------------------------------------------------------------------------------


def cluster_from_flags(
    image: str,
    masters: str | None = None,
    nodes: str | None = None,
    *,
    password: str | None = None,
    key_file: str | None = None,
    passphrase: str | None = None,
    port: int | None = None,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    cmds: Sequence[str] = (),
    cmd_args: Sequence[str] = (),
    name: str = DEFAULT_CLUSTER_NAME,
    local_ip: str = "127.0.0.1",
) -> Cluster:
    """The cluster of `sealer run IMAGE [--masters IPS] [--nodes IPS] ...`; UsageError names the flag.

    `masters`/`nodes` take lists and `a-b` ranges (`parse_ip_list`). With no masters the local
    machine (`local_ip`, `local=True`) is the single master and is reached without SSH. `env`
    (from `env.parse_env_args`) becomes the cluster env: with flags there is no host env, so
    the precedence is the same as passing it again as the `-e` layer.
    """

    def flag(name_: str, make: Callable[[], _T]) -> _T:
        try:
            return make()
        except (InvalidCluster, InvalidEnv, ImageError) as err:
            raise UsageError(f"{name_}: {err.message}", hint=err.hint) from None

    flag("IMAGE", lambda: Reference.parse(image))
    if key_file:
        flag("--pk", partial(check_ssh_file, key_file, "private key"))
    flag("--cluster", lambda: check_cluster_name(name))
    cluster_env = dict(env or {})
    for key in cluster_env:
        flag("-e", partial(check_env_name, key))
    ssh = flag(
        "--port",
        lambda: SSHSpec(
            user=user,
            port=port,
            password=password or None,
            key_files=(key_file,) if key_file else (),
            passphrase=passphrase or None,
        ),
    )
    master_ips = flag("--masters", lambda: parse_ip_list(masters)) if masters else ()
    node_ips = flag("--nodes", lambda: parse_ip_list(nodes)) if nodes else ()
    if not master_ips:
        if node_ips:
            raise UsageError("--nodes needs --masters", hint="give the master addresses too")
        master_ips = (flag("local address", lambda: parse_ip(local_ip)),)
        local = True
    else:
        local = False
    both = sorted(set(master_ips) & set(node_ips))
    if both:
        raise UsageError(
            f"--nodes: {both[0]} is also in --masters", hint="a host is a master or a node, not both"
        )
    hosts = tuple(HostSpec(ip, (Role.MASTER,), ssh, local=local) for ip in master_ips) + tuple(
        HostSpec(ip, (Role.NODE,), ssh) for ip in node_ips
    )
    return flag(
        "--masters",
        lambda: Cluster(
            name=name,
            image=image,
            hosts=hosts,
            env=cluster_env,
            cmds=tuple(cmds),
            cmd_args=tuple(cmd_args),
            ssh=ssh,
        ),
    )
