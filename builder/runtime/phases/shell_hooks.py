"""hook-PHASE: sealer's shell hooks (Plugin documents, builder/runtime/hooks.py) at their phase:
the image's `plugins/*.yaml` and the Clusterfile's, each hook one step, in name order.

    cluster phases, on master0:   pre-install / pre-scaleup     after delivery
                                  post-install / post-scaleup   after the joins, before node-config
                                  pre-uninstall                 before the hosts leave (delete --all)
                                  post-uninstall                after clean.sh, before the rootfs goes
                                  upgrade                       before the runtime's upgrade
    host phases, on the action's  pre-init-host                 before init.sh
    hosts whose role is in scope: post-init-host                after the joins
                                  pre-clean-host                before the runtime's leave
                                  post-clean-host               after clean.sh
                                  upgrade-host                  before the runtime's upgrade

An install is a first run when it includes master0 (`*-install`), else a scale-up
(`*-scaleup`, sealer's join). Each hook runs as `cd ROOTFS && DATA` with the host's script env,
journaled like every step (a re-run skips the hooks that finished). On removal a host whose
rootfs is already gone has nothing to run the hook in: skipped, said so.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import ClassVar

from builder.runtime import hooks
from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.clusterfile_plugins import hooks_of_documents
from builder.runtime.facts import Facts
from builder.runtime.hooks import ShellHook
from builder.runtime.phases.base import Phase, PlanState, Step, ordered_for_removal
from builder.runtime.phases.scripts import SCRIPT_TIMEOUT_S

_REMOVAL = (hooks.PRE_UNINSTALL, hooks.POST_UNINSTALL, hooks.PRE_CLEAN_HOST, hooks.POST_CLEAN_HOST)


class _Hooks(Phase):
    """The hooks of one hook phase; subclasses say which (`hook`) and for which action."""

    hook: ClassVar[str]
    title: ClassVar[str] = ""

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        wanted = hooks.hooks_of(self.hook, (*state.image.hooks, *hooks_of_documents(cluster.documents)))
        if not wanted:
            return []
        hosts = self.hosts(cluster, state)
        return [
            self._step(cluster, state, h, stage, hook)
            for stage, h in hosts
            for hook in wanted
            if self.hook in hooks.CLUSTER_PHASES or hook.runs_on(h)
        ]

    def hosts(self, cluster: Cluster, state: PlanState) -> Sequence[tuple[int, HostSpec]]:
        if self.hook in hooks.CLUSTER_PHASES:
            return [(0, cluster.master0)] if self.applies(cluster, state) else []
        targets = state.target_hosts(cluster)
        if self.hook in _REMOVAL:
            return ordered_for_removal(cluster, targets)
        return [(0, h) for h in targets]

    def applies(self, cluster: Cluster, state: PlanState) -> bool:
        return True

    def _step(self, cluster: Cluster, state: PlanState, host: HostSpec, stage: int, hook: ShellHook) -> Step:
        rootfs = shlex.quote(state.rootfs(cluster))
        command = f"cd {rootfs} && {hook.data}"
        if self.hook in _REMOVAL:  # the rootfs of a host deleted before may be gone
            command = f"if [ ! -d {rootfs} ]; then echo 'no rootfs: hook {hook.name} skipped'; exit 0; fi; {command}"
        where = f" ({hook.source})" if hook.source else ""
        return Step(
            host=host.ip,
            id=f"hook-{hook.name}",
            description=f"{self.hook} hook {hook.name}{where}",
            command=command,
            env=state.host_env(cluster, host),
            stage=stage,
            timeout_s=SCRIPT_TIMEOUT_S,
        )


Applies = Callable[[Cluster, PlanState], bool]


def _always(cluster: Cluster, state: PlanState) -> bool:
    return True


def _first_run(cluster: Cluster, state: PlanState) -> bool:
    return cluster.master0.ip in state.targets


def _scale_up(cluster: Cluster, state: PlanState) -> bool:
    return cluster.master0.ip not in state.targets


def _delete_all(cluster: Cluster, state: PlanState) -> bool:
    return state.delete_all


def _phase_class(hook: str, applies: Applies = _always) -> type[_Hooks]:
    """A phase class for hook phase `hook`: journal name `hook-<hook>`; a cluster phase runs
    only when `applies` says the action is the one it belongs to."""
    attrs = {
        "name": f"hook-{hook}",
        "title": f"Run the {hook} hooks",
        "hook": hook,
        "applies": lambda self, cluster, state: applies(cluster, state),
    }
    return type(f"Hooks_{hook.replace('-', '_')}", (_Hooks,), attrs)


_PHASES: dict[str, type[_Hooks]] = {
    hooks.PRE_INSTALL: _phase_class(hooks.PRE_INSTALL, _first_run),
    hooks.POST_INSTALL: _phase_class(hooks.POST_INSTALL, _first_run),
    hooks.PRE_SCALEUP: _phase_class(hooks.PRE_SCALEUP, _scale_up),
    hooks.POST_SCALEUP: _phase_class(hooks.POST_SCALEUP, _scale_up),
    hooks.PRE_UNINSTALL: _phase_class(hooks.PRE_UNINSTALL, _delete_all),
    hooks.POST_UNINSTALL: _phase_class(hooks.POST_UNINSTALL, _delete_all),
    hooks.UPGRADE: _phase_class(hooks.UPGRADE),
    hooks.ROLLBACK: _phase_class(hooks.ROLLBACK),
    **{h: _phase_class(h) for h in hooks.HOST_PHASES},
}


def hook_phase(hook: str) -> _Hooks:
    """The phase running the hooks of hook phase `hook` (journal name `hook-<hook>`)."""
    return _PHASES[hook]()
