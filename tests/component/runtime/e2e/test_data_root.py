"""spec.dataRoot on real sshd test hosts (`none` runtime): run, join and delete --all with a
data root of its own leave nothing under the default /var/lib/sealer, the scripts run in the
rootfs under the data root, a changed dataRoot is refused with no host touched, and nothing of
the cluster is left under its data root after delete --all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.store.layout import Store
from tests.component.runtime.e2e.test_cluster_e2e import clusterfile_text
from tests.conftest import SealerRunner
from tests.hosts import HostSet, TestHost

IMAGE = "example.test/data-root:v1"
NAME = "dr"
DATA = "/var/tmp/sealer-data"  # a private directory of every test host (tests/hosts.py)
DEFAULT = "/var/lib/sealer"
INIT = '#!/bin/sh\nset -eu\necho "$SEALER_ROOTFS $(pwd)" > /root/init.seen\n'
CLEAN = "#!/bin/sh\nrm -f /root/init.seen\n"


def _clusterfile(members: list[tuple[TestHost, str, HostSet]], data_root: str = DATA) -> str:
    doc = yaml.safe_load(clusterfile_text(members, name=NAME))
    doc["spec"]["image"] = IMAGE
    doc["spec"]["dataRoot"] = data_root
    return yaml.safe_dump(doc, sort_keys=False)


def _tree(host: TestHost, path: str) -> list[str]:
    """Everything under `path` on `host` (nothing when it is absent)."""
    out = host.run(f"if [ -d {path} ]; then find {path} -mindepth 1; fi").stdout
    return sorted(out.split())


@pytest.fixture
def image(store: Store, tmp_path: Path) -> str:
    ctx = tmp_path / "ctx"
    (ctx / "scripts").mkdir(parents=True)
    (ctx / "etc").mkdir()
    (ctx / "scripts" / "init.sh").write_text(INIT)
    (ctx / "scripts" / "clean.sh").write_text(CLEAN)
    (ctx / "etc" / "motd").write_text("hello\n")
    (ctx / "Kubefile").write_text("FROM scratch\nCOPY --chmod=0755 scripts scripts/\nCOPY etc etc/\n")
    build_image(store, BuildOptions(context=ctx, tags=(IMAGE,), bundle_images=False))
    return IMAGE


def test_run_join_delete_keep_everything_under_the_data_root(
    sealer: SealerRunner, image: str, host_factory: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    hosts: HostSet = host_factory(3)  # type: ignore[operator]
    m0, n1, n2 = hosts
    before = {h.address: _tree(h, DEFAULT) for h in hosts}
    first = tmp_path / "Clusterfile"
    first.write_text(_clusterfile([(m0, "master", hosts), (n1, "node", hosts)]))

    sealer("run", "-f", str(first))
    rootfs = f"{DATA}/{NAME}/rootfs"
    for host in (m0, n1):
        assert host.run(f"cat {rootfs}/etc/motd").stdout == "hello\n"
        assert host.run("cat /root/init.seen").stdout.split() == [rootfs, rootfs]  # SEALER_ROOTFS, cwd
        assert host.run(f"readlink {rootfs}").stdout.startswith("rootfs-")
        assert _tree(host, DEFAULT) == before[host.address]
    saved = yaml.safe_load((tmp_path / "state" / NAME / "Clusterfile").read_text())
    assert saved["spec"]["dataRoot"] == DATA
    assert (
        json.loads(sealer("cluster", "status", "--cluster", NAME, "--format", "json").stdout)["rootfs"]
        == rootfs
    )

    ssh = ("-u", "root", "--pk", str(hosts.client_key), "--known-hosts", str(hosts.known_hosts))
    sealer("join", "--nodes", n2.address, "--cluster", NAME, *ssh)
    assert n2.run(f"cat {rootfs}/etc/motd").stdout == "hello\n"
    assert n2.run("cat /root/init.seen").stdout.split() == [rootfs, rootfs]
    assert _tree(n2, DEFAULT) == before[n2.address]

    moved = tmp_path / "Clusterfile.moved"
    moved.write_text(
        _clusterfile([(m0, "master", hosts), (n1, "node", hosts), (n2, "node", hosts)], "/var/tmp/x")
    )
    refused = sealer("apply", "-f", str(moved), expect=1)
    assert (
        "cluster dr already runs; changed in spec: dataRoot /var/tmp/sealer-data -> /var/tmp/x"
        in refused.stderr
    )
    assert "Traceback" not in refused.stderr
    assert all(not _tree(h, "/var/tmp/x") for h in hosts)

    sealer("delete", "--all", "--force", "--cluster", NAME)
    for host in hosts:
        assert _tree(host, DATA) == [], host.address  # nothing of the cluster is left
        assert _tree(host, DEFAULT) == before[host.address]
        assert host.run("test -e /root/init.seen", check=False).returncode != 0  # clean.sh ran


def test_a_container_runtime_the_image_lacks_is_refused_before_any_host(
    sealer: SealerRunner, image: str, host_factory: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    hosts: HostSet = host_factory(1)  # type: ignore[operator]
    doc = yaml.safe_load(_clusterfile([(hosts[0], "master", hosts)]))
    doc["spec"]["containerRuntime"] = {"type": "docker"}
    clusterfile = tmp_path / "Clusterfile"
    clusterfile.write_text(yaml.safe_dump(doc, sort_keys=False))
    line = clusterfile.read_text().splitlines().index("    type: docker") + 1

    refused = sealer("run", "-f", str(clusterfile), expect=1)
    assert refused.stderr.splitlines()[0] == (
        f"error: {clusterfile}:{line}: spec.containerRuntime.type docker: {IMAGE} does not say it runs "
        "docker (no container runtime label)"
    )
    assert "Traceback" not in refused.stderr and "== check" not in refused.stderr  # no host was asked
    assert not (tmp_path / "state" / NAME).exists() and _tree(hosts[0], DATA) == []
