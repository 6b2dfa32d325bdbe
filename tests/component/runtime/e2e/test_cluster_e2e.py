"""End to end on real fixture hosts: the example image examples/cluster-rootfs run, re-run,
scaled up and down, interrupted and resumed, deleted (issue 4 item 9).

The tests of this module run in order on one set of three hosts and one state home: each
starts from what the previous one left (that is the point: a cluster's life, step by step).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import ClusterError, HostError
from builder.runtime import actions
from builder.runtime.cluster import Cluster
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.runner import HostBytes, Notice, RunEvent, RunOptions, StepFinished
from builder.runtime.state import ClusterState
from builder.store.layout import Store
from tests.hosts import HostLab, HostSet, TestHost

EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "cluster-rootfs"
IMAGE = "example.test/cluster-rootfs:v1"
IMAGE_V2 = "example.test/cluster-rootfs:v2"
NAME = "e2e"


def build_example(store: Store) -> None:
    build_image(store, BuildOptions(context=EXAMPLE, tags=(IMAGE,), bundle_images=False))


def clusterfile_text(
    members: Sequence[tuple[TestHost, str, HostSet]],
    *,
    name: str = NAME,
    env: dict[str, str] | None = None,
    password: str | None = None,
    known_hosts: Path | None = None,
) -> str:
    hosts = []
    for host, role, hostset in members:
        ssh: dict[str, object] = {
            "user": "root",
            "useAgent": False,
            "knownHosts": str(known_hosts or hostset.known_hosts),
            "connectTimeout": "5",
        }
        if password is not None:
            ssh["passwd"] = password
        elif host.password:
            ssh["passwd"] = host.password
        else:
            ssh["pk"] = str(hostset.client_key)
        hosts.append({"ips": [host.address], "roles": [role], "ssh": ssh})
    spec: dict[str, object] = {"image": IMAGE, "hosts": hosts}
    if env:
        spec["env"] = [f"{k}={v}" for k, v in env.items()]
    doc = {"apiVersion": "sealer.io/v2", "kind": "Cluster", "metadata": {"name": name}, "spec": spec}
    return yaml.safe_dump(doc, sort_keys=False)


def make_cluster(members: Sequence[tuple[TestHost, str, HostSet]], **kwargs: object) -> Cluster:
    return parse_clusterfile(clusterfile_text(members, **kwargs))  # type: ignore[arg-type]


@dataclass
class Lab:
    store: Store
    home: Path
    hosts: HostSet
    events: list[RunEvent]

    def settings(self) -> actions.Settings:
        self.events.clear()
        return actions.Settings(store=self.store, home=self.home, on_event=self.events.append)

    def members(self) -> list[tuple[TestHost, str, HostSet]]:
        h = self.hosts
        return [(h[0], "master", h), (h[1], "node", h), (h[2], "node", h)]

    def bytes_by_host(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.events:
            if isinstance(e, HostBytes):
                out[e.host] = e.bytes_sent
        return out


@pytest.fixture(scope="module")
def lab(hosts3: HostSet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("e2e")
    store = Store.open(base / "store")
    build_example(store)
    try:
        yield Lab(store, base / "state", hosts3, [])
    finally:
        store.close()


@pytest.fixture(scope="module")
def extra_hosts(host_lab: HostLab) -> Iterator[HostSet]:
    """Two more hosts, made once: a key host that joins and leaves, and a password host.
    (Made per module rather than per test: a host address re-made seconds after its removal
    sometimes does not answer within the fixture's 10 s.)"""
    hosts = host_lab.make_hosts(2, password_host=1)
    try:
        yield hosts
    finally:
        host_lab.remove_hosts(hosts)


def service_pid(host: TestHost, name: str = NAME) -> int | None:
    path = host.path(f"/var/lib/sealer/demo/{name}/service.pid")
    return int(path.read_text()) if path.exists() else None


def in_host_netns(host: TestHost, pid: int) -> bool:
    assert host.holder is not None
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink(f"/proc/{host.holder[0]}/ns/net")
    except FileNotFoundError:
        return False


def assert_installed(host: TestHost, role: str, name: str = NAME) -> None:
    binary = host.path("/usr/local/bin/sealer-demo")
    assert binary.is_file() and os.access(binary, os.X_OK)
    conf = host.path("/etc/sealer-demo/demo.conf").read_text()
    assert f"host={host.address}" in conf and f"role={role}" in conf and f"cluster={name}" in conf
    pid = service_pid(host, name)
    assert pid is not None and in_host_netns(host, pid), f"{host.address}: service not running"
    assert "demo-service" in Path(f"/proc/{pid}/cmdline").read_text()
    assert host.path(f"/var/lib/sealer/data/{name}/rootfs/scripts/init.sh").is_file()


def assert_clean(host: TestHost, pid: int | None, name: str = NAME) -> None:
    assert not host.path("/usr/local/bin/sealer-demo").exists()
    assert not host.path("/etc/sealer-demo").exists()
    assert not host.path(f"/var/lib/sealer/demo/{name}").exists()
    assert not host.path(f"/var/lib/sealer/data/{name}").exists()
    if pid is not None:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "demo-service" not in Path(f"/proc/{pid}/cmdline").read_text()
        )


