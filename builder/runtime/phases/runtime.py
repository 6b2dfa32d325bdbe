"""The cluster runtime's phases: the plugin says what each host runs, these say who and when.

    runtime-preflight   every host in scope (plugin `preflight`)
    runtime-init        master0, when it is in scope (plugin `init`)
    join-masters        each other master, one at a time: `join-credentials` on master0, then
                        `join-master` on the host
    join-nodes          `join-credentials` on master0 once, then `join-worker` on every node at
                        once (bounded by the runner)
    node-config         `node-config` on master0 for each joined host with Clusterfile labels or
                        taints (subject = the host): kubectl label/taint its node, --overwrite
    runtime-leave       hosts leaving a running cluster, one at a time, nodes first: the
                        `delete-worker`/`delete-master` commands on master0 (subject = the
                        host), then those on the host itself, then `delete-done` on master0
    runtime-reset       every host of a cluster being deleted: nodes, masters, master0 last

Step ids carry the subject host where a step runs on master0 for another host, so the
journal keeps them apart. With the `none` runtime every plan here is empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step, ordered_for_removal
from builder.runtime.plugins import base as plugin_phases
from builder.runtime.plugins.base import PluginStep


def plugin_steps(
    phase: str,
    cluster: Cluster,
    state: PlanState,
    host: HostSpec,
    *,
    subject: HostSpec | None = None,
    stage: int = 0,
) -> list[Step]:
    """The plugin's commands of `phase` on `host` as steps (ids prefixed by the subject's
    address when master0 acts for another host, so the journal keeps them apart)."""
    ctx = state.host_context(cluster, host, subject)
    prefix = f"{subject.ip}/" if subject is not None and subject.ip != host.ip else ""
    return [
        _step(s, host, ctx.env, ctx.rootfs, prefix=prefix, stage=stage)
        for s in state.plugin.commands(phase, ctx)
    ]


def _step(
    s: PluginStep, host: HostSpec, env: Mapping[str, str], cwd: str, *, prefix: str, stage: int
) -> Step:
    return Step(
        host=host.ip,
        id=prefix + s.id,
        description=s.description,
        command=s.command,
        env=env,
        cwd=cwd,
        stage=stage,
        output=s.output,
        journal=s.output is None,
        timeout_s=s.timeout_s,
    )


class RuntimePreflight(Phase):
    name: ClassVar[str] = "runtime-preflight"
    title: ClassVar[str] = "Runtime preflight"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        out: list[Step] = []
        for host in state.target_hosts(cluster):
            out += plugin_steps(plugin_phases.PREFLIGHT, cluster, state, host)
        return out


class RuntimeInit(Phase):
    name: ClassVar[str] = "runtime-init"
    title: ClassVar[str] = "Start the cluster runtime on master0"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        if cluster.master0.ip not in state.targets:
            return []
        return plugin_steps(plugin_phases.INIT, cluster, state, cluster.master0)


class JoinMasters(Phase):
    name: ClassVar[str] = "join-masters"
    title: ClassVar[str] = "Join masters"
    serial: ClassVar[bool] = True

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        out: list[Step] = []
        master0 = cluster.master0
        for host in state.target_hosts(cluster):
            if not host.is_master or host.ip == master0.ip:
                continue
            joins = plugin_steps(plugin_phases.JOIN_MASTER, cluster, state, host)
            if joins:
                out += plugin_steps(plugin_phases.JOIN_CREDENTIALS, cluster, state, master0, subject=host)
                out += joins
        return out


class JoinNodes(Phase):
    name: ClassVar[str] = "join-nodes"
    title: ClassVar[str] = "Join nodes"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        joins: list[Step] = []
        for host in state.target_hosts(cluster):
            if not host.is_master:
                joins += plugin_steps(plugin_phases.JOIN_WORKER, cluster, state, host, stage=1)
        if not joins:
            return []
        return plugin_steps(plugin_phases.JOIN_CREDENTIALS, cluster, state, cluster.master0) + joins


class NodeConfig(Phase):
    """The Clusterfile's `labels` and `taints` of each host in scope, put on its node from
    master0 once every host has joined. Only hosts joining now: `apply` does not re-apply a
    changed label of a host already in the cluster (it adds and removes hosts only). Journaled;
    a re-run is harmless anyway, as the plugins label and taint with --overwrite."""

    name: ClassVar[str] = "node-config"
    title: ClassVar[str] = "Label and taint nodes"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        out: list[Step] = []
        for host in state.target_hosts(cluster):
            if host.labels or host.taints:
                out += plugin_steps(plugin_phases.NODE_CONFIG, cluster, state, cluster.master0, subject=host)
        return out


class RuntimeLeave(Phase):
    name: ClassVar[str] = "runtime-leave"
    title: ClassVar[str] = "Remove hosts from the cluster runtime"
    serial: ClassVar[bool] = True

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        if state.delete_all:
            return []
        out: list[Step] = []
        for _, host in ordered_for_removal(cluster, state.target_hosts(cluster)):
            phase = plugin_phases.DELETE_MASTER if host.is_master else plugin_phases.DELETE_WORKER
            out += plugin_steps(phase, cluster, state, cluster.master0, subject=host)
            out += plugin_steps(phase, cluster, state, host, subject=host)
            out += plugin_steps(plugin_phases.DELETE_DONE, cluster, state, cluster.master0, subject=host)
        return out


class RuntimeReset(Phase):
    name: ClassVar[str] = "runtime-reset"
    title: ClassVar[str] = "Reset the cluster runtime"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        if not state.delete_all:
            return []
        out: list[Step] = []
        for stage, host in ordered_for_removal(cluster, state.target_hosts(cluster)):
            out += plugin_steps(plugin_phases.RESET, cluster, state, host, stage=stage)
        return out


def runtime_phases() -> Sequence[Phase]:
    return (RuntimePreflight(), RuntimeInit(), JoinMasters(), JoinNodes(), NodeConfig())
