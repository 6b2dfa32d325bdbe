"""`cluster status`: the saved state of a cluster as plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.errors import ClusterError
from builder.runtime import delivery
from builder.runtime.actions.apps import APPS_DIR
from builder.runtime.state import JOINED, ClusterState, Journal


def status(name: str, home: Path | None = None) -> dict[str, Any]:
    """The saved state of cluster `name` as plain data (the CLI prints it as a table or JSON)."""
    cs = ClusterState(name, home)
    saved, meta = cs.load_cluster(), cs.load_meta()
    if saved is None or meta is None:
        raise ClusterError(f"no saved cluster {name} in {cs.home}", hint="sealer run IMAGE creates one")
    journal = Journal(cs.journal_path if cs.journal_path.exists() else None)
    hosts = []
    for h in saved.hosts:
        phases = [p for p in journal.phases_done(h.ip, meta.digest) if p != JOINED]
        hosts.append(
            {
                "ip": h.ip,
                "role": "master0" if h.ip == saved.master0.ip else str(h.role),
                "joined": journal.done(meta.digest, JOINED, h.ip, "done"),
                "last_phase": phases[-1] if phases else None,
                "phases": phases,
            }
        )
    return {
        "name": saved.name,
        "image": meta.image,
        "digest": str(meta.digest),
        "platform": meta.platform,
        "runtime": meta.runtime,
        "rootfs": delivery.rootfs_path(saved.name, data_root=saved.data_root),  # on every host
        "complete": meta.complete,
        "updated": meta.updated,
        "state_dir": str(cs.dir),
        "kubeconfig": str(cs.kubeconfig_path) if cs.kubeconfig_path.exists() else None,
        "hosts": hosts,
        "apps": [
            {
                **app.to_json(),
                "host": saved.master0.ip,
                "rootfs": delivery.rootfs_path(
                    saved.name, target=f"{APPS_DIR}/{app.name}", data_root=saved.data_root
                ),
            }
            for app in meta.apps
        ],
    }


def saved_clusters(home: Path | None = None) -> list[str]:
    from builder.runtime.state import state_home

    base = home or state_home()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "Clusterfile").is_file())
