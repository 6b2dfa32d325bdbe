"""Fan-out delivery on real fixture hosts with Debian's real `docker-registry` (distribution)
under the systemctl stand-in, the registry over TLS with htpasswd auth: a k3s image (the
stand-ins) run with `--distribution fanout` on 2 masters (the registry hosts: the seeds, K=2)
and 4 nodes (the fetchers); a 7th host joins later.

Proven: every host gets the same tree; the controller sends each image layer to the 2 seeds
only (counted in bytes); the fetchers got their layers over HTTPS from the seeds' registry; a
re-run moves 0 bytes; a seed's registry and sshd killed mid-wave make its fetchers fail over
and the delivery finishes; a blob corrupted in a seed's registry storage is refused by its
fetchers and fetched from the other seed; a seed serving nothing is not asked; the fetcher of
a wave server that dies fails over to the seed; a joining node
fetches from the masters; under auto a fetcher without curl or wget is served by this machine.
The tests run in order on one set of hosts.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from builder.image.descriptor import Platform
from builder.runtime import actions, delivery, fanout, fanout_fetch, fanout_waves, registry_pki
from builder.runtime.cluster import Cluster, HostSpec, Role
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.infra.routing import make_driver
from builder.runtime.phases.registry_service import storage_dir, unit_name
from builder.runtime.registry_pki import RegistryMaterial
from builder.runtime.state import ClusterState
from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.component.runtime.e2e._runtime_lab import make_clusterfile, open_lab
from tests.hosts import HostLab, HostSet, TestHost
from tests.standins import make_bin_dir

IMAGE = "example.test/k3s-fanout:v1"
NAME = "e2efan"
USER, PASSWORD = "admin", "fan-out pass"


@dataclass
class Lab:
    store: Store
    home: Path
    hosts: HostSet

    def clusterfile(self) -> str:
        doc = yaml.safe_load(make_clusterfile(NAME, IMAGE, self.hosts[:2], self.hosts[2:6], self.hosts))
        doc["spec"]["registry"] = {"localRegistry": {"username": USER, "password": PASSWORD}}
        return yaml.safe_dump(doc, sort_keys=False)

    def settings(self, **changes: object) -> actions.Settings:
        return replace(actions.Settings(store=self.store, home=self.home, distribution="fanout"), **changes)  # type: ignore[arg-type]

    @property
    def seeds(self) -> list[TestHost]:
        return list(self.hosts[:2])

    @property
    def fetchers(self) -> list[TestHost]:
        return list(self.hosts[2:6])

    @property
    def joining(self) -> TestHost:
        return self.hosts[6]


@pytest.fixture(scope="module")
def lab(host_lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("fanout")
    with open_lab(host_lab, Store.open(base / "store"), base / "state", 7) as made:
        build_basefs("k3s", make_bin_dir("k3s", base / "bin"), made.store, IMAGE)
        yield Lab(made.store, made.home, made.hosts)


def image_bytes(lab: Lab) -> int:
    dimg = delivery.prepare_image(lab.store, IMAGE, Platform.host())
    return sum(layer.descriptor.size for layer in dimg.layers)


def tree(host: TestHost) -> str:
    """Every path of the host's rootfs with its type, size and sha256 (files)."""
    rootfs = delivery.rootfs_path(NAME)
    return host.run(
        f"cd {rootfs}/ && find . -printf '%p %y %s\\n' | sort && "
        "find . -type f -print0 | sort -z | xargs -0 sha256sum"
    ).stdout


def bytes_by_host(outcome: actions.Outcome) -> dict[str, int]:
    return {h.host: h.bytes_sent for h in outcome.hosts}


