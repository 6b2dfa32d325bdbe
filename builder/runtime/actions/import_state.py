"""`sealer cluster import`: the local state of a cluster rebuilt from the cluster itself (the
ConfigMap kube-system/sealer-clusterfile that save-clusterfile writes, cluster_mirror.py), on
a machine that did not run it, so that `cluster status`, `join`, `delete` and `upgrade` work
from there.

    ~/.sealer/<cluster>/Clusterfile   the saved Clusterfile with this machine's SSH settings
                                      (from -f, a Clusterfile holding only spec.ssh,
                                      spec.hosts[].{ips, ssh} and the registry password, and
                                      the SSH flags) in place of the stripped secrets
    state.json                        from the ConfigMap's state.json, complete
    journal.json                      every host of the Clusterfile joined (the ConfigMap is
                                      written only once an action finished)
    kubeconfig                        the kubeconfig given (0600)
    registry/ca.crt, server.crt       the registry's public certificates (no keys: see
                                      cluster_mirror.imported_registry_material)

Nothing is written unless everything checked out: the state is made in a temp dir beside the
others and renamed into place, and an existing cluster of that name is never replaced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from builder._fs import atomic_write, remove_tree
from builder.errors import ClusterError, ClusterfileError
from builder.runtime import cluster_mirror, kube_api
from builder.runtime._bounded_yaml import BoundedLoader
from builder.runtime.actions.settings import Outcome
from builder.runtime.cluster import Cluster
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.registry_pki import STATE_DIR as REGISTRY_DIR
from builder.runtime.state import JOINED, ClusterState, Journal, SavedMeta, state_home

MAX_SSH_FILE_BYTES = 1 << 20
_WHERE = f"ConfigMap {cluster_mirror.NAMESPACE}/{cluster_mirror.NAME}"
_SSH_FILE_FIELDS = {"": ("apiVersion", "kind", "metadata", "spec"), "spec": ("ssh", "hosts", "registry")}
_SSH_FILE_HINT = "an SSH-only Clusterfile holds spec.ssh, spec.hosts[].ips/ssh and spec.registry's password"


# --- the SSH-only Clusterfile ------------------------------------------------------------------------


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1 if node.start_mark is not None else 1


def _refuse(path: Path, node: yaml.Node, message: str) -> ClusterError:
    return ClusterfileError(
        f"{path}:{_line(node)}: {message}", path=str(path), line=_line(node), hint=_SSH_FILE_HINT
    )


def _keys(path: Path, node: yaml.Node, where: str, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise _refuse(path, node, f"{where or 'the document'} must be a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = str(key.value)
        if name not in allowed:
            raise _refuse(path, key, f"{where + '.' if where else ''}{name}: not an SSH setting")
        out[name] = value
    return out


def read_ssh_file(path: Path) -> dict[str, Any]:
    """The SSH-only Clusterfile at `path`, checked field by field (errors at their line)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SSH_FILE_BYTES + 1)
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as err:
        raise ClusterError(f"-f {path}: cannot read it: {getattr(err, 'strerror', None) or err}") from None
    if len(raw) > MAX_SSH_FILE_BYTES:
        raise ClusterError(f"-f {path}: larger than 1 MiB: not an SSH-only Clusterfile")
    loader = BoundedLoader(text, path=str(path))
    try:
        node = loader.get_single_node()
        if node is None:
            raise ClusterError(f"-f {path}: empty", hint=_SSH_FILE_HINT)
        top = _keys(path, node, "", _SSH_FILE_FIELDS[""])
        if "kind" in top and top["kind"].value != "Cluster":
            raise _refuse(path, top["kind"], f"kind {top['kind'].value}: want Cluster")
        spec = _keys(path, top["spec"], "spec", _SSH_FILE_FIELDS["spec"]) if "spec" in top else {}
        if "hosts" in spec:
            if not isinstance(spec["hosts"], yaml.SequenceNode):
                raise _refuse(path, spec["hosts"], "spec.hosts must be a list")
            for i, entry in enumerate(spec["hosts"].value):
                if "ips" not in _keys(path, entry, f"spec.hosts[{i}]", ("ips", "ssh")):
                    raise _refuse(path, entry, f"spec.hosts[{i}]: ips missing")
        if "registry" in spec:
            kinds = _keys(path, spec["registry"], "spec.registry", ("localRegistry", "externalRegistry"))
            for kind, value in kinds.items():
                _keys(path, value, f"spec.registry.{kind}", ("password",))
        data = loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ClusterError(f"-f {path}: not YAML: {str(err).splitlines()[0]}") from None
    finally:
        loader.dispose()
    spec_data = data.get("spec") or {}
    return spec_data if isinstance(spec_data, dict) else {}


