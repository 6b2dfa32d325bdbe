"""cert: the API server certificates of a running cluster, one master at a time (`sealer cert`).

Three phases over the masters, master0 first, then each other master alone (its own stage),
so at most one API server restarts at a time and the others keep serving:

    cert         the certificate made again with the saved SANs (plugin phase `cert`)
    cert-renew   every certificate renewed (plugin phase `cert-renew`)
    cert-check   the certificates' expiry printed (plugin phase `cert-check`; never journaled)

The plugins say what each master runs (`plugins/*.py`, "cert" regions); the SANs themselves
are in the saved Clusterfile's documents (kubeadm, k0s) or in `cert_sans` (k3s).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.phases.plugin_steps import as_step
from builder.runtime.plugins import base as plugin_phases


def masters_in_order(cluster: Cluster) -> list[HostSpec]:
    """master0, then the other masters in Clusterfile order."""
    master0 = cluster.master0
    return [master0, *(m for m in cluster.masters if m.ip != master0.ip)]


def _master_steps(
    runtime_phase: str, cluster: Cluster, state: PlanState, cert_sans: tuple[str, ...]
) -> list[Step]:
    out: list[Step] = []
    for stage, host in enumerate(masters_in_order(cluster)):
        ctx = replace(state.host_context(cluster, host), cert_sans=cert_sans)
        out.extend(
            as_step(s, host, ctx.env, ctx.rootfs, stage=stage)
            for s in state.plugin.commands(runtime_phase, ctx)
        )
    return out


@dataclass(frozen=True)
class Cert(Phase):
    """The API server certificate of every master made again with the saved SANs."""

    name: ClassVar[str] = "cert"
    title: ClassVar[str] = "API server certificates with the saved SANs, one master at a time"
    cert_sans: tuple[str, ...] = ()

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        return _master_steps(plugin_phases.CERT, cluster, state, self.cert_sans)


@dataclass(frozen=True)
class CertRenew(Phase):
    """Every certificate of every master renewed, then its control plane restarted."""

    name: ClassVar[str] = "cert-renew"
    title: ClassVar[str] = "Renew the certificates, one master at a time"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        return _master_steps(plugin_phases.CERT_RENEW, cluster, state, ())


@dataclass(frozen=True)
class CertCheck(Phase):
    """Each master's certificates and their expiry (read only)."""

    name: ClassVar[str] = "cert-check"
    title: ClassVar[str] = "Certificate expiration on every master"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        return [
            replace(s, journal=False) for s in _master_steps(plugin_phases.CERT_CHECK, cluster, state, ())
        ]
