"""`sealer cluster`: the saved clusters (~/.sealer/<cluster>/): `status` shows one (a table or
JSON on stdout), `import` rebuilds one on this machine from the cluster itself (docs/running.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from builder.cli._cluster_options import saved_cluster_name, ssh_options
from builder.cli.output import print_json, print_table


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cluster() -> None:
    """Saved clusters (~/.sealer/<cluster>/)."""


@cluster.command()
@click.option("--cluster", "cluster_name", help="Cluster name (default: the only saved one).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(cluster_name: str | None, fmt: str) -> None:
    """Hosts, roles, image digest and the last phase each host finished."""
    from builder.runtime import actions

    cluster_name = saved_cluster_name(cluster_name)
    info = actions.status(cluster_name)
    containers = actions.container_status(cluster_name)  # {} unless the hosts are containers
    if containers:
        info["containers"] = containers
    if fmt == "json":
        print_json(info)
        return
    click.echo(f"cluster  {info['name']}")
    click.echo(f"image    {info['image']} ({info['digest']}, {info['platform']})")
    click.echo(f"runtime  {info['runtime']}")
    if info.get("kubeconfig"):
        click.echo(f"kubeconfig  {info['kubeconfig']}")
    click.echo(
        f"state    {'complete' if info['complete'] else 'incomplete: run again to finish'}  ({info['state_dir']})"
    )
    rows = [
        [h["ip"], h["role"], "yes" if h["joined"] else "no", h["last_phase"] or "-"] for h in info["hosts"]
    ]
    print_table(["HOST", "ROLE", "JOINED", "LAST PHASE"], rows)
    if containers:
        click.echo("")
        print_table(
            ["HOST", "CONTAINER", "STATUS"],
            [[ip, c["container"], c["status"]] for ip, c in containers.items()],
        )
    if info["apps"]:
        click.echo("")
        apps = [
            [a["name"], a["image"], a["digest"][:19], "yes" if a["launched"] else "no", a["rootfs"]]
            for a in info["apps"]
        ]
        print_table(["APP", "IMAGE", "DIGEST", "LAUNCHED", "ROOTFS (MASTER0)"], apps)


@cluster.command("import")
@click.option(
    "--kubeconfig",
    required=True,
    type=click.Path(dir_okay=False),
    help="Admin kubeconfig of the cluster: its API server, CA and credentials.",
)
@click.option(
    "-f",
    "--clusterfile",
    "ssh_file",
    type=click.Path(dir_okay=False),
    help="Clusterfile with only this machine's spec.ssh, spec.hosts[].ips/ssh and registry password.",
)
@click.option("--cluster", "cluster_name", help="The cluster's name, checked (an import keeps it).")
@ssh_options
def import_(kubeconfig: str, ssh_file: str | None, cluster_name: str | None, **ssh: Any) -> None:
    """Rebuild ~/.sealer/<cluster>/ from the cluster's ConfigMap kube-system/sealer-clusterfile,
    so that status, join and delete work from this machine (docs/running.md)."""
    from builder.runtime.actions.import_state import import_cluster

    # the SSH flags in the Clusterfile's spelling (spec.ssh), over -f's
    spelling = {"user": "user", "password": "passwd", "key_file": "pk", "passphrase": "pkPasswd"}
    flags: dict[str, Any] = {spelling[k]: v for k, v in ssh.items() if k in spelling and v}
    if ssh["port"]:
        flags["port"] = str(ssh["port"])
    if ssh["known_hosts"]:
        flags["knownHosts"] = ssh["known_hosts"]
    if ssh["insecure_skip_host_key_check"]:
        flags["verifyHostKeys"] = False
    outcome = import_cluster(
        Path(kubeconfig),
        ssh_file=Path(ssh_file) if ssh_file else None,
        ssh_flags=flags,
        expect_name=cluster_name,
    )
    click.echo(outcome.message)