def _with_ssh(saved: str, ssh_spec: Mapping[str, Any], flags: Mapping[str, Any], ssh_file: str) -> str:
    """The ConfigMap's Clusterfile with this machine's SSH settings and registry password."""
    loader = BoundedLoader(saved, path=f"{_WHERE} (Clusterfile)")
    try:
        docs = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            docs.append(loader.get_data())
    except yaml.YAMLError as err:
        raise _not_clusterfile(f"not YAML: {str(err).splitlines()[0]}") from None
    finally:
        loader.dispose()
    if not docs or not isinstance(docs[0], dict) or not isinstance(docs[0].get("spec"), dict):
        raise _not_clusterfile("its first document is not a Cluster")
    spec = docs[0]["spec"]
    name = str((docs[0].get("metadata") or {}).get("name") or "?")
    if "ssh" in ssh_spec:
        spec["ssh"] = dict(ssh_spec["ssh"] or {})
    if flags:
        spec["ssh"] = {**(spec.get("ssh") or {}), **flags}
    hosts = [
        {**group, "ips": [ip]}
        for group in spec.get("hosts") or ()
        if isinstance(group, dict)
        for ip in group.get("ips") or ()
    ]
    for i, entry in enumerate(ssh_spec.get("hosts") or ()):
        for ip in entry.get("ips") or ():
            matching = [h for h in hosts if h["ips"] == [ip]]
            if not matching:
                raise ClusterError(f"-f {ssh_file}: spec.hosts[{i}]: {ip} is not a host of cluster {name}")
            matching[0]["ssh"] = dict(entry.get("ssh") or {})
    for host in hosts:
        if flags and isinstance(host.get("ssh"), dict):
            host["ssh"] = {**host["ssh"], **flags}
    spec["hosts"] = hosts
    for kind, given in (ssh_spec.get("registry") or {}).items():
        saved_kind = (spec.get("registry") or {}).get(kind)
        if not isinstance(saved_kind, dict):
            raise ClusterError(f"-f {ssh_file}: spec.registry.{kind}: cluster {name} has no {kind}")
        saved_kind.update(given or {})
    for kind, registry in (spec.get("registry") or {}).items():
        if (
            isinstance(registry, dict)
            and registry.get("username") is not None
            and not registry.get("password")
        ):
            raise ClusterError(
                f"cluster {name}: its registry user {registry['username']!r} needs a password, "
                "which the cluster does not keep",
                hint=f"give it in -f FILE: spec.registry.{kind}.password",
            )
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


def _not_clusterfile(why: str) -> ClusterError:
    return ClusterError(
        f"{_WHERE}: data.{cluster_mirror.CLUSTERFILE_KEY} is not a Clusterfile: {why}",
        hint="it is written by sealer run/apply/join of this version; run one of them from the "
        "controller that has the cluster",
    )


# --- the import ----------------------------------------------------------------------------------------


def _read_mirror(obj: Mapping[str, Any]) -> tuple[str, cluster_mirror.MirroredState, Mapping[str, str]]:
    data = obj.get("data")
    if not isinstance(data, dict) or not isinstance(data.get(cluster_mirror.CLUSTERFILE_KEY), str):
        raise _not_clusterfile(f"the ConfigMap has no {cluster_mirror.CLUSTERFILE_KEY} key")
    try:
        state = cluster_mirror.MirroredState.from_json(json.loads(str(data.get(cluster_mirror.STATE_KEY))))
    except (ValueError, KeyError, TypeError) as err:
        raise ClusterError(
            f"{_WHERE}: data.{cluster_mirror.STATE_KEY} is missing or unreadable ({err}): "
            "the image digest and runtime are unknown",
            hint="run sealer apply -f Clusterfile once from the controller that has the cluster "
            "(this version saves them)",
        ) from None
    return str(data[cluster_mirror.CLUSTERFILE_KEY]), state, data


