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

Here: reading a file (bounded) and sorting its documents by kind. The parts live beside it:
clusterfile_reader.py (the strict node reader and its `FILE:LINE` errors),
clusterfile_cluster.py (the Cluster document), clusterfile_hosts.py (spec.ssh, spec.hosts,
spec.hostAliases), clusterfile_registry.py (spec.registry), clusterfile_writer.py
(`dump_clusterfile`) and cluster_flags.py (`cluster_from_flags`); the last two are re-exported
here, where their callers import them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

import yaml

from builder.errors import ClusterfileError
from builder.runtime.cluster import Cluster
from builder.runtime.cluster_flags import cluster_from_flags
from builder.runtime.clusterfile_application import is_application, read_application
from builder.runtime.clusterfile_cluster import API_VERSION, read_cluster
from builder.runtime.clusterfile_configs import is_config, read_config
from builder.runtime.clusterfile_plugins import is_plugin, read_plugin
from builder.runtime.clusterfile_reader import StrictNodeReader
from builder.runtime.clusterfile_writer import dump_clusterfile
from builder.runtime.hooks import ShellHook

__all__ = [
    "API_VERSION",
    "MAX_CLUSTERFILE_BYTES",
    "RUNTIME_DOCUMENT_KINDS",
    "SUPPORTED_DOCUMENTS",
    "cluster_from_flags",
    "dump_clusterfile",
    "is_runtime_document",
    "load_clusterfile",
    "parse_clusterfile",
    "parse_plugin_file",
]

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

# Read whole and parsed by pure-Python YAML (~2 s a MiB): the cap bounds both.
MAX_CLUSTERFILE_BYTES = 4 << 20


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


class _Reader(StrictNodeReader):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.application_seen = False

    # -- documents --

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
        return read_cluster(self, cluster_node, tuple(documents))

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
