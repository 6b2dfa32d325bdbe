"""The Clusterfile's `spec.hostAliases` in every host's /etc/hosts, as a block of its own.

The block is tagged with the cluster's name, so a host in two clusters keeps both and each
delete removes only its own; it is written before init.sh (an image's scripts may need a name
it gives, a registry's say) and removed after clean.sh. Both commands are idempotent: the old
block is filtered out and the new one appended in one rewrite, through `cat >` rather than a
rename, because /etc/hosts is often a bind mount (containers) that a rename would detach.
"""

from __future__ import annotations

import shlex

from builder.runtime.cluster import Cluster


def _markers(cluster: Cluster) -> tuple[str, str]:
    return (
        f"# BEGIN sealer host aliases of cluster {cluster.name}",
        f"# END sealer host aliases of cluster {cluster.name}",
    )


def _rewrite(cluster: Cluster, lines: list[str]) -> str:
    """Shell: /etc/hosts without this cluster's block, then `lines` (maybe none) appended."""
    begin, end = _markers(cluster)
    add = "".join(f" {shlex.quote(line)}" for line in lines)
    append = f"printf '%s\\n'{add} >> \"$tmp\"; " if lines else ""
    return (
        "tmp=$(mktemp /etc/.hosts.sealer.XXXXXX) && trap 'rm -f \"$tmp\"' EXIT && "
        f"awk -v b={shlex.quote(begin)} -v e={shlex.quote(end)} "
        "'$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' /etc/hosts > \"$tmp\" && "
        f'{{ {append}cat "$tmp" > /etc/hosts; }}'
    )


def write_command(cluster: Cluster) -> str:
    """Shell: this cluster's block of /etc/hosts, replaced by `cluster.host_aliases`."""
    begin, end = _markers(cluster)
    entries = [f"{a.ip} {' '.join(a.hostnames)}" for a in cluster.host_aliases]
    return _rewrite(cluster, [begin, *entries, end])


def remove_command(cluster: Cluster) -> str:
    """Shell: this cluster's block out of /etc/hosts (nothing else changes)."""
    return _rewrite(cluster, [])
