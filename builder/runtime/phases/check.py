"""check: every host in scope is reachable and fit for the image (architecture, tools, disk).

Its steps are probes (never journaled: facts are taken fresh on every attempt); `facts` turns
their output into the frozen `Facts` later plans read, and `problems` lists what is wrong with
each host so the run stops before any host is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from builder.errors import PhaseError
from builder.runtime import facts as facts_mod
from builder.runtime import fanout
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases import registry_service
from builder.runtime.phases.base import Phase, PlanState, Step


class Check(Phase):
    name: ClassVar[str] = "check"
    title: ClassVar[str] = "Check hosts"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        command = facts_mod.probe_command(cluster.data_root or state.root)  # where the rootfs goes
        return [
            Step(
                host=h.ip,
                id="probe",
                description="probe architecture, tools and free disk",
                command=command,
                kind="probe",
                journal=False,
                timeout_s=60,
            )
            for h in state.target_hosts(cluster)
        ]

    @staticmethod
    def facts(outputs: Mapping[str, str]) -> Facts:
        return Facts({host: facts_mod.parse_probe(host, out) for host, out in outputs.items()})

    @staticmethod
    def verify(facts: Facts, state: PlanState, cluster: Cluster | None = None) -> None:
        """PhaseError naming the first unfit host with its problems, and every other unfit
        host (the first ten, then how many more), so one run tells what to fix everywhere.
        With `cluster`, the runtime plugin's own needs per host count too (host_problems), and
        the cluster registry's binary on its hosts."""

        def problems(host: str) -> list[str]:
            found = facts_mod.problems(facts[host], state.image.platform, state.image.compressed_bytes)
            if cluster is not None and cluster.has_host(host):
                found += state.plugin.host_problems(
                    cluster, cluster.host(host), facts[host].tools, state.image.files
                )
                found += registry_service.host_problems(cluster, state, host, facts[host].tools)
                found += fanout.fetch_problems(state.fanout, host, facts[host].tools)
            return found

        bad = [(host, found) for host in facts if (found := problems(host))]
        if not bad:
            return
        host, found = bad[0]
        others = [h for h, _ in bad[1:]]
        named = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "")
        more = f" (also unfit: {named})" if others else ""
        raise PhaseError(f"{host}: {'; '.join(found)}{more}", phase="check", step=host)