def test_run_installs_the_example_on_three_hosts(lab: Lab) -> None:
    cluster = make_cluster(lab.members(), env={"DEMO_COLOR": "clusterfile"})
    outcome = actions.run(cluster, lab.settings(), cli_env={"DEMO_GREETING": "from-cli"})
    master, *nodes = lab.hosts
    assert_installed(master, "master")
    for node in nodes:
        assert_installed(node, "node")
    # env precedence: -e over the Clusterfile over the image ENV; SEALER_* from the cluster
    conf = master.path("/etc/sealer-demo/demo.conf").read_text()
    assert "greeting=from-cli" in conf and "color=clusterfile" in conf
    env = nodes[0].path("/etc/sealer-demo/env").read_text()
    assert f"masters={master.address}\n" in env and f"nodes={nodes[0].address},{nodes[1].address}\n" in env
    # launch ran on master0 only, with the app's APPENV
    launched = master.path(f"/var/lib/sealer/demo/{NAME}/launched").read_text()
    assert launched.strip() == f"from-cli cluster {NAME} from {master.address}"
    assert not nodes[0].path(f"/var/lib/sealer/demo/{NAME}/launched").exists()
    # every host received the layers; the summary says so
    assert {h.host for h in outcome.hosts} == set(lab.hosts.addresses)
    assert all(h.bytes_sent > 0 for h in outcome.hosts)
    assert all("host-scripts" in h.phases for h in outcome.hosts)
    # saved state: 0600 files, a log per host with the commands and their status
    cs = ClusterState(NAME, lab.home)
    for path in (cs.clusterfile_path, cs.meta_path, cs.journal_path):
        assert path.stat().st_mode & 0o777 == 0o600
    log = (cs.logs_dir / f"{master.address}.log").read_text()
    assert "sh scripts/init.sh" in log and "exit 0" in log and "sealer-demo installed" in log
    status = actions.status(NAME, lab.home)
    assert status["complete"] and all(h["joined"] for h in status["hosts"])
    assert [h["role"] for h in status["hosts"]] == ["master0", "node", "node"]


def test_run_again_moves_nothing_and_is_fast(lab: Lab) -> None:
    pids = [service_pid(h) for h in lab.hosts]
    cluster = make_cluster(lab.members(), env={"DEMO_COLOR": "clusterfile"})
    started = time.monotonic()
    outcome = actions.run(cluster, lab.settings(), cli_env={"DEMO_GREETING": "from-cli"})
    elapsed = time.monotonic() - started
    assert [h.bytes_sent for h in outcome.hosts] == [0, 0, 0]
    assert lab.bytes_by_host() == {}
    assert elapsed < 2, f"re-run took {elapsed:.2f}s"
    skipped = {(e.phase, e.host) for e in lab.events if isinstance(e, StepFinished) and e.skipped}
    assert {("host-scripts", h) for h in lab.hosts.addresses} <= skipped
    assert [service_pid(h) for h in lab.hosts] == pids  # nothing restarted


