"""`cert`: the API server certificates of a saved cluster (`sealer cert`).

    --alt-names  SANs added to the API server certificate of every master, one master at a
                 time (phase `cert`); saved first (state.json's cert_sans and, for kubeadm and
                 k0s, the Clusterfile's ClusterConfiguration / ClusterConfig), so later joins and
                 upgrades keep them
    --renew      every certificate renewed, one master at a time (phase `cert-renew`)
    --check-expiration  each master's certificates and their expiry (phase `cert-check`)

Built as `upgrade` is: `prepare` (probe, the cluster's own image loaded for its plugin and
config files, the Runner), then the phase; `--dry-run` prints the same plan. Steps are
journaled under the image digest, so a failed cert resumes at the master that failed; once
the phase is done its entries are dropped, so the next `sealer cert` runs again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import replace

from builder.errors import ClusterError, UsageError
from builder.image.descriptor import Platform
from builder.runtime import delivery
from builder.runtime.actions.prepare import Decision, Request, assume, prepare, with_plugin
from builder.runtime.actions.settings import Outcome, Settings, host_summaries, require_store
from builder.runtime.cluster import Cluster
from builder.runtime.cluster_mirror import MirrorFacts
from builder.runtime.dryrun import format_plan
from builder.runtime.facts import Facts
from builder.runtime.phases import Check, ImageInfo, Phase, PlanState
from builder.runtime.phases.cert import Cert, CertCheck, CertRenew
from builder.runtime.phases.save_clusterfile import SaveClusterfile
from builder.runtime.plugins import RuntimePlugin, get_plugin
from builder.runtime.plugins.base import cert_check_output
from builder.runtime.state import ClusterState, SavedMeta

MAX_ALT_NAMES = 100  # SANs one `sealer cert` may add (kubeadm writes them all into one cert)
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def parse_alt_names(text: str) -> tuple[str, ...]:
    """`--alt-names NAME,IP,...`: each an IP address or a DNS name (RFC 1123, a leading `*.`
    wildcard allowed); duplicates dropped, order kept. Anything else is a UsageError."""
    out: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not _is_ip(name) and not _is_dns_name(name):
            shown = name if len(name) <= 80 else name[:77] + "..."
            raise UsageError(
                f"--alt-names: {shown!r} is neither an IP address nor a DNS name",
                hint="give a comma-separated list such as api.example.com,10.0.0.100",
            )
        out.append(str(ipaddress.ip_address(name)) if _is_ip(name) else name.lower())
    names = tuple(dict.fromkeys(out))
    if len(names) > MAX_ALT_NAMES:
        raise UsageError(f"--alt-names: {len(names)} names, at most {MAX_ALT_NAMES}")
    return names


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_dns_name(text: str) -> bool:
    name = text.lower()
    if name.startswith("*."):
        name = name[2:]
    if not name or len(name) > 253 or name.endswith("."):
        return False
    labels = name.split(".")
    # an all-numeric dotted name is an address kubeadm would take for one (10.0.0.300)
    return all(_DNS_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def _saved(name: str, settings: Settings) -> tuple[ClusterState, Cluster, SavedMeta]:
    cs = ClusterState(name, settings.home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None or meta is None:
        raise ClusterError(f"no saved cluster {name}", hint="sealer run IMAGE --masters ... first")
    if not meta.complete:
        raise ClusterError(
            f"cluster {name}: the last command on it (with {meta.image}) did not finish",
            hint="finish it first (the same command again), then sealer cert",
        )
    return cs, saved, meta


def _phase(alt_names: tuple[str, ...], renew: bool, meta: SavedMeta) -> Phase:
    if alt_names:
        return Cert(tuple(dict.fromkeys((*meta.cert_sans, *alt_names))))
    return CertRenew() if renew else CertCheck()


def _mirror(cs: ClusterState, phase: Phase, meta: SavedMeta) -> MirrorFacts:
    """What save-clusterfile keeps after this cert: the SANs as they will be saved."""
    return MirrorFacts.from_state_dir(cs.dir, phase.cert_sans if isinstance(phase, Cert) else meta.cert_sans)


def _phases(phase: Phase) -> tuple[Phase, ...]:
    """The cert phase, then (unless only reading expiry) the cluster saved in the cluster."""
    return (phase,) if isinstance(phase, CertCheck) else (phase, SaveClusterfile())


def _with_sans(cluster: Cluster, phase: Phase, plugin: RuntimePlugin, info: ImageInfo) -> Cluster:
    return plugin.with_cert_sans(cluster, phase.cert_sans, info.files) if isinstance(phase, Cert) else cluster


def cert(
    name: str,
    settings: Settings,
    *,
    alt_names: tuple[str, ...] = (),
    renew: bool = False,
) -> Outcome:
    """`sealer cert`: with `alt_names`, add them to every master's API server certificate;
    with `renew`, renew every certificate; else show each master's certificate expiry."""
    cs, saved, meta = _saved(name, settings)
    plugin = get_plugin(meta.runtime)
    plugin.with_cert_sans(saved, (), {})  # the `none` runtime refuses here, before any host
    phase = _phase(alt_names, renew, meta)
    masters = tuple(m.ip for m in saved.masters)
    if settings.options.dry_run:
        return _dry_run(saved, meta, phase, settings, cs)

    wanted: list[Cluster] = []

    def decide(info: ImageInfo, dimg: delivery.DeliveryImage, platform: Platform) -> Decision:
        info, chosen = with_plugin(require_store(settings), info, dimg, meta.runtime)
        wanted.append(_with_sans(saved, phase, chosen, info))
        mirror = _mirror(cs, phase, meta)
        return Decision(PlanState(info, chosen, masters, meta.cli_env, settings.root, mirror=mirror))

    keep = frozenset(cert_check_output(ip) for ip in masters)
    request = Request(saved, meta.image, masters, meta.cli_env, decide, keep)

    async def go() -> Outcome:
        journal = cs.journal()
        driver = settings.driver_factory(saved)
        try:
            prepared = await prepare(request, settings, cs, journal, driver)
            if isinstance(prepared, Outcome):
                return prepared
            cluster = wanted[0]
            if isinstance(phase, Cert):
                if phase.cert_sans != meta.cert_sans:  # a new request: nothing of an older one resumes
                    journal.forget_phase(phase.name, masters)
                cs.save(cluster, replace(meta, cert_sans=phase.cert_sans))
            runner = prepared.runner
            for each in _phases(phase):
                steps = each.plan(cluster, prepared.facts, prepared.state)
                if steps:
                    await runner.run_phase(each, steps)
            journal.forget_phase(phase.name, masters)
        finally:
            await driver.close()
        report: tuple[str, ...] = ()
        if isinstance(phase, CertCheck):
            report = tuple(
                line
                for ip in masters
                for line in (f"== {ip}", *runner.outputs.get(cert_check_output(ip), "").splitlines())
            )
        return Outcome(
            cluster, _message(name, phase, len(masters)), report, host_summaries(cluster, runner, masters)
        )

    with cs.lock():
        return asyncio.run(go())