def test_fanout_run_sends_each_layer_to_the_seeds_only(lab: Lab) -> None:
    notices: list[str] = []
    settings = lab.settings(on_event=lambda e: notices.append(str(e)))
    outcome = actions.run(parse_clusterfile(lab.clusterfile()), settings)
    assert "6 host(s) done" in outcome.message
    sent = bytes_by_host(outcome)
    size = image_bytes(lab)
    for seed in lab.seeds:  # the whole image, plus the seed's rendered templates
        assert size <= sent[seed.address] < size + 64 * 1024
    for fetcher in lab.fetchers:  # only its rendered templates: the layers came from the seeds
        assert sent[fetcher.address] < 64 * 1024
    assert sum(sent.values()) < 2 * size + 6 * 64 * 1024  # each layer left this machine K=2 times
    trees = {h.address: tree(h) for h in lab.hosts[:6]}
    assert len(set(trees.values())) == 1 and trees[lab.hosts[0].address].count("\n") > 10
    for fetcher in lab.fetchers:  # its layers are in its blob cache, verified, from the registry
        kept = fetcher.run("ls /var/lib/sealer/blobs/sha256").stdout.split()
        assert len(kept) == len(delivery.prepare_image(lab.store, IMAGE, Platform.host()).layers)
    served = lab.seeds[0].run(
        f"ls {storage_dir(NAME)}/docker/registry/v2/repositories/{fanout.repository(NAME)}/_layers/sha256"
    )
    assert len(served.stdout.split()) == len(kept)


def test_a_rerun_moves_no_bytes(lab: Lab) -> None:
    outcome = actions.run(parse_clusterfile(lab.clusterfile()), lab.settings())
    assert sum(bytes_by_host(outcome).values()) == 0


def _redeliver_fetchers(
    lab: Lab,
    on_event: object,
    mode: str = "fanout",
    max_parallel: int = 8,
    *,
    k: int | None = None,
    wave_width: int | None = None,
) -> dict[str, fanout.FanoutDelivery]:
    """The fetchers' rootfs and blobs removed, then fan-out delivery of the fetchers alone
    (the seeds' registry serving), as deliver-fetch runs it."""
    cluster = parse_clusterfile(lab.clusterfile())
    dimg = delivery.prepare_image(lab.store, IMAGE, Platform.host())
    material = _material(lab, cluster)
    plan = fanout.choose(mode, k, cluster, [h.ip for h in cluster.hosts], material, storage_dir(NAME))
    assert plan is not None and material is not None
    if wave_width is not None:
        plan = replace(plan, wave_width=wave_width)
    plan = fanout_waves.with_wave_material(plan, ClusterState(NAME, lab.home).dir, material)
    addresses = list(plan.fetchers)
    by_address = {h.address: h for h in lab.hosts}
    for address in addresses:
        by_address[address].run(f"rm -rf /var/lib/sealer/data/{NAME} /var/lib/sealer/blobs")

    async def go() -> dict[str, fanout.FanoutDelivery]:
        driver = make_driver(cluster)
        try:
            env = {a: {"SEALER_X": "1"} for a in addresses}
            return await fanout.deliver_hosts(
                driver,
                lab.store,
                dimg,
                NAME,
                env,
                plan,
                on_event=on_event,  # type: ignore[arg-type]
                max_parallel=max_parallel,
            )
        finally:
            await driver.close()

    return asyncio.run(go())


def _material(lab: Lab, cluster: Cluster) -> RegistryMaterial | None:
    """The cluster's registry material as the run kept it in its state."""
    return registry_pki.load_or_make(ClusterState(NAME, lab.home).dir, cluster)


