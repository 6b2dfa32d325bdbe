"""The Clusterfile's `spec.hostAliases` in every host's /etc/hosts, as a block of its own (and
the same for other blocks: the cluster registry's name, phases/registry_trust.py).

The block is tagged with the cluster's name, so a host in two clusters keeps both and each
delete removes only its own; it is written before init.sh (an image's scripts may need a name
it gives, a registry's say) and removed after clean.sh. Both commands are idempotent: the old
block is filtered out and the new one appended in one rewrite, through `cat >` rather than a
rename, because /etc/hosts is often a bind mount (containers) that a rename would detach.
"""

from __future__ import annotations

import shlex

from builder.runtime.cluster import Cluster

ALIASES = "host aliases"


def _markers(cluster: Cluster, block: str) -> tuple[str, str]:
    return (
        f"# BEGIN sealer {block} of cluster {cluster.name}",
        f"# END sealer {block} of cluster {cluster.name}",
    )


def _rewrite(cluster: Cluster, lines: list[str], block: str) -> str:
    """Shell: /etc/hosts without this cluster's `block`, then `lines` (maybe none) appended."""
    begin, end = _markers(cluster, block)
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
    return write_block_command(
        cluster, ALIASES, [f"{a.ip} {' '.join(a.hostnames)}" for a in cluster.host_aliases]
    )


def remove_command(cluster: Cluster) -> str:
    """Shell: this cluster's block out of /etc/hosts (nothing else changes)."""
    return remove_block_command(cluster, ALIASES)


def write_block_command(cluster: Cluster, block: str, entries: list[str]) -> str:
    """Shell: this cluster's `block` of /etc/hosts (its name in the markers: "host aliases",
    "registry"), replaced by `entries` ("IP NAME..." lines)."""
    begin, end = _markers(cluster, block)
    return _rewrite(cluster, [begin, *entries, end], block)


def remove_block_command(cluster: Cluster, block: str) -> str:
    """Shell: this cluster's `block` out of /etc/hosts (nothing else changes)."""
    return _rewrite(cluster, [], block)
