"""The cluster actions behind `sealer run/apply/join/delete/cluster status`.

Each action reads the saved state (`state.ClusterState`), decides which hosts it works on and
which phases they go through, and hands the plans to the runner (or, with dry-run, prints
them and stops: no connection, no state written).

    run     all phases on all hosts; a re-run resumes (journaled steps are skipped, delivery
            checks itself and moves only what is missing)
    apply   the wanted Clusterfile against the saved one: removed hosts leave (runtime leave,
            clean.sh, rootfs removed, forgotten), new hosts join (check, deliver, init.sh,
            runtime join). A changed image is refused: that is `upgrade`
    join    apply with hosts added to the saved cluster
    delete  hosts (or --all) leave: runtime leave/reset, clean.sh in reverse order (nodes,
            masters, master0 last), then the rootfs goes. Idempotent
    upgrade every host moves to a new image of the same runtime: deliver, init.sh, the
            plugin's upgrade (master0, masters one by one, workers in batches), kubeconfig
    cert    the API server certificates, one master at a time (actions/cert.py): SANs added
            and saved, renewal, expiry
    status  the saved state: hosts, roles, image digest, last phase per host, apps
    exec    one command on the saved cluster's hosts by role or address (remote_exec.py)
    import  the saved state rebuilt from the cluster's ConfigMap on another machine
            (import_state.py; every run saves it there: phases/save_clusterfile.py)
    run_app an app image on a saved cluster: its rootfs into its own tree on master0, then its
            launch commands there (actions/apps.py)

Modules: settings.py (Settings in, Outcome out), prepare.py (the opening run, apply/join,
upgrade and run_app share: probe, pull, load, the action's checks and plugin choice, verify,
the Runner built once), runners.py (the runner and its delivery/removal callbacks), then one
module per action family: install.py, apps.py, remove.py, upgrade.py, status.py; and
registry_refresh.py (the registry hosts' certificate after a master left); containers.py
(CONTAINER clusters: their containers made before and removed after the same actions).

The state is saved before the first host is changed (so an interrupted run can be finished or
deleted) and again, marked complete, at the end: that is the run's last phase, "save-state".
"""

from __future__ import annotations

from builder.runtime.actions.apps import run_app, runs_as_app
from builder.runtime.actions.containers import (
    apply_containers,
    container_status,
    delete_containers,
    join_containers,
    leaving_containers,
    run_containers,
)
from builder.runtime.actions.install import apply, check_upgrade_versions, join, leaving_hosts, run
from builder.runtime.actions.prepare import image_platforms, load_image
from builder.runtime.actions.remove import delete
from builder.runtime.actions.settings import HostSummary, Outcome, Settings
from builder.runtime.actions.status import saved_clusters, status
from builder.runtime.actions.upgrade import default_upgrade_batch, upgrade
from builder.runtime.state import JOINED

__all__ = [
    "JOINED",
    "HostSummary",
    "Outcome",
    "Settings",
    "apply",
    "apply_containers",
    "check_upgrade_versions",
    "container_status",
    "default_upgrade_batch",
    "delete",
    "delete_containers",
    "image_platforms",
    "join",
    "join_containers",
    "leaving_containers",
    "leaving_hosts",
    "load_image",
    "run",
    "run_app",
    "run_containers",
    "runs_as_app",
    "saved_clusters",
    "status",
    "upgrade",
]
