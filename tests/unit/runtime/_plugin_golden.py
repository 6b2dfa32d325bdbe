"""What the golden dry-run tests of the runtime plugins (test_runtime_plugin_k0s.py,
test_runtime_plugin_k3s.py, test_runtime_plugin_kubernetes.py) share: the rootfs path, the row
type, the install phases, and `PluginGolden`, which plans a cluster with one plugin and image.
The expected commands are not here: each runtime's golden strings stay in its own module,
written out as its upstream docs give them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from builder.runtime.cluster import Cluster
from builder.runtime.clusterfile import cluster_from_flags
from builder.runtime.facts import Facts
from builder.runtime.infra.local import LocalDriver
from builder.runtime.phases import (
    ApiEndpoint,
    ImageInfo,
    JoinMasters,
    JoinNodes,
    Phase,
    PlanState,
    RuntimeInit,
    RuntimePreflight,
)
from builder.runtime.plugins.base import HostContext, RuntimePlugin
from builder.runtime.runner import Runner
from builder.runtime.state import Journal

R = "/var/lib/sealer/data/c1/rootfs"
INSTALL_PHASES: tuple[Phase, ...] = (
    RuntimePreflight(),
    RuntimeInit(),
    JoinMasters(),
    ApiEndpoint(),
    JoinNodes(),
)

Row = tuple[str, str, str]  # (host, step id, command)


@dataclass(frozen=True)
class PluginGolden:
    """The planning helpers of one plugin's golden tests: `plugin` is made afresh for each plan
    (as the tests did by hand), `image` is what is planned and names the cluster's image."""

    plugin: type[RuntimePlugin]
    image: ImageInfo

    def cluster(
        self, masters: str, nodes: str | None = None, documents: tuple[dict[str, Any], ...] = ()
    ) -> Cluster:
        c = cluster_from_flags(self.image.name, masters, nodes, name="c1")
        return replace(c, documents=documents) if documents else c

    def plan(
        self,
        c: Cluster,
        phase_list: tuple[Phase, ...],
        targets: tuple[str, ...],
        delete_all: bool = False,
        image: ImageInfo | None = None,
    ) -> list[Row]:
        s = PlanState(
            image=self.image if image is None else image,
            plugin=self.plugin(),
            targets=targets,
            delete_all=delete_all,
        )
        return [(st.host, st.id, st.command) for p in phase_list for st in p.plan(c, Facts(), s)]

    def ctx(
        self, c: Cluster, ip: str, subject: str | None = None, files: Mapping[str, str] | None = None
    ) -> HostContext:
        """The context of `ip` (acting for `subject`), with the image's files unless `files`."""
        sub = c.host(subject) if subject else None
        return HostContext(c, c.host(ip), R, {}, sub, self.image.files if files is None else files)

    def rows(self, c: Cluster, phase: str, ip: str, subject: str | None = None) -> list[Row]:
        return [(ip, st.id, st.command) for st in self.plugin().commands(phase, self.ctx(c, ip, subject))]

    def rerun_after_failure(self, c: Cluster, phase: Phase, failed: tuple[str, str] | None) -> list[Row]:
        """What the runner runs when `phase` is run again after an attempt that failed at step
        `failed` (host, id; None: the attempt finished): that attempt journaled every journaled
        step before it, in plan order; the runner then skips those and every producer of an
        output that no pending step needs."""
        s = PlanState(image=self.image, plugin=self.plugin(), targets=c.ips)
        steps = phase.plan(c, Facts(), s)
        keys = [(st.host, st.id) for st in steps]
        journal = Journal(None)
        for st in steps[: keys.index(failed) if failed is not None else len(steps)]:
            if st.journal:
                journal.record(self.image.digest, phase.name, st.host, st.id, seconds=0)
        runner = Runner(LocalDriver(), digest=self.image.digest, journal=journal)
        return [(st.host, st.id, st.command) for st in runner._pending(phase, steps)]


def configured(c: Cluster, ip: str, labels: dict[str, str], taints: tuple[str, ...] = ()) -> Cluster:
    """`c` with the Clusterfile `labels` and `taints` on host `ip`."""
    hosts = tuple(replace(h, labels=labels, taints=taints) if h.ip == ip else h for h in c.hosts)
    return replace(c, hosts=hosts)
