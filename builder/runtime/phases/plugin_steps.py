"""A plugin's commands as a phase's steps: the plugin says what each host runs, the runtime
phases (runtime_preflight.py, runtime_init.py, join_masters.py, join_nodes.py, node_config.py,
runtime_leave.py, runtime_reset.py, upgrade.py, kubeconfig.py) say who and when.

Step ids carry the subject host where a step runs on master0 for another host, so the
journal keeps them apart. With the `none` runtime every such plan is empty.
"""

from __future__ import annotations

from collections.abc import Mapping

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.phases.base import PlanState, Step
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
        as_step(s, host, ctx.env, ctx.rootfs, prefix=prefix, stage=stage)
        for s in state.plugin.commands(phase, ctx)
    ]


def as_step(
    s: PluginStep, host: HostSpec, env: Mapping[str, str], cwd: str, *, prefix: str = "", stage: int = 0
) -> Step:
    """One plugin command as a step on `host` (journaled unless it yields a named output)."""
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
