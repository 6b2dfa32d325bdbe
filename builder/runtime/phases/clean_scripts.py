"""clean-scripts: `sh scripts/clean.sh` on each leaving host (its rootfs goes next, remove_rootfs.py);
on a host that runs an image of sealer's contract (the container runtime its host-scripts step
recorded beside the rootfs), what init-kube.sh put in /usr/bin and /etc/sysctl.d goes, and the
stable name's /etc/hosts block (kubeadm_sealer.py wrote it), then
`bash scripts/uninstall-<cri>.sh` instead, as sealer uninstalls the container runtime (scripts.py). Decided on the host, so it needs no image at hand.

Order, as sealer's reset: nodes, then masters, master0 last (each group in parallel). clean.sh
must be idempotent and safe on a half-installed host; a host whose rootfs is already gone
(deleted before, or never delivered) has nothing to run and is skipped by the command itself.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import ClassVar

from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases import host_aliases
from builder.runtime.phases.base import Phase, PlanState, Step, ordered_for_removal
from builder.runtime.phases.scripts import CLEAN_SCRIPT, SCRIPT_TIMEOUT_S
from builder.runtime.plugins.kubeadm_endpoint import endpoint_block_command
from builder.runtime.plugins.sealer_image import CONTAINER_RUNTIMES, CRI_MARKER, INIT_KUBE_FILES


class CleanScripts(Phase):
    name: ClassVar[str] = "clean-scripts"
    title: ClassVar[str] = "Run clean.sh"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        rootfs = state.rootfs(cluster)
        q = shlex.quote(rootfs)
        marker = shlex.quote(f"{posixpath.dirname(rootfs)}/{CRI_MARKER}")
        command = (
            f"if [ ! -d {q} ]; then echo 'no rootfs: nothing to clean'; "
            f'elif [ -f {marker} ]; then cri=$(cat {marker}); case "$cri" in {"|".join(CONTAINER_RUNTIMES)}) ;; '
            f'*) echo "{marker}: unknown container runtime $cri" >&2; exit 1;; esac; '
            f"rm -f {' '.join(INIT_KUBE_FILES)}; ( {endpoint_block_command(None)} ); "
            f'u={q}/scripts/uninstall-$cri.sh; if [ -f "$u" ]; then bash "$u"; '
            'else echo "no scripts/uninstall-$cri.sh in the image: skipped"; fi; '
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
