"""host-scripts: the Clusterfile's hostAliases into /etc/hosts (when it has some), then
`sh scripts/init.sh`, then `sh scripts/init-registry.sh`, on every host in scope, in the
delivered rootfs. init.sh is skipped by its command when the image has none;
init-registry.sh is planned only when the image has it (`ImageInfo.files`).

init-registry.sh is sealer's hook for an image's own registry set-up: it runs on every host,
after init.sh and before the cluster runtime starts. The cluster registry itself (the bundled
`registry/` served on the masters, TLS, auth, the hosts' mirrors) is the runtime's: the
registry-service and registry-trust phases that follow; this repository's basefs images ship no
init-registry.sh, and an image from elsewhere that does still has it run.

An image of sealer's own contract (plugins/sealer_image.py) runs as sealer runs it instead:
`bash ROOTFS/scripts/<cri>.sh`, the script of its container runtime, on every host, first (the
runtime name is recorded beside the rootfs for `uninstall-<cri>.sh` on delete, clean_scripts.py);
no init.sh (sealer's runtime calls none) and no init-registry.sh: its registry/ is served by the
registry-service phase, the registry sealer's `init-registry.sh PORT DIR DOMAIN` would start as a
container on the same port (docs/runtimes.md, "sealer's own images").

Env: image ENV < Clusterfile env < host env < -e, plus SEALER_ROLE, SEALER_HOST_IP,
SEALER_MASTER0, SEALER_MASTERS, SEALER_NODES, SEALER_CLUSTER, SEALER_ROOTFS. An image without
scripts/init.sh skips it. Hosts run in parallel: sealer runs init.sh on all hosts at once too.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import ClassVar

from builder.image.mediatypes import LABEL_CONTAINER_RUNTIME
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases import host_aliases
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.plugins.sealer_image import CRI_MARKER, install_script, is_sealer_image

INIT_SCRIPT = "scripts/init.sh"
INIT_REGISTRY_SCRIPT = "scripts/init-registry.sh"
CLEAN_SCRIPT = "scripts/clean.sh"
SCRIPT_TIMEOUT_S = 1800


def script_command(path: str) -> str:
    return f"if [ -f {path} ]; then sh {path}; else echo 'no {path} in the image: skipped'; fi"


class HostScripts(Phase):
    name: ClassVar[str] = "host-scripts"
    title: ClassVar[str] = "Run init.sh"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        rootfs = state.rootfs(cluster)
        aliases = [
            Step(
                host=h.ip,
                id="host-aliases",
                description=f"{len(cluster.host_aliases)} host aliases into /etc/hosts",
                command=host_aliases.write_command(cluster),
            )
            for h in state.target_hosts(cluster)
            if cluster.host_aliases
        ]
        if is_sealer_image(state.image.files):
            return aliases + self._sealer_plan(cluster, state)
        return aliases + [
            Step(
                host=h.ip,
                id=script.rsplit("/", 1)[1],
                description=f"sh {script} as {h.role}",
                command=script_command(script),
                env=state.host_env(cluster, h),
                cwd=rootfs,
                timeout_s=SCRIPT_TIMEOUT_S,
            )
            for h in state.target_hosts(cluster)
            for script in (INIT_SCRIPT, INIT_REGISTRY_SCRIPT)
            if script == INIT_SCRIPT or script in state.image.files
        ]

    @staticmethod
    def _sealer_plan(cluster: Cluster, state: PlanState) -> list[Step]:
        rootfs = state.rootfs(cluster)
        cri = state.container_runtime
        script = install_script(cri)
        marker = shlex.quote(f"{posixpath.dirname(rootfs)}/{CRI_MARKER}")
        path = shlex.quote(f"{rootfs}/{script}")
        command = (
            f"if [ ! -f {path} ]; then echo 'this sealer image has no {script} "
            f"for its container runtime {cri} (label {LABEL_CONTAINER_RUNTIME})' >&2; exit 1; fi; "
            f"printf '%s\\n' {cri} > {marker} && bash {path}"
        )
        return [
            Step(
                host=h.ip,
                id=f"{cri}.sh",
                description=f"bash {script} as {h.role} (the container runtime of a sealer image)",
                command=command,
                env=state.host_env(cluster, h),
                cwd=rootfs,
                timeout_s=SCRIPT_TIMEOUT_S,
            )
            for h in state.target_hosts(cluster)
        ]
