"""Rootfs delivery (builder/runtime/delivery.py) on real hosts (tests/hosts.py): content equal
to the image byte for byte, re-runs that move nothing, no blob kept on hosts by default (and,
with keep_blobs, only missing blobs travelling), per-host templates, the on-arrival check, a host
whose sshd dies mid-delivery resuming from its staging progress, a stale staging dir discarded,
a host without zstd, and remove()."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from builder.errors import CommandFailed, HostError, RootfsTemplateError, UnsafePath
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.layers.compression import Compression, open_decompressed
from builder.layers.tarreader import extract_layer
from builder.runtime import _delivery_plan, delivery
from builder.runtime import _delivery_shell as sh
from builder.runtime.delivery import (
    BlobSent,
    DeliveryEvent,
    DeliveryImage,
    HostDone,
    HostFailed,
    HostSkipped,
    deliver,
    prepare_image,
    remove,
    render_layer,
)
from builder.runtime.infra import InfraEvent, SSHDriver, TransferProgress
from builder.store.layout import Store
from tests.hosts import HostFactory, HostSet, TestHost
from tests.unit.runtime.test_runtime_delivery_stack import E, put_image

pytestmark = pytest.mark.component
T = TypeVar("T")
AMD64 = Platform("linux", "amd64")
ROOT = "/var/lib/sealer"

BASE = [
    E("bin", "d", mode=0o750),
    E("bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755),
    E("bin/suid", data=b"s", mode=0o4755),
    E("bin/hl", "h", link="bin/tool"),
    E("bin/sh2", "l", link="tool"),
    E("etc", "d"),
    E("etc/localtime", "l", link="/usr/share/zoneinfo/UTC"),
    E("etc/secret", data=b"hush", mode=0o600),
    E("etc/drop", data=b"gone soon"),
    E("etc/app.conf.tmpl", data=b'name={{ .NAME }}\nport={{ or .PORT "80" }}\n'),
    E("opq", "d"),
    E("opq/old1", data=b"o1"),
    E("opq/sub", "d"),
    E("opq/sub/old2", data=b"o2"),
    E("swap", data=b"a file, then a dir"),
    E("s", "l", link="bin"),
]
RUN = [
    E("etc/.wh.drop"),
    E("opq/.wh..wh..opq"),
    E("opq/new", data=b"n"),
    E("swap", "d", mode=0o700),
    E("swap/inside", data=b"i"),
    E(".wh.s"),
    E("s", "d"),
    E("s/real", data=b"r"),
]
TOP = [E("data", "d"), E("data/blob", data=os.urandom(200_000)), E("etc/secret", data=b"changed", mode=0o640)]


def arun(coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout_s):
            return await coro

    return asyncio.run(bounded())


async def with_driver(hosts: HostSet, fn: Any, on_event: Any = None) -> Any:
    async with SSHDriver(hosts.credentials(), on_event=on_event) as driver:
        return await fn(driver)


def run_deliver(
    hosts: HostSet,
    store: Store,
    image: DeliveryImage,
    cluster: str,
    envs: dict[str, dict[str, str]] | None = None,
    events: list[DeliveryEvent] | None = None,
    on_infra: Any = None,
    keep_blobs: bool = False,
) -> dict[str, delivery.HostDelivery]:
    envs = envs if envs is not None else {h.address: {"NAME": h.hostname} for h in hosts}

    async def go(driver: SSHDriver) -> dict[str, delivery.HostDelivery]:
        return await deliver(
            driver,
            store,
            image,
            cluster,
            envs,
            on_event=events.append if events is not None else None,
            keep_blobs=keep_blobs,
        )

    return arun(with_driver(hosts, go, on_infra))  # type: ignore[no-any-return]


def expected_tree(store: Store, image: DeliveryImage, env: dict[str, str] | None, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for layer in image.layers:
        d = layer.descriptor
        kind = Compression(d.media_type.rpartition("+")[2] if "+" in d.media_type else "")
        with store.blobs.open(d.digest) as blob, open_decompressed(blob, kind) as stream:
            extract_layer(stream, dest, whiteouts="apply")
    if env is not None:
        tar = render_layer(image, env)
        assert tar is not None
        extract_layer(io.BytesIO(tar), dest, whiteouts="apply")
    return dest


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path below `root`: type, mode, owner, then bytes or link target; hardlink groups."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            mode = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = (*mode, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                first = inodes.setdefault(st.st_ino, rel)
                out[rel] = (*mode, path.read_bytes(), st.st_nlink, first if st.st_nlink > 1 else None)
            else:
                out[rel] = mode
    return out


def link_groups(snap: dict[str, tuple[Any, ...]]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for rel, v in snap.items():
        if len(v) == 7 and v[6] is not None:
            groups.setdefault(v[6], set()).add(rel)
    return {frozenset(g) for g in groups.values()}


def strip_links(snap: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    return {k: v[:6] if len(v) == 7 else v for k, v in snap.items()}


def rootfs(h: TestHost, cluster: str) -> Path:
    return h.path(f"{ROOT}/data/{cluster}/rootfs")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = Store.open(tmp_path_factory.mktemp("delivery") / "root")
    put_image(s, "t/app:1", [BASE, RUN, TOP])
    put_image(s, "t/app:2", [BASE, RUN, TOP, [E("extra", data=b"one more layer")]])
    put_image(s, "t/plain:1", [BASE[:5], [E("x", data=b"x")]], compression="gzip")
    return s


def test_three_hosts_get_the_image_and_a_rerun_moves_nothing(
    hosts3: HostSet, store: Store, tmp_path: Path
) -> None:
    image = prepare_image(store, "t/app:1", AMD64)
    assert list(image.templates) == ["etc/app.conf.tmpl"]
    envs = {
        h.address: {"NAME": h.hostname, **({"PORT": "8443"} if i == 2 else {})} for i, h in enumerate(hosts3)
    }
    events: list[DeliveryEvent] = []
    results = run_deliver(hosts3, store, image, "c1", envs, events)
    sizes = sum(layer.descriptor.size for layer in image.layers)
    for i, h in enumerate(hosts3):
        r = results[h.address]
        assert r.rebuilt and r.blobs_sent == 4 and r.bytes_sent > sizes
        link = rootfs(h, "c1")
        assert link.is_symlink() and os.readlink(link).startswith("rootfs-")
        want = snapshot(expected_tree(store, image, envs[h.address], tmp_path / f"want{i}"))
        got = snapshot(link.resolve())
        assert strip_links(got) == strip_links(want)
        assert link_groups(got) == link_groups(want) == {frozenset({"bin/tool", "bin/hl"})}
        conf = (link / "etc/app.conf").read_text()
        assert conf == f"name={h.hostname}\nport={'8443' if i == 2 else '80'}\n"
        assert "drop" not in os.listdir(link / "etc") and sorted(os.listdir(link / "opq")) == ["new"]
        applied = h.path(f"{ROOT}/data/c1/applied").read_text().split()
        assert applied[:3] == [str(layer.descriptor.digest) for layer in image.layers] and len(applied) == 4
        assert blob_files(h) == set()  # by default hosts keep no blobs
        assert sorted(os.listdir(h.path(f"{ROOT}/data/c1"))) == ["applied", "rootfs", os.readlink(link)]
    assert sum(isinstance(e, BlobSent) for e in events) == 12
    assert sum(isinstance(e, HostDone) for e in events) == 3

    events.clear()
    started = time.monotonic()
    again = run_deliver(hosts3, store, image, "c1", envs, events)
    assert time.monotonic() - started < 2
    assert all(r.bytes_sent == 0 and not r.rebuilt and r.layers_present == 4 for r in again.values())
    assert sum(isinstance(e, HostSkipped) for e in events) == 3


def blob_files(h: TestHost) -> set[str]:
    blobs = h.path(f"{ROOT}/blobs/sha256")
    return set(os.listdir(blobs)) if blobs.exists() else set()


def test_a_new_version_rebuilds_and_with_keep_blobs_only_the_new_layer_travels(
    hosts3: HostSet, store: Store
) -> None:
    one = prepare_image(store, "t/app:1", AMD64)
    two = prepare_image(store, "t/app:2", AMD64)
    new = two.layers[-1].descriptor
    envs = {h.address: {"NAME": "same"} for h in hosts3}
    # Default: no blob cache, so a new wanted list streams every layer again.
    run_deliver(hosts3, store, one, "c2", envs)
    results = run_deliver(hosts3, store, two, "c2", envs)
    for h in hosts3:
        r = results[h.address]
        assert (r.blobs_sent, r.layers_present, r.rebuilt) == (5, 0, True)
        assert (rootfs(h, "c2") / "extra").read_bytes() == b"one more layer" and blob_files(h) == set()
    # keep_blobs: the blobs stay on the hosts, and the next image sends only its new layer.
    run_deliver(hosts3, store, one, "c2k", envs, keep_blobs=True)
    old_tree = os.readlink(rootfs(hosts3[0], "c2k"))
    results = run_deliver(hosts3, store, two, "c2k", envs, keep_blobs=True)
    for h in hosts3:
        r = results[h.address]
        assert (r.blobs_sent, r.bytes_sent, r.layers_present, r.rebuilt) == (1, new.size, 4, True)
        assert (rootfs(h, "c2k") / "extra").read_bytes() == b"one more layer"
        assert {layer.descriptor.digest.hex for layer in two.layers} <= blob_files(h)
        trees = [n for n in os.listdir(h.path(f"{ROOT}/data/c2k")) if n.startswith(("rootfs-", ".staging"))]
        assert trees == [os.readlink(rootfs(h, "c2k"))] and trees != [old_tree]


def test_gzip_layers_unpack_with_gzip(hosts3: HostSet, store: Store) -> None:
    image = prepare_image(store, "t/plain:1", AMD64)
    results = run_deliver(hosts3, store, image, "gz", {hosts3[0].address: {}})
    assert results[hosts3[0].address].blobs_sent == 2
    assert (rootfs(hosts3[0], "gz") / "x").read_bytes() == b"x"


def test_missing_template_variable_fails_before_anything_is_sent(hosts3: HostSet, store: Store) -> None:
    image = prepare_image(store, "t/app:1", AMD64)
    envs = {h.address: {"NAME": "n"} for h in hosts3}
    envs[hosts3[2].address] = {}
    with pytest.raises(RootfsTemplateError) as info:
        run_deliver(hosts3, store, image, "c3", envs)
    assert "etc/app.conf.tmpl" in str(info.value) and "NAME" in str(info.value)
    assert not any(h.path(f"{ROOT}/data/c3").exists() for h in hosts3)


def test_hostile_stack_is_refused_before_anything_is_sent(hosts3: HostSet, tmp_path: Path) -> None:
    s = Store.open(tmp_path / "root")
    put_image(
        s, "t/evil:1", [[E("lib", "l", link="/root")], [E("lib", "d", mode=0o777), E("lib/x", data=b"x")]]
    )
    put_image(
        s,
        "t/evil:2",
        [[E("lib", "l", link="/root")], [E("lib/.ssh", "d"), E("lib/.ssh/authorized_keys", data=b"k")]],
    )
    # Replacing the symlink by a dir is fine: the host removes the symlink first, so no tar
    # (GNU tar with --keep-directory-symlink, busybox) can apply the dir's mode through it.
    h = hosts3[0]
    root_mode = h.path("/root").stat().st_mode
    run_deliver(hosts3, s, prepare_image(s, "t/evil:1", AMD64), "evil", {h.address: {}})
    assert h.path("/root").stat().st_mode == root_mode
    assert stat.S_IMODE((rootfs(h, "evil") / "lib").lstat().st_mode) == 0o777
    assert (rootfs(h, "evil") / "lib/x").read_bytes() == b"x" and not h.path("/root/x").exists()
    with pytest.raises(UnsafePath, match=r"'lib/\.ssh'.*symlink made by layer 1"):
        prepare_image(s, "t/evil:2", AMD64)


def test_a_blob_that_is_not_its_digest_is_deleted_on_arrival(hosts3: HostSet) -> None:
    h = hosts3[0]
    blobs = h.path(f"{ROOT}/blobs/sha256")
    blobs.mkdir(parents=True, exist_ok=True)
    claimed = Digest.from_bytes(b"what was sent")
    (blobs / f".partial-{claimed.hex}").write_bytes(b"what arrived")
    with pytest.raises(HostError) as info:
        arun(with_driver(hosts3, lambda d: delivery._verify_blob(d, h.address, claimed)))
    assert h.address in str(info.value) and str(claimed) in str(info.value)
    assert not (blobs / f".partial-{claimed.hex}").exists() and not (blobs / claimed.hex).exists()
    good = Digest.from_bytes(b"intact")
    (blobs / f".partial-{good.hex}").write_bytes(b"intact")
    arun(with_driver(hosts3, lambda d: delivery._verify_blob(d, h.address, good)))
    assert (blobs / good.hex).read_bytes() == b"intact"


def test_sshd_killed_mid_delivery_then_resumed(host_factory: HostFactory, tmp_path: Path) -> None:
    hosts = host_factory(3)
    s = Store.open(tmp_path / "root")
    big = os.urandom(100 << 20)
    put_image(s, "t/v:1", [[E("v1", data=b"1")]])
    put_image(s, "t/v:2", [[E("small", data=b"s")], [E("big", data=big)], [E("last", data=b"l")]])
    v1, v2 = prepare_image(s, "t/v:1", AMD64), prepare_image(s, "t/v:2", AMD64)
    envs = {h.address: {} for h in hosts}
    run_deliver(hosts, s, v1, "k", envs)
    victim = hosts[1]
    before = os.readlink(rootfs(victim, "k"))
    big_hex = v2.layers[1].descriptor.digest.hex
    killed = threading.Event()

    def on_infra(event: InfraEvent) -> None:
        if (
            isinstance(event, TransferProgress)
            and event.host == victim.address
            and big_hex in event.command
            and event.bytes_sent >= 8 << 20
            and not killed.is_set()
        ):
            killed.set()
            threading.Thread(target=victim.kill_sshd).start()

    events: list[DeliveryEvent] = []
    with pytest.raises(HostError) as info:
        run_deliver(hosts, s, v2, "k", envs, events, on_infra)
    assert killed.is_set()
    assert info.value.host == victim.address and str(info.value).startswith(victim.address)
    assert [e.host for e in events if isinstance(e, HostFailed)] == [victim.address]
    assert sorted(e.result.host for e in events if isinstance(e, HostDone)) == sorted(
        h.address for h in hosts if h is not victim
    )
    assert os.readlink(rootfs(victim, "k")) == before  # the half-done delivery changed nothing
    assert (rootfs(victim, "k") / "v1").read_bytes() == b"1"
    for h in hosts:
        if h is not victim:
            assert (rootfs(h, "k") / "big").stat().st_size == len(big)

    # The staging dir recorded the small layer (unpacked and verified), not the interrupted one.
    wanted = [str(layer.descriptor.digest) for layer in v2.layers]
    rid = _delivery_plan.rootfs_id(wanted)
    data = victim.path(f"{ROOT}/data/k")
    assert (data / f".staging-{rid}" / "small").read_bytes() == b"s"
    assert (data / f".staging-{rid}.layers").read_text().split() == wanted[:1]
    assert blob_files(victim) == set()

    deadline = time.monotonic() + 10
    while victim.pid_of_sshd is None and time.monotonic() < deadline:  # the kill thread is done
        victim.start_sshd()
    events.clear()
    results = run_deliver(hosts, s, v2, "k", envs, events)
    r = results[victim.address]
    assert r.rebuilt and r.layers_present == 1 and r.blobs_sent == 2  # resumed after the small layer
    assert r.bytes_sent == v2.layers[1].descriptor.size + v2.layers[2].descriptor.size
    sent = [e.digest for e in events if isinstance(e, BlobSent) and e.host == victim.address]
    assert sent == [v2.layers[1].descriptor.digest, v2.layers[2].descriptor.digest]
    assert (rootfs(victim, "k") / "big").read_bytes() == big
    assert sorted(os.listdir(rootfs(victim, "k"))) == ["big", "last", "small"]
    assert all(not results[h.address].rebuilt for h in hosts if h is not victim)
    leftovers = [n for n in os.listdir(victim.path(f"{ROOT}/data/k")) if n.startswith((".staging", ".fifo"))]
    assert leftovers == []


@pytest.mark.parametrize(
    "progress",
    [["sha256:" + "0" * 64], ["{0}", "sha256:" + "0" * 64], ["{1}"], None],
    ids=["foreign", "diverges", "not-a-prefix", "no-progress-file"],
)
def test_a_staging_dir_not_matching_the_wanted_list_is_discarded(
    hosts3: HostSet, store: Store, progress: list[str] | None
) -> None:
    h = hosts3[0]
    image = prepare_image(store, "t/plain:1", AMD64)
    wanted = [str(layer.descriptor.digest) for layer in image.layers]
    rid = _delivery_plan.rootfs_id(wanted)
    data = h.path(f"{ROOT}/data/stale")
    shutil.rmtree(data, ignore_errors=True)
    (data / f".staging-{rid}").mkdir(parents=True)
    (data / f".staging-{rid}" / "junk").write_bytes(b"from another attempt")
    if progress is not None:
        lines = [line.format(*wanted) for line in progress]
        (data / f".staging-{rid}.layers").write_text("".join(f"{line}\n" for line in lines))
    r = run_deliver(hosts3, store, image, "stale", {h.address: {}})[h.address]
    assert (r.blobs_sent, r.layers_present, r.rebuilt) == (2, 0, True)
    assert sorted(os.listdir(rootfs(h, "stale"))) == ["bin", "x"]
    assert sorted(os.listdir(data)) == ["applied", "rootfs", f"rootfs-{rid}"]


def test_a_layer_failing_its_check_drops_the_staging_tree(hosts3: HostSet) -> None:
    h = hosts3[0]
    p = sh.Paths(ROOT, "bad")
    rid = "0123456789abcdef"
    staging = h.path(p.staging(rid))
    shutil.rmtree(h.path(p.data), ignore_errors=True)
    staging.mkdir(parents=True)
    h.path(p.progress(rid)).write_text("sha256:" + "1" * 64 + "\n")
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("planted")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    claimed = Digest.from_bytes(b"what was meant")
    cmd = sh.upload_extract(p, rid, claimed.hex, "")

    async def go(driver: SSHDriver) -> None:
        await driver.pipe_to(h.address, cmd, [tar.getvalue()])

    with pytest.raises(CommandFailed) as info_:
        arun(with_driver(hosts3, go))
    assert info_.value.status == sh.VERIFY_FAILED
    err = delivery._host_error(h.address, info_.value, delivery._failed_item(info_.value, [item(claimed)]))
    assert h.address in str(err) and str(claimed) in str(err) and err.step == "verify"
    assert not staging.exists() and not h.path(p.progress(rid)).exists()  # not resumed from, not switched in
    assert not h.path(p.rootfs).exists()


def item(digest: Digest) -> Any:
    return _delivery_plan.Item(digest, 0, "", digest, (), (), None)


MIN_TOOLS = ("sh", "tar", "tee", "sha256sum", "mkfifo", "mv", "rm", "ln", "mkdir", "readlink")


def test_a_host_without_zstd_gets_layers_decompressed_here(
    host_factory: HostFactory, store: Store, tmp_path: Path
) -> None:
    (h,) = hosts = host_factory(1)
    # The host's PATH holds only the tools delivery documents as required (no zstd, no gzip):
    # root's .bashrc is sourced by sshd's bash before every command.
    minbin = h.path("/root/minbin")
    minbin.mkdir()
    for tool in MIN_TOOLS:
        os.symlink(f"/usr/bin/{tool}" if Path(f"/usr/bin/{tool}").exists() else f"/bin/{tool}", minbin / tool)
    h.path("/root/.bashrc").write_text("export PATH=/root/minbin\n")
    image = prepare_image(store, "t/app:1", AMD64)
    env = {"NAME": "nozstd"}
    results = run_deliver(hosts, store, image, "nz", {h.address: env})
    r = results[h.address]
    assert r.streamed_plain == 3 and r.blobs_sent == 1  # the rendered layer is plain: sent as it is
    want = snapshot(expected_tree(store, image, env, tmp_path / "want"))
    assert strip_links(snapshot(rootfs(h, "nz").resolve())) == strip_links(want)
    again = run_deliver(hosts, store, image, "nz", {h.address: env})
    assert again[h.address].bytes_sent == 0


def test_remove_is_idempotent_and_prunes_unshared_blobs(hosts3: HostSet, store: Store) -> None:
    one = prepare_image(store, "t/app:1", AMD64)
    two = prepare_image(store, "t/app:2", AMD64)
    hs: Sequence[TestHost] = hosts3[:2]
    envs = {h.address: {"NAME": "r"} for h in hs}
    sub = hosts3
    run_deliver(sub, store, one, "r1", envs, keep_blobs=True)
    run_deliver(sub, store, two, "r2", envs, keep_blobs=True)
    for c in ("c1", "c2", "c2k", "c3", "gz", "evil", "stale", "bad", "cut-whole", "cut-half", "r2"):
        arun(with_driver(sub, lambda d, c=c: remove(d, c, [h.address for h in hs])))
    blobs = {h.address: set(os.listdir(h.path(f"{ROOT}/blobs/sha256"))) for h in hs}
    kept = {layer.descriptor.digest.hex for layer in one.layers}
    for h in hs:
        assert not h.path(f"{ROOT}/data/r2").exists() and rootfs(h, "r1").is_dir()
        assert kept <= blobs[h.address] and two.layers[-1].descriptor.digest.hex not in blobs[h.address]
    arun(with_driver(sub, lambda d: remove(d, "r1", [h.address for h in hs])))
    arun(with_driver(sub, lambda d: remove(d, "r1", [h.address for h in hs])))
    for h in hs:
        assert os.listdir(h.path(f"{ROOT}/blobs/sha256")) == []
        assert os.listdir(h.path(f"{ROOT}/data")) == []


@pytest.mark.parametrize("cut", ["whole", "half"])
def test_a_layer_interrupted_anywhere_is_redone_over_what_it_left(
    hosts3: HostSet, store: Store, tmp_path: Path, cut: str
) -> None:
    """Layer 2 (whiteouts, an opaque dir, type changes) interrupted after half its stream, or
    after its tar finished but before it was recorded: the retry runs its removals and its
    extraction again over what it left, and the tree is the image's."""
    h = hosts3[1]
    cluster = f"cut-{cut}"
    image = prepare_image(store, "t/app:1", AMD64)
    env = {"NAME": "cut"}
    items = _delivery_plan.wanted_items(store, image, render_layer(image, env))
    wanted = [str(i.digest) for i in items]
    rid = _delivery_plan.rootfs_id(wanted)
    p = sh.Paths(ROOT, cluster)
    first, second = items[0], items[1]
    assert second.whiteouts and second.opaques
    blob = delivery._path(second).read_bytes()

    async def partial(driver: SSHDriver) -> None:
        await driver.run(h.address, sh.prepare(p, rid))
        for item, data in ((first, delivery._path(first).read_bytes()), (second, blob)):
            for command in sh.removals(p.staging(rid), item.whiteouts, item.opaques):
                await driver.run(h.address, command)
            cmd = sh.upload_extract(p, rid, item.digest.hex, item.compression)
            if item is second and cut == "half":
                with pytest.raises(CommandFailed):
                    await driver.pipe_to(h.address, cmd, [data[: len(data) // 2]])
            else:
                await driver.pipe_to(h.address, cmd, [data])
        if cut == "whole":  # as if the connection dropped just before the record
            await driver.run(h.address, f"sed -i '$d' {p.progress(rid)}")

    arun(with_driver(hosts3, partial))
    assert h.path(p.progress(rid)).read_text().split() == wanted[:1]
    r = run_deliver(hosts3, store, image, cluster, {h.address: env})[h.address]
    assert (r.layers_present, r.blobs_sent) == (1, len(items) - 1)
    want = snapshot(expected_tree(store, image, env, tmp_path / "want"))
    got = snapshot(rootfs(h, cluster).resolve())
    assert strip_links(got) == strip_links(want) and link_groups(got) == link_groups(want)