def import_cluster(
    kubeconfig: Path,
    *,
    ssh_file: Path | None = None,
    ssh_flags: Mapping[str, Any] | None = None,
    expect_name: str | None = None,
    home: Path | None = None,
) -> Outcome:
    """Rebuild ~/.sealer/<cluster>/ from the cluster that `kubeconfig` reaches. `expect_name`:
    the cluster's name must be this one (hosts keep their files under it, so it is never
    changed). ClusterError, with nothing written, for every failure."""
    access = kube_api.read_kubeconfig(kubeconfig)
    ssh_spec = read_ssh_file(ssh_file) if ssh_file is not None else {}
    obj = kube_api.get_object(access, kube_api.configmap_path(cluster_mirror.NAMESPACE, cluster_mirror.NAME))
    if obj is None:
        raise ClusterError(
            f"the cluster at {access.server} has no {_WHERE}",
            hint="sealer run/apply/join/upgrade/cert write it; run one from the controller that has the cluster",
        )
    text, mirrored, data = _read_mirror(obj)
    merged = _with_ssh(text, ssh_spec, dict(ssh_flags or {}), str(ssh_file))
    try:
        cluster = parse_clusterfile(merged, path=f"{_WHERE} (Clusterfile, with this machine's SSH settings)")
    except ClusterfileError as err:
        raise ClusterError(err.message, hint=err.hint) from None
    if expect_name is not None and expect_name != cluster.name:
        raise ClusterError(
            f"--cluster {expect_name}: the cluster at {access.server} is {cluster.name}",
            hint="the name is part of every host's paths, so an import keeps it: drop --cluster",
        )
    cs = ClusterState(cluster.name, home if home is not None else state_home())
    if cs.dir.exists():
        raise ClusterError(
            f"a cluster named {cluster.name} is already saved in {cs.home}",
            hint="import into another SEALER_STATE_HOME, or remove that state first",
        )
    _write_state(cs, cluster, mirrored, data, kubeconfig.read_text())
    return Outcome(
        cluster,
        f"cluster {cluster.name} imported into {cs.dir}: {len(cluster.hosts)} host(s), "
        f"image {mirrored.image} ({mirrored.digest}), runtime {mirrored.runtime}",
    )


def _write_state(
    cs: ClusterState,
    cluster: Cluster,
    mirrored: cluster_mirror.MirroredState,
    data: Mapping[str, Any],
    kubeconfig: str,
) -> None:
    """Everything into a temp dir beside the other clusters, then renamed into place."""
    cs.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp_home = Path(os.fspath(cs.home)) / f".import-{cluster.name}-{os.getpid()}"
    remove_tree(tmp_home)
    tmp = ClusterState(cluster.name, tmp_home)
    try:
        meta = SavedMeta(
            image=mirrored.image,
            digest=mirrored.digest,
            platform=mirrored.platform,
            runtime=mirrored.runtime,
            cli_env=dict(mirrored.cli_env or {}),
            image_env=dict(mirrored.image_env or {}),
            complete=True,
            kube_version=mirrored.kube_version,
            cert_sans=mirrored.cert_sans,
            image_hooks=mirrored.image_hooks,
        )
        tmp.save(cluster, meta)
        journal = Journal(tmp.journal_path)
        for host in cluster.hosts:
            journal.record(mirrored.digest, JOINED, host.ip, "done", seconds=0)
        tmp.save_kubeconfig(kubeconfig)
        ca, cert = data.get(cluster_mirror.REGISTRY_CA_KEY), data.get(cluster_mirror.REGISTRY_CERT_KEY)
        if isinstance(ca, str) and isinstance(cert, str) and ca and cert:
            (tmp.dir / REGISTRY_DIR).mkdir(mode=0o700)
            atomic_write(tmp.dir / REGISTRY_DIR / "ca.crt", ca.encode(), mode=0o600)
            atomic_write(tmp.dir / REGISTRY_DIR / "server.crt", cert.encode(), mode=0o600)
        os.rename(tmp.dir, cs.dir)  # fails, leaving nothing, if the name appeared meanwhile
    except OSError as err:
        raise ClusterError(f"cannot write {cs.dir}: {err.strerror}") from None
    finally:
        remove_tree(tmp_home)


__all__ = ["import_cluster", "read_ssh_file"]
