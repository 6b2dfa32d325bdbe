"""sealer's Config documents on real sshd test hosts (`none` runtime): the merged and the
overwritten file are in every host's rootfs before init.sh runs, and a changed Config reaches
the hosts on the next run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.store.layout import Store
from tests.component.runtime.e2e.test_cluster_e2e import clusterfile_text
from tests.conftest import SealerRunner
from tests.hosts import HostSet

IMAGE = "example.test/configs-e2e:v1"
ROOTFS = "/var/lib/sealer/data/configs/rootfs"
INIT = "#!/bin/sh\nset -eu\ncp etc/app.yaml /root/app.yaml.seen-by-init\n"


def _clusterfile(hosts: HostSet, replicas: int) -> str:
    configs = [
        {"apiVersion": "sealer.io/v1", "kind": "Config", "metadata": {"name": "app"},
         "spec": {"path": "etc/app.yaml", "strategy": "merge", "data": f"spec: {{replicas: {replicas}}}\n"}},
        {"apiVersion": "sealer.io/v1", "kind": "Config", "metadata": {"name": "motd"},
         "spec": {"path": "etc/motd", "data": "managed by sealer\n"}},
    ]  # fmt: skip
    text = clusterfile_text([(hosts[0], "master", hosts), (hosts[1], "node", hosts)], name="configs")
    return text.replace("cluster-rootfs:v1", "configs-e2e:v1") + "".join(
        "---\n" + yaml.safe_dump(c, sort_keys=False) for c in configs
    )


def test_configs_reach_every_hosts_rootfs_before_init(
    sealer: SealerRunner, store: Store, host_factory: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    ctx = tmp_path / "ctx"
    (ctx / "etc").mkdir(parents=True)
    (ctx / "scripts").mkdir()
    (ctx / "etc" / "app.yaml").write_text("kind: Deployment\nspec: {replicas: 1, paused: false}\n")
    (ctx / "scripts" / "init.sh").write_text(INIT)
    (ctx / "Kubefile").write_text("FROM scratch\nCOPY etc etc/\nCOPY --chmod=0755 scripts scripts/\n")
    build_image(store, BuildOptions(context=ctx, tags=(IMAGE,), bundle_images=False))
    hosts: HostSet = host_factory(2)  # type: ignore[operator]
    clusterfile = tmp_path / "Clusterfile"
    clusterfile.write_text(_clusterfile(hosts, 3))

    sealer("run", "-f", str(clusterfile))
    for host in hosts:
        app = yaml.safe_load(host.run(f"cat {ROOTFS}/etc/app.yaml").stdout)
        assert app == {"kind": "Deployment", "spec": {"replicas": 3, "paused": False}}
        assert host.run(f"cat {ROOTFS}/etc/motd").stdout == "managed by sealer\n"
        assert yaml.safe_load(host.run("cat /root/app.yaml.seen-by-init").stdout) == app  # before init.sh

    clusterfile.write_text(_clusterfile(hosts, 5))
    sealer("run", "-f", str(clusterfile))
    for host in hosts:
        assert yaml.safe_load(host.run(f"cat {ROOTFS}/etc/app.yaml").stdout)["spec"]["replicas"] == 5