def test_apply_adds_a_fourth_host_then_removes_it(lab: Lab, extra_hosts: HostSet) -> None:
    extra = extra_hosts
    h4 = extra[0]
    members = [*lab.members(), (h4, "node", extra)]
    outcome = actions.apply(make_cluster(members, env={"DEMO_COLOR": "clusterfile"}), lab.settings())
    assert [h.host for h in outcome.hosts] == [h4.address]
    assert set(lab.bytes_by_host()) == {h4.address}  # only the new host received layers
    assert outcome.hosts[0].bytes_sent > 0
    assert_installed(h4, "node")
    saved = ClusterState(NAME, lab.home).load_cluster()
    assert saved is not None and saved.ips[-1] == h4.address

    pid = service_pid(h4)
    outcome = actions.apply(make_cluster(lab.members(), env={"DEMO_COLOR": "clusterfile"}), lab.settings())
    assert "removed" in outcome.message
    log = (ClusterState(NAME, lab.home).logs_dir / f"{h4.address}.log").read_text()
    assert "clean.sh" in log and "sealer-demo removed" in log
    assert_clean(h4, pid)
    saved = ClusterState(NAME, lab.home).load_cluster()
    assert saved is not None and h4.address not in saved.ips
    for host in lab.hosts:  # the others are untouched
        assert service_pid(host) is not None


def test_upgrade_to_a_new_version_delivers_it_and_reruns_init(lab: Lab, tmp_path: Path) -> None:
    """With the `none` runtime an upgrade is deliver + init.sh under the new image; the
    plugin phases are empty. Dry-run first, then for real, then again: nothing to do."""
    context = tmp_path / "v2"
    shutil.copytree(EXAMPLE, context)
    (context / "VERSION").write_text("2\n")
    kubefile = (context / "Kubefile").read_text()
    (context / "Kubefile").write_text(
        kubefile.replace("\nLAUNCH ", "\nCOPY VERSION etc/sealer-demo/VERSION\nLAUNCH ")
    )
    build_image(lab.store, BuildOptions(context=context, tags=(IMAGE_V2,), bundle_images=False))
    before = ClusterState(NAME, lab.home).load_meta()
    assert before is not None

    plan = actions.upgrade(NAME, IMAGE_V2, replace(lab.settings(), options=RunOptions(dry_run=True)))
    text = "\n".join(plan.plan)
    assert plan.dry_run and f"# upgrade: cluster {NAME}, image {IMAGE_V2}" in text
    assert "== deliver" in text and "== host-scripts" in text and "== upgrade" not in text
    assert ClusterState(NAME, lab.home).load_meta() == before  # a dry-run changes nothing

    outcome = actions.upgrade(NAME, IMAGE_V2, lab.settings())
    assert outcome.message == f"cluster {NAME} upgraded to {IMAGE_V2}"
    for host in lab.hosts:
        rootfs = host.path(f"/var/lib/sealer/data/{NAME}/rootfs")
        assert (rootfs / "etc/sealer-demo/VERSION").read_text() == "2\n"
        log = (ClusterState(NAME, lab.home).logs_dir / f"{host.address}.log").read_text()
        assert log.count("sealer-demo installed") >= 2  # init.sh ran again, for the new image
        assert service_pid(host) is not None
    meta = ClusterState(NAME, lab.home).load_meta()
    assert meta is not None and meta.image == IMAGE_V2 and meta.digest != before.digest and meta.complete
    status = actions.status(NAME, lab.home)
    assert status["image"] == IMAGE_V2 and all(h["joined"] for h in status["hosts"])
    assert status["kubeconfig"] is None  # the none runtime has no kubeconfig

    again = actions.upgrade(NAME, IMAGE_V2, lab.settings())
    assert again.message == f"cluster {NAME} already runs {IMAGE_V2} ({meta.digest})"
    with pytest.raises(ClusterError, match="would leave cluster e2e without a master"):
        actions.delete(NAME, lab.settings(), masters=[lab.hosts[0].address])


def test_delete_all_leaves_every_host_clean(lab: Lab) -> None:
    pids = [service_pid(h) for h in lab.hosts]
    outcome = actions.delete(NAME, lab.settings(), all_=True)
    assert outcome.message == f"cluster {NAME} deleted"
    for host, pid in zip(lab.hosts, pids, strict=True):
        assert_clean(host, pid)
    assert not ClusterState(NAME, lab.home).dir.exists()
    with pytest.raises(ClusterError, match=f"no saved cluster {NAME} in .*: nothing deleted"):
        actions.delete(NAME, lab.settings(), all_=True)  # never a success for a cluster not saved