def test_a_seeds_registry_and_sshd_killed_mid_wave_its_fetchers_fail_over(lab: Lab) -> None:
    events: list[object] = []
    stopped: list[str] = []

    def on_event(event: object) -> None:
        events.append(event)
        # the first blob of the wave: one fetcher at a time, so the others are still to come
        if isinstance(event, fanout_fetch.BlobFetched) and not stopped:
            lab.seeds[0].run(f"systemctl stop {unit_name(NAME)}")
            lab.seeds[0].kill_sshd()
            stopped.append(event.source)

    try:
        results = _redeliver_fetchers(lab, on_event, max_parallel=1)
    finally:
        lab.seeds[0].start_sshd()
        lab.seeds[0].run(f"systemctl start {unit_name(NAME)}")
    failed = [e for e in events if isinstance(e, fanout_fetch.FetchFailed)]
    assert failed and all(e.source == lab.seeds[0].address and not e.refused for e in failed)
    assert all(r.result.rebuilt for r in results.values())
    assert lab.seeds[1].address in {s for r in results.values() for s in r.sources}
    assert len({tree(h) for h in (*lab.fetchers, lab.seeds[0])}) == 1


def test_a_corrupted_blob_in_a_seeds_storage_is_refused_and_fetched_elsewhere(lab: Lab) -> None:
    dimg = delivery.prepare_image(lab.store, IMAGE, Platform.host())
    biggest = max(dimg.layers, key=lambda layer: layer.descriptor.size).descriptor.digest.hex
    data = f"{storage_dir(NAME)}/docker/registry/v2/blobs/sha256/{biggest[:2]}/{biggest}/data"
    seed = lab.seeds[0]
    # a copy, not in place: the data file is a hardlink of the seed's own blob cache
    seed.run(
        f"cp {data} /tmp/good && cp {data} {data}.x && printf X | dd of={data}.x bs=1 seek=100 conv=notrunc "
        f"2>/dev/null && mv -f {data}.x {data}"
    )
    events: list[object] = []
    try:
        results = _redeliver_fetchers(lab, events.append)
    finally:
        seed.run(f"mv -f /tmp/good {data}")
    refused = [e for e in events if isinstance(e, fanout_fetch.FetchFailed) and e.refused]
    assert refused and {e.source for e in refused} == {seed.address}
    assert all(e.digest == f"sha256:{biggest}" for e in refused)
    assert all(r.result.bytes_sent < 64 * 1024 for r in results.values())  # the other seed served it
    assert len({tree(h) for h in (*lab.fetchers, lab.seeds[1])}) == 1


def test_a_seed_that_serves_nothing_is_not_asked(lab: Lab) -> None:
    """As after an earlier delivery over SSH, which kept no blobs: its fetchers ask the other."""
    layers = f"{storage_dir(NAME)}/docker/registry/v2/repositories/{fanout.repository(NAME)}/_layers"
    seed = lab.seeds[0]
    seed.run(f"mv {layers} {layers}.away")
    events: list[object] = []
    try:
        results = _redeliver_fetchers(lab, events.append)
    finally:
        seed.run(f"mv {layers}.away {layers}")
    assert not [e for e in events if isinstance(e, fanout_fetch.FetchFailed)]
    assert {s for r in results.values() for s in r.sources} == {lab.seeds[1].address}
    assert all(r.result.bytes_sent < 64 * 1024 for r in results.values())


def test_waves_hosts_that_finished_serve_the_next_and_stop_after(lab: Lab) -> None:
    """K=1 and one fetcher a server at once: master0 serves the first fetcher; a node that
    finished starts a wave server (the host's docker-registry, over TLS from the cluster CA,
    with the registry's htpasswd) and serves those still waiting; every wave server is gone
    afterwards (no process, no directory)."""
    events: list[object] = []
    results = _redeliver_fetchers(lab, events.append, k=1, wave_width=1)
    nodes = {h.address for h in lab.fetchers}
    started = [e.host for e in events if isinstance(e, fanout_waves.WaveServer) and not e.error]
    assert started and set(started) <= nodes, events
    from_waves = [e for e in events if isinstance(e, fanout_fetch.BlobFetched) and e.source in nodes]
    assert from_waves and not [e for e in events if isinstance(e, fanout_fetch.FetchFailed)]
    assert all(r.result.bytes_sent < 64 * 1024 for r in results.values())  # nothing from here
    assert len({tree(h) for h in (*lab.fetchers, lab.seeds[1], lab.seeds[0])}) == 1
    for host in lab.fetchers:
        assert not host.path(f"/var/lib/sealer/data/{NAME}/.wave-registry").exists()
    leftover = subprocess.run(["pgrep", "-f", f"{NAME}/.wave-registry"], capture_output=True, check=False)
    assert leftover.stdout == b"", leftover.stdout


