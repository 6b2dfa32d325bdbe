"""Fan-out delivery's choice and plan, pure (fanout.choose, the phases it adds, the check of the
fetchers' tools), and its host shell run for real here with sh on temp directories: the
publish into a registry storage layout and one fetch of several blobs, each kept only when its
digest matches (real curl and wget against an HTTP server on 127.0.0.1)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import ClusterError, ClusterfileError, PhaseError, UsageError
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.runtime import _delivery_shell as sh
from builder.runtime import fanout
from builder.runtime._fanout_shell import NO_FETCH_TOOL, parse_fetch_report
from builder.runtime.cluster import Cluster, HostSpec, RegistrySpec, Role
from builder.runtime.clusterfile import dump_clusterfile, parse_clusterfile
from builder.runtime.delivery import DeliveryImage, LayerPlan
from builder.runtime.facts import Facts, parse_probe
from builder.runtime.phases import Check, ImageInfo, PlanState, install_phases, upgrade_phases
from builder.runtime.phases.deliver import Deliver
from builder.runtime.phases.deliver_fetch import DeliverFetch, SeedRegistry
from builder.runtime.plugins import get_plugin
from builder.runtime.registry_pki import RegistryMaterial

MATERIAL = RegistryMaterial("CA-PEM", "CERT-PEM", "KEY-PEM-SECRET", "admin:$2y$10$HASH\n")
STORAGE = "/var/lib/sealer/data/c1/registry/storage"


def cluster(masters: int = 2, nodes: int = 4, **registry: object) -> Cluster:
    hosts = tuple(HostSpec(f"10.0.0.{i + 1}", (Role.MASTER,)) for i in range(masters)) + tuple(
        HostSpec(f"10.0.1.{i + 1}", (Role.NODE,)) for i in range(nodes)
    )
    spec = RegistrySpec(**registry) if registry else RegistrySpec(username="admin", password="pw")  # type: ignore[arg-type]
    return Cluster("c1", "demo/x:v1", hosts, registry=spec)


def choose(
    mode: str,
    c: Cluster,
    k: int | None = None,
    targets: tuple[str, ...] | None = None,
    material: RegistryMaterial | None = MATERIAL,
) -> fanout.FanoutPlan | None:
    return fanout.choose(mode, k, c, c.ips if targets is None else targets, material, STORAGE)


def test_seeds_are_the_registry_hosts_and_every_other_host_fetches() -> None:
    plan = choose("fanout", cluster())
    assert plan is not None
    assert plan.seeds == ("10.0.0.1", "10.0.0.2") and plan.fetchers == tuple(
        f"10.0.1.{i}" for i in range(1, 5)
    )
    assert plan.basic_auth is not None and "pw" not in repr(plan)  # the credentials are a secret
    # round-robin over fetchers and layers, then the other seed
    assert [plan.sources("10.0.1.1", n)[0] for n in range(3)] == ["10.0.0.1", "10.0.0.2", "10.0.0.1"]
    assert plan.sources("10.0.1.2", 0) == ("10.0.0.2", "10.0.0.1")
    assert plan.url("10.0.0.2", "ab") == "https://10.0.0.2:5000/v2/sealer-rootfs/c1/blobs/sha256:ab"
    one = choose("fanout", cluster(), k=1)
    assert one is not None and one.seeds == ("10.0.0.1",) and "10.0.0.2" in one.fetchers


def test_auto_fans_out_from_the_threshold_on_and_ssh_never() -> None:
    assert choose("ssh", cluster()) is None
    assert choose("auto", cluster(1, fanout.AUTO_MIN_HOSTS - 2)) is None  # below: as today
    assert choose("auto", cluster(1, fanout.AUTO_MIN_HOSTS - 1)) is not None
    assert choose("auto", cluster(), material=None) is None


def test_what_cannot_fan_out_is_refused_before_any_host_changes() -> None:
    with pytest.raises(ClusterError, match="no cluster registry"):
        choose("fanout", cluster(), material=None)
    with pytest.raises(ClusterError, match="the cluster has no registry host"):  # an external registry
        choose("fanout", cluster(external=True))
    with pytest.raises(UsageError, match="--fanout 3: only 2 registry host"):
        choose("fanout", cluster(), k=3)
    with pytest.raises(UsageError, match="--fanout 0"):
        choose("fanout", cluster(), k=0)


def state(c: Cluster, plan: fanout.FanoutPlan | None) -> PlanState:
    image = ImageInfo("demo/x:v1", None, Platform.parse("linux/amd64"), layer_count=3)
    return PlanState(image, get_plugin("k3s"), c.ips, registry=MATERIAL, fanout=plan)


def test_the_phases_seed_then_fetch() -> None:
    c = cluster()
    plan = choose("fanout", c)
    assert plan is not None
    s = state(c, plan)
    assert [st.host for st in Deliver().plan(c, Facts(), s)] == ["10.0.0.1", "10.0.0.2"]
    assert {st.host for st in SeedRegistry().plan(c, Facts(), s)} == {"10.0.0.1", "10.0.0.2"}
    fetch = DeliverFetch().plan(c, Facts(), s)
    assert [st.host for st in fetch] == list(plan.fetchers) and all(st.kind == "deliver" for st in fetch)
    assert "fetched from 10.0.0.2, 10.0.0.1" in fetch[1].description
    for phases in (install_phases(), upgrade_phases()):
        names = [p.name for p in phases]
        assert names[:3] == ["deliver", "registry-seed", "deliver-fetch"]
    plain = state(c, None)  # without fan-out: today's phases plan exactly as before
    assert len(Deliver().plan(c, Facts(), plain)) == 6
    assert SeedRegistry().plan(c, Facts(), plain) == DeliverFetch().plan(c, Facts(), plain) == []


def probed(host: str, tools: str) -> Facts:
    out = "\n".join(["arch=x86_64", "hostname=h", *(f"tool={t}" for t in tools.split()), "free_kb=99999999"])
    return Facts({host: parse_probe(host, out + "\n")})


def test_a_fetcher_without_curl_or_wget_is_refused_by_the_check() -> None:
    c = cluster()
    s = state(c, choose("fanout", c))
    with pytest.raises(PhaseError) as info:
        Check.verify(probed("10.0.1.3", "sh tar sha256sum zstd"), s, c)
    assert "10.0.1.3: fan-out delivery fetches layers with curl or wget" in info.value.message
    assert "\n" not in info.value.message
    Check.verify(probed("10.0.1.3", "sh tar sha256sum zstd wget"), s, c)
    Check.verify(probed("10.0.1.3", "sh tar sha256sum zstd"), replace(s, fanout=None), c)
    auto = choose("auto", c)  # with auto the host gets its layers from this machine instead
    Check.verify(probed("10.0.1.3", "sh tar sha256sum zstd"), state(c, auto), c)


# --- the host shell, run here ----------------------------------------------------------------------


def run(
    command: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", command], input=stdin, capture_output=True, env=env, check=False)


def test_publish_hardlinks_kept_blobs_into_the_registry_layout(tmp_path: Path) -> None:
    p = sh.Paths(str(tmp_path / "root"), "c1")
    blob = b"layer bytes"
    hex_ = hashlib.sha256(blob).hexdigest()
    Path(p.blobs).mkdir(parents=True)
    Path(p.blob(hex_)).write_bytes(blob)
    plan = fanout.FanoutPlan(("h",), (), 5000, "sealer-rootfs/c1", str(tmp_path / "storage"), None)
    for _ in range(2):  # idempotent
        assert run(fanout.publish_command(p, plan, [hex_, "0" * 64])).returncode == 0
    v2 = tmp_path / "storage/docker/registry/v2"
    data = v2 / f"blobs/sha256/{hex_[:2]}/{hex_}/data"
    assert data.read_bytes() == blob and data.stat().st_ino == Path(p.blob(hex_)).stat().st_ino
    link = v2 / f"repositories/sealer-rootfs/c1/_layers/sha256/{hex_}/link"
    assert link.read_text() == f"sha256:{hex_}"
    assert not (v2 / f"blobs/sha256/00/{'0' * 64}").exists()  # a blob the seed lacks: skipped


@contextlib.contextmanager
def serving(blobs: dict[str, bytes], auth: str | None = None) -> Iterator[int]:
    """A plain HTTP server on 127.0.0.1 answering GET /v2/sealer-rootfs/c1/blobs/sha256:HEX with
    `blobs[HEX]` (404 otherwise; 401 without the `Authorization` header `auth`), as a seed's
    registry does; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = blobs.get(self.path.rpartition("sha256:")[2])
            allowed = auth is None or self.headers.get("Authorization") == auth
            self.send_response(401 if not allowed else 200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"") if allowed else 0))
            self.end_headers()
            self.wfile.write((body or b"") if allowed else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def only_tools(bin_dir: Path, *tools: str) -> dict[str, str]:
    """An env whose PATH has the fetch's own needs and `tools` alone (the host's downloader)."""
    bin_dir.mkdir()
    for tool in ("mkdir", "wc", "mv", "rm", "cat", "mktemp", "sha256sum", *tools):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    return {"PATH": str(bin_dir)}


@pytest.mark.parametrize("tool", ["curl", "wget"])
def test_one_fetch_keeps_each_blob_only_when_its_digest_matches_and_reports_each(
    tmp_path: Path, tool: str
) -> None:
    p = sh.Paths(str(tmp_path / "root"), "c1")
    good, tampered, missing = b"the real layer", b"the real layer", b"not on the seed"
    hexes = [hashlib.sha256(b).hexdigest() for b in (good, b"another layer", missing)]
    served = {hexes[0]: good, hexes[1]: tampered}  # the second: other bytes under its digest
    auth = "Basic " + base64.b64encode(b"admin:pw").decode()
    with serving(served, auth) as port:
        plan = fanout.FanoutPlan(("127.0.0.1",), ("h",), port, "sealer-rootfs/c1", "/x", None, "YWRtaW46cHc=")
        command = fanout.fetch_command(
            p, plan, "127.0.0.1", [(h, 14 if h != hexes[2] else 15) for h in hexes]
        )
        out = run(
            command, stdin=b"Authorization: " + auth.encode() + b"\n", env=only_tools(tmp_path / "bin", tool)
        )
    assert out.returncode == 0, out.stderr
    report = parse_fetch_report(out.stdout.decode())
    assert report == {
        hexes[0]: ("ok", ""),
        hexes[1]: ("refused", hashlib.sha256(tampered).hexdigest()),
        hexes[2]: ("failed", ""),
    }
    assert sorted(f.name for f in Path(p.blobs).iterdir()) == [hexes[0]]  # no partial left
    assert Path(p.blob(hexes[0])).read_bytes() == good


def test_the_dry_run_shows_who_fetches_what_from_whom() -> None:
    layers = tuple(
        LayerPlan(
            Descriptor(
                "application/vnd.oci.image.layer.v1.tar+zstd", Digest.from_bytes(bytes([n])), 1000 + n
            ),
            Digest.from_bytes(bytes([n, n])),
            (),
            (),
        )
        for n in range(2)
    )
    image = DeliveryImage("demo/x:v1", Digest.from_bytes(b"m"), Platform.parse("linux/amd64"), layers, {}, {})
    plan = choose("fanout", cluster())
    assert plan is not None
    fetcher = fanout.dry_run_lines(plan, image, "c1", "10.0.1.2", {})
    digests = [str(layer.descriptor.digest) for layer in layers]
    assert f"fetch {digests[0]} (1000) from 10.0.0.2, else 10.0.0.1, else this machine" in fetcher
    assert f"fetch {digests[1]} (1001) from 10.0.0.1, else 10.0.0.2, else this machine" in fetcher
    assert not any(line.startswith("upload") for line in fetcher)  # nothing from this machine
    assert sum(line.count("zstd -dcq /var/lib/sealer/blobs/sha256/") for line in fetcher) == 2
    seed = fanout.dry_run_lines(plan, image, "c1", "10.0.0.1", {})
    assert [line for line in seed if line.startswith("upload")] == [
        f"upload {d} ({s})" for d, s in zip(digests, (1000, 1001), strict=True)
    ]
    assert "sealer-rootfs/c1/_layers" in seed[-1]


CLUSTERFILE = """\
apiVersion: sealer.io/v2
kind: Cluster
metadata:
  name: c1
spec:
  image: demo/x:v1
  distribution: {mode}
  hosts:
    - ips: [10.0.0.1]
      roles: [master]
"""


def test_spec_distribution_is_read_checked_at_its_line_and_written_back() -> None:
    c = parse_clusterfile(CLUSTERFILE.format(mode="fanout"))
    assert c.distribution == "fanout"
    assert parse_clusterfile(dump_clusterfile(c)).distribution == "fanout"
    assert "distribution" not in dump_clusterfile(replace(c, distribution=""))
    with pytest.raises(ClusterfileError) as info:
        parse_clusterfile(CLUSTERFILE.format(mode="p2p"))
    assert info.value.message.startswith("Clusterfile:7: spec.distribution: distribution 'p2p' is not one of")


def test_a_join_fetches_from_the_registry_hosts_already_there() -> None:
    joining = ("10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4")
    plan = choose("auto", cluster(), targets=joining)
    assert plan is not None and plan.seeds == () and plan.fetchers == joining
    assert plan.standing == ("10.0.0.1", "10.0.0.2") and plan.sources("10.0.1.2", 0) == (
        "10.0.0.2",
        "10.0.0.1",
    )
    assert choose("auto", cluster(), targets=joining[:2]) is None  # below the threshold: as before
    with pytest.raises(UsageError, match="--fanout 1: only 0 registry host"):
        choose("fanout", cluster(), k=1, targets=joining)
    s = replace(state(cluster(), plan), targets=joining)
    assert Deliver().plan(cluster(), Facts(), s) == [] and SeedRegistry().plan(cluster(), Facts(), s) == []
    assert [st.host for st in DeliverFetch().plan(cluster(), Facts(), s)] == list(joining)


def test_a_fetch_on_a_host_without_curl_or_wget_says_so_before_anything(tmp_path: Path) -> None:
    p = sh.Paths(str(tmp_path / "root"), "c1")
    plan = fanout.FanoutPlan(("10.0.0.1",), ("h",), 5000, "sealer-rootfs/c1", "/x", None)
    result = run(
        fanout.fetch_command(p, plan, "10.0.0.1", [("ab" * 32, 10)]), env=only_tools(tmp_path / "bin")
    )
    assert result.returncode == NO_FETCH_TOOL and b"neither curl nor wget" in result.stderr
    assert list(Path(p.blobs).iterdir()) == []
