"""The cluster of `sealer run IMAGE --masters IPS --nodes IPS ...` (`cluster_from_flags`): the
same checks as a Clusterfile's, each failure a UsageError naming the flag. clusterfile.py
re-exports it beside `load_clusterfile`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

from builder.errors import ImageError, InvalidCluster, InvalidEnv, UsageError
from builder.image.reference import Reference
from builder.runtime.cluster import (
    DEFAULT_CLUSTER_NAME,
    Cluster,
    HostSpec,
    Role,
    SSHSpec,
    check_cluster_name,
    parse_ip,
    parse_ip_list,
)
from builder.runtime.clusterfile_hosts import check_ssh_file
from builder.runtime.env import check_env_name

_T = TypeVar("_T")


def cluster_from_flags(
    image: str,
    masters: str | None = None,
    nodes: str | None = None,
    *,
    password: str | None = None,
    key_file: str | None = None,
    passphrase: str | None = None,
    port: int | None = None,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    cmds: Sequence[str] = (),
    cmd_args: Sequence[str] = (),
    name: str = DEFAULT_CLUSTER_NAME,
    local_ip: str = "127.0.0.1",
) -> Cluster:
    """The cluster of `sealer run IMAGE [--masters IPS] [--nodes IPS] ...`; UsageError names the flag.

    `masters`/`nodes` take lists and `a-b` ranges (`parse_ip_list`). With no masters the local
    machine (`local_ip`, `local=True`) is the single master and is reached without SSH. `env`
    (from `env.parse_env_args`) becomes the cluster env: with flags there is no host env, so
    the precedence is the same as passing it again as the `-e` layer.
    """

    def flag(name_: str, make: Callable[[], _T]) -> _T:
        try:
            return make()
        except (InvalidCluster, InvalidEnv, ImageError) as err:
            raise UsageError(f"{name_}: {err.message}", hint=err.hint) from None

    flag("IMAGE", lambda: Reference.parse(image))
    if key_file:
        flag("--pk", partial(check_ssh_file, key_file, "private key"))
    flag("--cluster", lambda: check_cluster_name(name))
    cluster_env = dict(env or {})
    for key in cluster_env:
        flag("-e", partial(check_env_name, key))
    ssh = flag(
        "--port",
        lambda: SSHSpec(
            user=user,
            port=port,
            password=password or None,
            key_files=(key_file,) if key_file else (),
            passphrase=passphrase or None,
        ),
    )
    master_ips = flag("--masters", lambda: parse_ip_list(masters)) if masters else ()
    node_ips = flag("--nodes", lambda: parse_ip_list(nodes)) if nodes else ()
    if not master_ips:
        if node_ips:
            raise UsageError("--nodes needs --masters", hint="give the master addresses too")
        master_ips = (flag("local address", lambda: parse_ip(local_ip)),)
        local = True
    else:
        local = False
    both = sorted(set(master_ips) & set(node_ips))
    if both:
        raise UsageError(
            f"--nodes: {both[0]} is also in --masters", hint="a host is a master or a node, not both"
        )
    hosts = tuple(HostSpec(ip, (Role.MASTER,), ssh, local=local) for ip in master_ips) + tuple(
        HostSpec(ip, (Role.NODE,), ssh) for ip in node_ips
    )
    return flag(
        "--masters",
        lambda: Cluster(
            name=name,
            image=image,
            hosts=hosts,
            env=cluster_env,
            cmds=tuple(cmds),
            cmd_args=tuple(cmd_args),
            ssh=ssh,
        ),
    )