def test_sshd_killed_during_delivery_fails_naming_the_host_and_a_rerun_resumes(lab: Lab) -> None:
    name = "e2e-resume"
    victim = lab.hosts[1]
    cluster = make_cluster(lab.members(), name=name)
    settings = lab.settings()
    killed: list[str] = []

    def on_event(event: RunEvent) -> None:
        lab.events.append(event)
        if isinstance(event, HostBytes) and event.host == victim.address and not killed:
            killed.append(event.host)
            victim.kill_sshd()

    settings = actions.Settings(store=lab.store, home=lab.home, on_event=on_event)
    try:
        with pytest.raises(HostError) as info:
            actions.run(cluster, settings)
        assert killed == [victim.address]
        assert info.value.host == victim.address
        assert str(info.value).startswith(f"{victim.address}: deliver failed")
        assert "\n" not in str(info.value)
        # the state was saved before any host changed: the run can be finished (or deleted)
        meta = ClusterState(name, lab.home).load_meta()
        assert meta is not None and not meta.complete
        assert not victim.path("/usr/local/bin/sealer-demo").exists()
    finally:
        victim.start_sshd()
    outcome = actions.run(cluster, lab.settings())
    sent = {h.host: h.bytes_sent for h in outcome.hosts}
    assert sent[victim.address] > 0
    assert_installed(victim, "node", name)
    assert actions.status(name, lab.home)["complete"]
    actions.delete(name, lab.settings(), all_=True)
    for host in lab.hosts:
        assert_clean(host, None, name)


def test_a_dead_node_is_deleted_with_skip_unreachable(lab: Lab, extra_hosts: HostSet) -> None:
    """A node whose sshd is gone: delete fails naming it and forgets nothing; with
    skip_unreachable its own steps are skipped with a warning and the state forgets it."""
    name = "e2e-dead"
    dead = extra_hosts[0]
    members = [(lab.hosts[0], "master", lab.hosts), (dead, "node", extra_hosts)]
    actions.run(make_cluster(members, name=name), lab.settings())
    dead.kill_sshd()
    try:
        with pytest.raises(HostError) as info:
            actions.delete(name, lab.settings(), nodes=[dead.address])
        assert info.value.host == dead.address and "connection refused" in str(info.value)
        saved = ClusterState(name, lab.home).load_cluster()
        assert saved is not None and dead.address in saved.ips

        outcome = actions.delete(name, lab.settings(), nodes=[dead.address], skip_unreachable=True)
        assert outcome.message == f"removed {dead.address} from cluster {name}"
        notices = [e.message for e in lab.events if isinstance(e, Notice)]
        assert any(m.startswith(f"warning: {dead.address}:22: connection refused: skipping") for m in notices)
        saved = ClusterState(name, lab.home).load_cluster()
        assert saved is not None and saved.ips == (lab.hosts[0].address,)
        assert dead.path("/usr/local/bin/sealer-demo").exists()  # nothing ran there
    finally:
        dead.start_sshd()
    dead.run(f"cd /var/lib/sealer/data/{name}/rootfs && SEALER_CLUSTER={name} sh scripts/clean.sh")
    dead.run(f"rm -rf /var/lib/sealer/data/{name}")  # what the skipped steps would have done
    actions.delete(name, lab.settings(), all_=True)
    assert_clean(lab.hosts[0], None, name)


def test_wrong_password_is_one_line_and_changes_nothing(lab: Lab, extra_hosts: HostSet) -> None:
    host = extra_hosts[1]
    assert host.password
    cluster = make_cluster([(host, "master", extra_hosts)], name="e2e-pw", password="not-the-password")
    with pytest.raises(HostError) as info:
        actions.run(cluster, lab.settings())
    message = str(info.value)
    assert message == f"{host.address}: check failed: authentication failed for root (password)"
    assert not ClusterState("e2e-pw", lab.home).exists()


def test_unknown_host_key_is_one_line(lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = lab.hosts[0]
    cluster = make_cluster([(host, "master", lab.hosts)], name="e2e-key", known_hosts=empty)
    with pytest.raises(HostError) as info:
        actions.run(cluster, lab.settings())
    assert str(info.value) == f"{host.address}: check failed: host key not in {empty}"
    assert not ClusterState("e2e-key", lab.home).exists()