def _message(name: str, phase: Phase, masters: int) -> str:
    if isinstance(phase, Cert):
        return (
            f"cluster {name}: API server certificate SANs {', '.join(phase.cert_sans)} on {masters} master(s)"
        )
    if isinstance(phase, CertRenew):
        return f"cluster {name}: certificates renewed on {masters} master(s)"
    return f"cluster {name}: certificate expiry of {masters} master(s)"


def _dry_run(saved: Cluster, meta: SavedMeta, phase: Phase, settings: Settings, cs: ClusterState) -> Outcome:
    store = require_store(settings)
    platform, info, dimg = assume(settings, meta.image, Platform.host())
    info, plugin = with_plugin(store, info, dimg, meta.runtime)
    cluster = _with_sans(saved, phase, plugin, info)
    masters = tuple(m.ip for m in cluster.masters)
    state = PlanState(info, plugin, masters, meta.cli_env, settings.root, mirror=_mirror(cs, phase, meta))
    facts = Facts.assume(masters, platform)
    plans = [(p, p.plan(cluster, facts, state)) for p in (Check(), *_phases(phase))]
    lines = [
        f"# cert: cluster {cluster.name}, image {meta.image} ({info.digest}), runtime {plugin.name}",
        f"# dry-run: nothing is changed and no host is contacted; every host is assumed to be {platform}",
        *format_plan(cluster, plans, verbose=settings.options.verbose),
    ]
    if isinstance(phase, Cert):
        lines += [
            "== save-state: Save the cluster (this machine, before the first master changes)",
            f"    write {cs.clusterfile_path} (0600), {cs.meta_path.name} (cert_sans: {', '.join(phase.cert_sans)})",
        ]
    return Outcome(cluster, "dry-run", tuple(lines), dry_run=True)
