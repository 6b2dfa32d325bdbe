"""What the runtime end-to-end modules (test_runtime_k0s.py, test_runtime_k3s.py,
test_runtime_kubernetes.py) share: the Lab (a store, a state home and fixture hosts with the
systemctl stand-in), the Clusterfile they write, the images built from the stand-ins, and the
readers of what the stand-ins leave on a host. What each runtime checks stays in its module."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from builder.runtime import actions
from builder.runtime.runner import RunOptions
from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.hosts import HostLab, HostSet, TestHost
from tests.standins import install_systemctl, make_bin_dir
from tests.validate import validate_image


@dataclass
class Lab:
    store: Store
    home: Path
    hosts: HostSet
    etc_hosts: dict[str, str]  # each host's /etc/hosts before sealer touched it

    def settings(self, options: RunOptions | None = None) -> actions.Settings:
        return actions.Settings(store=self.store, home=self.home, options=options or RunOptions())

    @property
    def master0(self) -> TestHost:
        return self.hosts[0]


@contextmanager
def open_lab(host_lab: HostLab, store: Store, home: Path, count: int) -> Iterator[Lab]:
    """`count` fresh hosts, each with the systemctl stand-in, and their /etc/hosts as they were.
    The lab takes `store` over: on the way out the hosts are removed and the store closed."""
    hosts = host_lab.make_hosts(count)
    try:
        for host in hosts:
            install_systemctl(host)
        etc_hosts = {h.address: h.path("/etc/hosts").read_text() for h in hosts}
        yield Lab(store, home, hosts, etc_hosts)
    finally:
        host_lab.remove_hosts(hosts)
        store.close()


def build_releases(runtime: str, store: Store, base: Path, image: str, image_next: str) -> None:
    """`image`, the runtime's basefs image built from the stand-ins at their default version
    (v1.29.4), validated; `image_next`, the same at v1.30.0. Bin dirs go under `base`."""
    build_basefs(runtime, make_bin_dir(runtime, base / "bin-v1.29.4"), store, image)
    build_basefs(
        runtime, make_bin_dir(runtime, base / "bin-v1.30.0", "v1.30.0"), store, image_next, version="v1.30.0"
    )
    validate_image(store, image)


# --- the Clusterfile --------------------------------------------------------------------------------


def host_groups(
    hosts: Sequence[TestHost], role: str, ssh: dict[str, Any], node_config: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Clusterfile host groups in host order: a host with labels or taints alone, the others together."""
    groups: list[dict[str, Any]] = []
    for h in hosts:
        config = dict(node_config.get(h.address, {}))
        if not config and groups and set(groups[-1]) == {"ips", "roles", "ssh"}:
            groups[-1]["ips"].append(h.address)
        else:
            groups.append({"ips": [h.address], "roles": [role], "ssh": ssh, **config})
    return groups


def make_clusterfile(
    name: str,
    image: str,
    masters: Sequence[TestHost],
    nodes: Sequence[TestHost],
    hosts: HostSet,
    node_config: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    documents: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The Cluster document `name`, then `documents` (a runtime's own, merged over the image's).
    `node_config`: address -> the host's `labels` and `taints` (it gets a host group of its own)."""
    ssh = {
        "user": "root",
        "useAgent": False,
        "knownHosts": str(hosts.known_hosts),
        "pk": str(hosts.client_key),
    }
    spec = {
        "image": image,
        "hosts": [
            *host_groups(masters, "master", ssh, node_config or {}),
            *host_groups(nodes, "node", ssh, node_config or {}),
        ],
    }
    cluster = {"apiVersion": "sealer.io/v2", "kind": "Cluster", "metadata": {"name": name}, "spec": spec}
    return yaml.safe_dump_all([cluster, *documents], sort_keys=False)


# --- reading the hosts ------------------------------------------------------------------------------


def read_state(lab: Lab, path: str) -> dict[str, Any]:
    """A stand-in's JSON state file on master0 (its "etcd" or datastore)."""
    data: dict[str, Any] = json.loads(lab.master0.path(path).read_text())
    return data


def find_pids(host: TestHost, binary: str) -> list[int]:
    """Processes of `binary` (its absolute path) running inside `host` (its network namespace)."""
    assert host.holder is not None
    netns = os.readlink(f"/proc/{host.holder[0]}/ns/net")
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            ours = entry.name.isdigit() and os.readlink(entry / "ns/net") == netns
            if ours and f"{binary}\0" in (entry / "cmdline").read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids
