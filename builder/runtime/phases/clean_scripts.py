"""clean-scripts: `sh scripts/clean.sh` on each leaving host (its rootfs goes next, remove_rootfs.py).

Order, as sealer's reset: nodes, then masters, master0 last (each group in parallel). clean.sh
must be idempotent and safe on a half-installed host; a host whose rootfs is already gone
(deleted before, or never delivered) has nothing to run and is skipped by the command itself.
"""

from __future__ import annotations

import shlex
from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases import host_aliases
from builder.runtime.phases.base import Phase, PlanState, Step, ordered_for_removal
from builder.runtime.phases.scripts import CLEAN_SCRIPT, SCRIPT_TIMEOUT_S


class CleanScripts(Phase):
    name: ClassVar[str] = "clean-scripts"
    title: ClassVar[str] = "Run clean.sh"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        rootfs = state.rootfs(cluster)
        q = shlex.quote(rootfs)
        command = (
            f"if [ ! -d {q} ]; then echo 'no rootfs: nothing to clean'; "
            f"elif [ -f {q}/{CLEAN_SCRIPT} ]; then cd {q} && sh {CLEAN_SCRIPT}; "
            f"else echo 'no {CLEAN_SCRIPT} in the image: skipped'; fi"
        )
        return [
            Step(
                host=h.ip,
                id="clean.sh",
                description=f"sh {CLEAN_SCRIPT} as {h.role}",
                command=command,
                env=state.host_env(cluster, h),
                stage=stage,
                journal=False,  # leaving is idempotent; the host is forgotten afterwards
                timeout_s=SCRIPT_TIMEOUT_S,
            )
            for stage, h in ordered_for_removal(cluster, state.target_hosts(cluster))
        ] + [
            Step(
                host=h.ip,
                id="host-aliases",
                description="this cluster's host aliases out of /etc/hosts",
                command=host_aliases.remove_command(cluster),
                stage=stage,
                journal=False,
            )
            for stage, h in ordered_for_removal(cluster, state.target_hosts(cluster))
            if cluster.host_aliases
        ]
