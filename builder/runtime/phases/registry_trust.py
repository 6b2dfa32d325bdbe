"""registry-trust and registry-untrust: every host a client of the cluster registry, and no
longer one when it leaves. The service itself (unit, certificate, storage) is
registry_service.py's; the files written here are _registry_client.py's.

registry-trust runs after registry-service, before the cluster runtime starts (k3s reads
registries.yaml only at start), on each host in scope (not for the `none` runtime, which has no
container runtime to pull with):

    /etc/hosts      a tagged block: the registry's domain -> the host itself on a registry host,
                    else the first registry host (external registry: none, DNS names it)
    CA              /etc/containerd/certs.d/D:P/ca.crt and /etc/docker/certs.d/D:P/ca.crt
                    (local registry over TLS only)
    mirrors         hosts.toml for docker.io, registry.k8s.io, quay.io, ghcr.io and D:P, listing
                    every registry host; k3s: registries.yaml; k0s: its containerd drop-in
    credentials     with a username: the hosts.toml header and the kubelet's config.json (0600)

When a master joins or leaves a cluster whose registry runs on every master (`ha`), the mirror
lists of every other host are rewritten too. Every step is idempotent and runs on every attempt
(journal=False): a list depends on the masters of the moment, which a journal keyed by the
image would not see change.

registry-untrust removes what registry-trust wrote from each leaving host (the block, the CA
files, the mirror files, the credentials; directories only when left empty), and rewrites the
remaining hosts' mirror lists without a leaving registry host.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.facts import Facts
from builder.runtime.phases import host_aliases
from builder.runtime.phases._registry_client import (
    CERTS_D,
    DOCKER_CERTS_D,
    K0S_DROPIN,
    K3S_REGISTRIES,
    SECRET_ENV,
    MirrorSet,
    hosts_toml,
    k0s_dropin,
    k3s_registries,
    kubelet_config_json,
    shown_ca,
    shown_file,
    write_file_command,
)
from builder.runtime.phases.base import Phase, PlanState, Step, ordered_for_removal
from builder.runtime.plugins.none import NoneRuntime

BLOCK = "registry"  # the /etc/hosts block's name
# The `none` runtime has no container runtime to pull with, and no registry service either.
NO_RUNTIME = NoneRuntime.name
# Where each runtime's kubelet looks for config.json (its --root-dir).
KUBELET_CONFIG = {
    "kubernetes": "/var/lib/kubelet/config.json",
    "k3s": "/var/lib/kubelet/config.json",
    "k0s": "/var/lib/k0s/kubelet/config.json",
}
# Marks a config.json this phase created (one that was there before is left alone).
KUBELET_RECORD_DIR = "/var/lib/sealer/registry-trust"


def _registry_host_ips(cluster: Cluster, leaving: Sequence[str] = ()) -> tuple[str, ...]:
    return tuple(h.ip for h in cluster.registry_hosts if h.ip not in leaving)


def _mirror_set(cluster: Cluster, host: HostSpec, registry_ips: Sequence[str]) -> MirrorSet:
    """The endpoints `host` tries: an external registry's name; else every registry host, its
    own address first."""
    spec = cluster.registry
    if spec.external:
        endpoints: tuple[str, ...] = (spec.endpoint,)
    else:
        ordered = sorted(registry_ips, key=lambda ip: ip != host.ip)  # stable: itself first
        endpoints = tuple(f"{ip}:{spec.port}" for ip in ordered)
    return MirrorSet(spec, endpoints, cluster.name)


def _mirror_files(mirrors: MirrorSet, runtime: str) -> list[tuple[str, str, int]]:
    """(path, text, mode) of every mirror file of a host running `runtime`."""
    mode = 0o600 if mirrors.spec.has_auth else 0o644
    files = [
        (f"{CERTS_D}/{registry}/hosts.toml", hosts_toml(mirrors, registry, server), mode)
        for registry, server in mirrors.registries
    ]
    if runtime == "k3s":
        files.append((K3S_REGISTRIES, k3s_registries(mirrors), mode))
    if runtime == "k0s":
        files.append((K0S_DROPIN, k0s_dropin(mirrors), 0o644))
    return files


def _secret_env(cluster: Cluster) -> tuple[dict[str, str], tuple[str, ...]]:
    spec = cluster.registry
    if not spec.has_auth:
        return {}, ()
    auth = base64.b64encode(f"{spec.username}:{spec.password or ''}".encode()).decode()
    return {SECRET_ENV: auth}, (SECRET_ENV,)


def _mirrors_step(cluster: Cluster, state: PlanState, host: HostSpec, registry_ips: Sequence[str]) -> Step:
    mirrors = _mirror_set(cluster, host, registry_ips)
    files = _mirror_files(mirrors, state.plugin.name)
    env, secret = _secret_env(cluster)
    return Step(
        host=host.ip,
        id="registry-mirrors",
        description=f"mirrors of {len(mirrors.registries)} registries -> {', '.join(mirrors.endpoints)}",
        command=" && ".join(write_file_command(*f) for f in files),
        env=env,
        secret_env=secret,
        journal=False,
        shown=tuple(line for f in files for line in shown_file(*f)),
    )


def _hosts_entry_step(cluster: Cluster, host: HostSpec, registry_ips: Sequence[str]) -> Step:
    target = host.ip if host.ip in registry_ips else registry_ips[0]
    return Step(
        host=host.ip,
        id="registry-hosts-entry",
        description=f"{cluster.registry.domain} -> {target} in /etc/hosts",
        command=host_aliases.write_block_command(cluster, BLOCK, [f"{target} {cluster.registry.domain}"]),
        journal=False,
    )


def _ca_paths(cluster: Cluster) -> tuple[str, str]:
    endpoint = cluster.registry.endpoint
    return (f"{CERTS_D}/{endpoint}/ca.crt", f"{DOCKER_CERTS_D}/{endpoint}/ca.crt")


def _kubelet_record_dir(cluster: Cluster) -> str:
    """Beside the cluster's data under its spec.dataRoot, when it has one: such a cluster leaves
    nothing under /var/lib/sealer."""
    return f"{cluster.data_root}/.registry-trust" if cluster.data_root else KUBELET_RECORD_DIR


def _kubelet_record(cluster: Cluster) -> str:
    return f"{_kubelet_record_dir(cluster)}/{cluster.name}.kubelet-config"


class RegistryTrust(Phase):
    name: ClassVar[str] = "registry-trust"
    title: ClassVar[str] = "Trust and mirror the cluster registry"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        if state.plugin.name == NO_RUNTIME:
            return []
        spec = cluster.registry
        local = not spec.external
        tls_local = local and not spec.insecure
        if tls_local and state.registry is None:
            return []  # no CA made for this run (the registry service is not planned either)
        registry_ips = _registry_host_ips(cluster)
        if local and not registry_ips:
            return []
        targets = state.target_hosts(cluster)
        target_ips = {h.ip for h in targets}
        # A registry host joining changes every host's mirror list (and nothing else of theirs).
        joining = any(ip in target_ips for ip in registry_ips)
        others = [h for h in cluster.hosts if joining and h.ip not in target_ips]
        steps: list[Step] = []
        for host in targets:
            if local:
                steps.append(_hosts_entry_step(cluster, host, registry_ips))
            if tls_local and state.registry is not None:
                steps.append(self._ca_step(cluster, host, state.registry.ca_pem))
            elif local:  # insecure: a CA left from a TLS run would make containerd expect TLS
                steps.append(self._no_ca_step(cluster, host))
            steps.append(_mirrors_step(cluster, state, host, registry_ips))
            kubelet = KUBELET_CONFIG.get(state.plugin.name)
            if spec.has_auth and kubelet:
                steps.append(self._kubelet_step(cluster, host, kubelet))
        steps += [_mirrors_step(cluster, state, h, registry_ips) for h in others]
        # A dry-run shows a host's env once, from its first step: every step carries the same.
        env, secret = _secret_env(cluster)
        return [replace(s, env=env, secret_env=secret) for s in steps]

    @staticmethod
    def _ca_step(cluster: Cluster, host: HostSpec, ca_pem: str) -> Step:
        paths = _ca_paths(cluster)
        return Step(
            host=host.ip,
            id="registry-ca",
            description=f"the registry's CA for containerd and docker ({cluster.registry.endpoint})",
            command=" && ".join(write_file_command(p, ca_pem, 0o644) for p in paths),
            journal=False,
            shown=(shown_ca(paths),),
        )

    @staticmethod
    def _no_ca_step(cluster: Cluster, host: HostSpec) -> Step:
        return Step(
            host=host.ip,
            id="registry-ca",
            description=f"no CA: {cluster.registry.endpoint} serves plain HTTP (insecure: true)",
            command=f"rm -f {' '.join(shlex.quote(p) for p in _ca_paths(cluster))}",
            journal=False,
        )

    @staticmethod
    def _kubelet_step(cluster: Cluster, host: HostSpec, path: str) -> Step:
        env, secret = _secret_env(cluster)
        text = kubelet_config_json(cluster.registry)
        record = _kubelet_record(cluster)
        q, r = shlex.quote(path), shlex.quote(record)
        # Ours when we wrote it before (the record names it); one that was there is left alone.
        command = (
            f"if [ -e {q} ] && ! grep -qxF {q} {r} 2>/dev/null; then "
            f"echo '{path} exists and is not sealer'\"'\"'s: add the credentials of "
            f"{cluster.registry.endpoint} to it by hand' >&2; "
            f"else mkdir -p {shlex.quote(_kubelet_record_dir(cluster))} && echo {q} > {r} && "
            f"{write_file_command(path, text, 0o600)}; fi"
        )
        return Step(
            host=host.ip,
            id="registry-kubelet-credentials",
            description=f"the kubelet's pull credentials for {cluster.registry.endpoint}",
            command=command,
            env=env,
            secret_env=secret,
            journal=False,
            shown=tuple(shown_file(path, text, 0o600)),
        )


def _remove_command(cluster: Cluster, runtime: str) -> str:
    """Shell: every file registry-trust may have written on this host, then the directories it
    made when left empty; the kubelet's config.json only when the record says it is ours."""
    mirrors = MirrorSet(cluster.registry, (), cluster.name)
    files = [p for p, _, _ in _mirror_files(mirrors, runtime)]
    files += _ca_paths(cluster)
    dirs = [f"{CERTS_D}/{r}" for r, _ in mirrors.registries]
    dirs += [
        f"{DOCKER_CERTS_D}/{cluster.registry.endpoint}",
        CERTS_D,
        DOCKER_CERTS_D,
        "/etc/docker",
        "/etc/containerd",
    ]
    if runtime == "k0s":
        dirs.append(K0S_DROPIN.rsplit("/", 1)[0])
    quoted = " ".join(shlex.quote(f) for f in files)
    parts = [f"rm -f {quoted}", f"rmdir {' '.join(shlex.quote(d) for d in dirs)} 2>/dev/null || true"]
    kubelet = KUBELET_CONFIG.get(runtime)
    if kubelet:
        r = shlex.quote(_kubelet_record(cluster))
        parts.append(f'if [ -f {r} ]; then rm -f "$(cat {r})" {r}; fi')
        parts.append(f"rmdir {shlex.quote(_kubelet_record_dir(cluster))} 2>/dev/null || true")
    return "; ".join(parts)


class RegistryUntrust(Phase):
    name: ClassVar[str] = "registry-untrust"
    title: ClassVar[str] = "Remove the cluster registry's trust and mirrors"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        if state.plugin.name == NO_RUNTIME:
            return []
        leaving = [h.ip for h in state.target_hosts(cluster)]
        steps = [
            Step(
                host=h.ip,
                id="registry-untrust",
                description=f"the registry's CA, mirrors, credentials and /etc/hosts entry of {cluster.name}",
                command=f"{_remove_command(cluster, state.plugin.name)}; "
                f"{host_aliases.remove_block_command(cluster, BLOCK)}",
                stage=stage,
                journal=False,
            )
            for stage, h in ordered_for_removal(cluster, state.target_hosts(cluster))
        ]
        remaining_ips = _registry_host_ips(cluster, leaving)
        if cluster.registry.external or not any(ip in leaving for ip in _registry_host_ips(cluster)):
            return steps
        # The other hosts' /etc/hosts entries stay: they name master0, which leaves only with
        # the whole cluster.
        return steps + [
            _mirrors_step(cluster, state, h, remaining_ips) for h in cluster.hosts if h.ip not in leaving
        ]
