"""The Clusterfile's hostAliases on real fixture hosts: a block of /etc/hosts per cluster, written
before init.sh and removed after clean.sh, leaving the rest of the file as it was; two clusters
on one host keep their own blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from builder.runtime import actions
from builder.runtime.clusterfile import parse_clusterfile
from builder.store.layout import Store
from tests.component.runtime.e2e.test_cluster_e2e import build_example, clusterfile_text
from tests.hosts import HostFactory, HostSet


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store.open(tmp_path_factory.mktemp("aliases") / "store")
    build_example(s)
    yield s
    s.close()


def with_aliases(text: str, aliases: list[dict[str, object]]) -> str:
    doc = yaml.safe_load(text)
    doc["spec"]["hostAliases"] = aliases
    return yaml.safe_dump(doc, sort_keys=False)


def test_blocks_per_cluster_written_before_init_and_removed_after_clean(
    store: Store, host_factory: HostFactory, tmp_path: Path
) -> None:
    hosts: HostSet = host_factory(2)
    before = {h.address: h.path("/etc/hosts").read_text() for h in hosts}
    settings = actions.Settings(store=store, home=tmp_path / "state")
    one = clusterfile_text([(hosts[0], "master", hosts), (hosts[1], "node", hosts)], name="aliases-a")
    one = with_aliases(one, [{"ip": "10.9.9.9", "hostnames": ["registry.internal", "reg"]}])
    two = clusterfile_text([(hosts[0], "master", hosts)], name="aliases-b")
    two = with_aliases(two, [{"ip": "fd00::7", "hostnames": ["mirror.internal"]}])

    actions.run(parse_clusterfile(one), settings)
    block_a = (
        "# BEGIN sealer host aliases of cluster aliases-a\n10.9.9.9 registry.internal reg\n"
        "# END sealer host aliases of cluster aliases-a\n"
    )
    for h in hosts:
        assert h.path("/etc/hosts").read_text() == before[h.address] + block_a
        # the name resolves inside the host (init.sh and the runtime see it)
        assert h.run("getent hosts registry.internal").stdout.split() == [
            "10.9.9.9",
            "registry.internal",
            "reg",
        ]
    actions.run(parse_clusterfile(one), settings)  # a re-run changes nothing
    assert hosts[0].path("/etc/hosts").read_text() == before[hosts[0].address] + block_a

    actions.run(parse_clusterfile(two), settings)  # a second cluster on the first host
    block_b = (
        "# BEGIN sealer host aliases of cluster aliases-b\nfd00::7 mirror.internal\n"
        "# END sealer host aliases of cluster aliases-b\n"
    )
    assert hosts[0].path("/etc/hosts").read_text() == before[hosts[0].address] + block_a + block_b

    actions.delete("aliases-a", settings, all_=True)
    assert hosts[0].path("/etc/hosts").read_text() == before[hosts[0].address] + block_b
    assert hosts[1].path("/etc/hosts").read_text() == before[hosts[1].address]
    actions.delete("aliases-b", settings, all_=True)
    assert hosts[0].path("/etc/hosts").read_text() == before[hosts[0].address]