def test_a_wave_server_that_dies_its_fetcher_fails_over_to_the_seed(lab: Lab) -> None:
    """The first wave server killed (registry and its timeout, SIGKILL) as soon as it started:
    the fetcher it was given (one, already waiting) gets every layer from the seed, not from
    this machine (a wave's fetcher asks every server, wave servers counted, before giving up).
    That a dead server is given to no later fetcher: test_fanout_servers.py."""
    events: list[object] = []
    killed: list[str] = []
    by_address = {h.address: h for h in lab.hosts}

    def on_event(event: object) -> None:
        events.append(event)
        if isinstance(event, fanout_waves.WaveServer) and not event.error and not killed:
            pid = f"/var/lib/sealer/data/{NAME}/.wave-registry/pid"
            by_address[event.host].run(f'w=$(cat {pid}); pkill -9 -P "$w"; kill -9 "$w"')
            killed.append(event.host)

    results = _redeliver_fetchers(lab, on_event, k=1, wave_width=1)
    assert killed, events
    failed = [e for e in events if isinstance(e, fanout_fetch.FetchFailed)]
    assert {e.source for e in failed} <= set(killed), failed
    assert len({e.host for e in failed}) == 1, failed  # given to the one fetcher waiting then
    assert all(r.result.bytes_sent < 64 * 1024 for r in results.values())  # served by the seed
    assert len({tree(h) for h in (*lab.fetchers, lab.seeds[1], lab.seeds[0])}) == 1
    leftover = subprocess.run(["pgrep", "-f", f"{NAME}/.wave-registry"], capture_output=True, check=False)
    assert leftover.stdout == b"", leftover.stdout


def test_a_node_joining_fetches_from_the_masters_registry(lab: Lab) -> None:
    """A join delivers to no registry host: the new node fetches what the run published on
    the masters (standing servers), and only its rendered templates come from this machine."""
    cluster = parse_clusterfile(lab.clusterfile())
    node = HostSpec(lab.joining.address, (Role.NODE,), cluster.master0.ssh)
    outcome = actions.join(NAME, [node], lab.settings())
    sent = bytes_by_host(outcome)
    assert sent[lab.joining.address] < 64 * 1024
    assert tree(lab.joining) == tree(lab.seeds[0])
    kept = lab.joining.run("ls /var/lib/sealer/blobs/sha256").stdout.split()
    assert len(kept) == len(delivery.prepare_image(lab.store, IMAGE, Platform.host()).layers)


def test_with_auto_a_fetcher_without_curl_or_wget_gets_its_layers_from_this_machine(lab: Lab) -> None:
    """Last: the host keeps its whiteouts over curl and wget (its own /usr/bin overlay)."""
    bare, other = lab.fetchers[1], lab.fetchers[0]
    bare.run("rm -f /usr/bin/curl /usr/bin/wget")
    assert bare.run("command -v curl || command -v wget", check=False).returncode != 0
    events: list[object] = []
    results = _redeliver_fetchers(lab, events.append, mode="auto")
    said = [e for e in events if isinstance(e, fanout_fetch.FetchFailed)]
    assert len(said) == 1 and said[0].host == bare.address and "neither curl nor wget" in said[0].message
    assert (
        results[bare.address].result.bytes_sent >= image_bytes(lab)
        and results[bare.address].bytes_fetched == 0
    )
    assert results[other.address].result.bytes_sent < 64 * 1024
    assert tree(bare) == tree(other) == tree(lab.seeds[0])
