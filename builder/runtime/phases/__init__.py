"""The orchestrator's phases, one module each (STYLE.md section 3), and the sequences the
actions run:

    run / join / apply (new hosts):  check -> deliver [-> registry-seed -> deliver-fetch] -> host-scripts -> registry-service -> registry-trust -> runtime-preflight ->
                                     runtime-init -> join-masters -> api-endpoint -> join-nodes -> node-config ->
                                     kubeconfig -> launch
    delete / apply (removed hosts):  api-endpoint-leave -> runtime-leave | runtime-reset -> registry-untrust -> registry-remove ->
                                     clean-scripts -> remove-rootfs
    upgrade (every host):            check -> deliver [-> registry-seed -> deliver-fetch] -> host-scripts -> registry-service -> registry-trust -> upgrade -> kubeconfig

Around them run the hook phases (shell_hooks.py: sealer's Plugin documents; a phase without hooks
plans nothing): pre-install|pre-scaleup and pre-init-host after deliver, post-init-host and
post-install|post-scaleup before node-config; upgrade and upgrade-host before upgrade;
pre-uninstall and pre-clean-host first on removal, post-clean-host and post-uninstall before
remove-rootfs.

The last phase of each sequence, save-clusterfile (after the removal of some hosts too), saves the
cluster in the cluster through master0 (save_clusterfile.py); saving it under ~/.sealer/<cluster>/
is the action's own (no host takes part).
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.runtime import hooks
from builder.runtime.cluster import Cluster
from builder.runtime.delivery import DEFAULT_ROOT
from builder.runtime.facts import Facts
from builder.runtime.phases.api_endpoint import ApiEndpoint, ApiEndpointLeave
from builder.runtime.phases.base import ImageInfo, Phase, PlanState, Step
from builder.runtime.phases.check import Check
from builder.runtime.phases.clean_scripts import CleanScripts
from builder.runtime.phases.deliver import Deliver
from builder.runtime.phases.deliver_fetch import DeliverFetch, SeedRegistry
from builder.runtime.phases.join_masters import JoinMasters
from builder.runtime.phases.join_nodes import JoinNodes
from builder.runtime.phases.kubeconfig import Kubeconfig
from builder.runtime.phases.launch import Launch
from builder.runtime.phases.node_config import NodeConfig
from builder.runtime.phases.registry_remove import RemoveRegistry
from builder.runtime.phases.registry_service import RegistryService
from builder.runtime.phases.registry_trust import RegistryTrust, RegistryUntrust
from builder.runtime.phases.remove_rootfs import RemoveRootfs
from builder.runtime.phases.runtime_init import RuntimeInit
from builder.runtime.phases.runtime_leave import RuntimeLeave
from builder.runtime.phases.runtime_preflight import RuntimePreflight
from builder.runtime.phases.runtime_reset import RuntimeReset
from builder.runtime.phases.save_clusterfile import SaveClusterfile
from builder.runtime.phases.scripts import HostScripts
from builder.runtime.phases.shell_hooks import hook_phase
from builder.runtime.phases.upgrade import Upgrade


def plan_all(
    phases: Sequence[Phase], cluster: Cluster, facts: Facts, state: PlanState
) -> list[tuple[Phase, list[Step]]]:
    """Each phase with its plan, in order (what a dry-run prints)."""
    return [(p, p.plan(cluster, facts, state)) for p in phases]


def install_phases() -> tuple[Phase, ...]:
    """After check: what a host goes through to join the cluster, in order."""
    return (
        Deliver(),
        SeedRegistry(),
        DeliverFetch(),
        hook_phase(hooks.PRE_INSTALL),
        hook_phase(hooks.PRE_SCALEUP),
        hook_phase(hooks.PRE_INIT_HOST),
        HostScripts(),
        RegistryService(),
        RegistryTrust(),
        RuntimePreflight(),
        RuntimeInit(),
        JoinMasters(),
        ApiEndpoint(),
        JoinNodes(),
        hook_phase(hooks.POST_INIT_HOST),
        hook_phase(hooks.POST_INSTALL),
        hook_phase(hooks.POST_SCALEUP),
        NodeConfig(),
        Kubeconfig(),
        Launch(),
        SaveClusterfile(),
    )


def upgrade_phases() -> tuple[Phase, ...]:
    """After check: every host moves to the new image (delivered first, so commands read it)."""
    return (
        Deliver(),
        SeedRegistry(),
        DeliverFetch(),
        HostScripts(),
        RegistryService(),
        RegistryTrust(),
        hook_phase(hooks.UPGRADE),
        hook_phase(hooks.UPGRADE_HOST),
        Upgrade(),
        Kubeconfig(),
        SaveClusterfile(),
    )


def removal_phases() -> tuple[Phase, ...]:
    return (
        hook_phase(hooks.PRE_UNINSTALL),
        hook_phase(hooks.PRE_CLEAN_HOST),
        ApiEndpointLeave(),
        RuntimeLeave(),
        RuntimeReset(),
        RegistryUntrust(),
        RemoveRegistry(),
        CleanScripts(),
        hook_phase(hooks.POST_CLEAN_HOST),
        hook_phase(hooks.POST_UNINSTALL),
        RemoveRootfs(),
        SaveClusterfile(after_removal=True),
    )


__all__ = [
    "DEFAULT_ROOT",
    "ApiEndpoint",
    "ApiEndpointLeave",
    "Check",
    "CleanScripts",
    "Deliver",
    "HostScripts",
    "ImageInfo",
    "JoinMasters",
    "JoinNodes",
    "Kubeconfig",
    "Launch",
    "NodeConfig",
    "Phase",
    "PlanState",
    "RegistryService",
    "RegistryTrust",
    "RegistryUntrust",
    "RemoveRegistry",
    "RemoveRootfs",
    "RuntimeInit",
    "RuntimeLeave",
    "RuntimePreflight",
    "RuntimeReset",
    "SaveClusterfile",
    "Step",
    "Upgrade",
    "install_phases",
    "plan_all",
    "removal_phases",
    "upgrade_phases",
]
