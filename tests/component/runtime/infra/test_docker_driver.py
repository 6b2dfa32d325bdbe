"""DockerDriver on the suite's own dockerd (tests/docker_fixtures.py) and the node image
`make node-image` builds: the SSH driver's contract through Engine API execs (exit codes,
env, stdin, streaming, timeouts, one-line errors naming the container), a rootfs delivered
into a container and checked byte for byte, a tampered layer refused on arrival, and the one
line when no engine answers."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import docker
import pytest
import zstandard

from builder.errors import CommandFailed, DockerEngineUnavailable, HostError
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.registry.docker_daemon import connect_engine
from builder.runtime import _delivery_shell as sh
from builder.runtime import delivery
from builder.runtime.infra.docker import DockerDriver
from builder.store.layout import Store
from tests.component.runtime.infra.test_ssh_driver import arun, blocks, one_line
from tests.docker_nodes import docker_host, dockerd, node_container, node_image
from tests.unit.runtime.test_runtime_delivery_stack import E, put_image

__all__ = ["docker_host", "dockerd", "node_container", "node_image"]
pytestmark = pytest.mark.component
HOST = "10.99.0.2"  # the address the cluster model would hold; the driver maps it


def driver_for(client: docker.DockerClient, container: Any) -> DockerDriver:
    return DockerDriver(client, {HOST: container.name})


def test_run_env_stdin_exit_codes_and_timeouts(dockerd: docker.DockerClient, node_container: Any) -> None:
    async def main() -> None:
        driver = driver_for(dockerd, node_container)
        r = await driver.run(HOST, 'printf "%s|" "$A" "$B"', env={"A": "x y", "B": 'it\'s "q" $HOME'})
        assert r.stdout == 'x y|it\'s "q" $HOME|' and r.exit_status == 0 and r.host == HOST
        assert (await driver.run(HOST, "tr a-z A-Z", stdin=b"abc")).stdout == "ABC"
        assert (await driver.run(HOST, "cat")).stdout == ""  # stdin closed at once: no hang
        big = os.urandom(3 << 20)
        assert (await driver.run(HOST, "sha256sum", stdin=big)).stdout.split()[0] == hashlib.sha256(
            big
        ).hexdigest()
        with pytest.raises(CommandFailed) as failed:
            await driver.run(HOST, "echo out; echo bad >&2; exit 5")
        assert one_line(failed.value) == f'{HOST}: "echo out; echo bad >&2; exit 5" exited 5: bad'
        assert failed.value.status == 5 and failed.value.stdout_tail == "out\n"
        assert (await driver.run(HOST, "kill -TERM $$", check=False)).exit_status == 143
        with pytest.raises(
            HostError,
            match=rf'^{HOST} \(container {node_container.name}\): "sleep 30" timed out after 0\.5 s$',
        ):
            await driver.run(HOST, "sleep 30", timeout_s=0.5)
        # the remote timeout killed it too: nothing left sleeping in the container
        await asyncio.sleep(1.6)
        assert "sleep 30" not in (await driver.run(HOST, "ps -eo args")).stdout
        with pytest.raises(HostError, match=r"^10\.99\.0\.9: no container of this cluster has this address$"):
            await driver.run("10.99.0.9", "true")
        assert await driver.hostname(HOST) == "drv-node"
        assert await driver.platform(HOST) == Platform.host()
        assert await driver.is_dir(HOST, "/etc") and not await driver.exists(HOST, "/nope")

    arun(main())


def test_streams_and_put_file_are_checked(
    dockerd: docker.DockerClient, node_container: Any, tmp_path: Path
) -> None:
    expected = hashlib.sha256(b"".join(blocks(24 << 20, seed=7))).hexdigest()
    local = tmp_path / "src"
    local.write_bytes(os.urandom(5 << 20))

    async def main() -> None:
        driver = driver_for(dockerd, node_container)
        assert await driver.stream_to(HOST, "sha256sum > /tmp/sum", blocks(24 << 20, seed=7)) == 24 << 20
        assert (await driver.run(HOST, "cat /tmp/sum")).stdout.split()[0] == expected
        with pytest.raises(CommandFailed, match="exited 2"):  # stops reading: no hang, its status
            await driver.stream_to(HOST, "exit 2", blocks(32 << 20))
        result = await driver.pipe_to(
            HOST, "head -c 10 >/dev/null; echo partial >&2; exit 3", blocks(16 << 20), check=False
        )
        assert result.exit_status == 3 and result.stderr == "partial\n"
        n = await driver.put_file(HOST, local, "/opt/d/e/dst", mode=0o600)
        assert n == local.stat().st_size
        listing = (await driver.run(HOST, "stat -c '%a %s' /opt/d/e/dst; ls -a /opt/d/e")).stdout.split()
        assert listing == ["600", str(n), ".", "..", "dst"]  # no temp file left beside it
        assert (await driver.run(HOST, "sha256sum /opt/d/e/dst")).stdout.split()[0] == hashlib.sha256(
            local.read_bytes()
        ).hexdigest()

    arun(main())


def test_a_container_gone_is_one_line_naming_it(dockerd: docker.DockerClient, node_container: Any) -> None:
    driver = driver_for(dockerd, node_container)
    node_container.remove(force=True)
    with pytest.raises(HostError) as gone:
        arun(driver.run(HOST, "true"))
    assert one_line(gone.value).startswith(
        f"{HOST} (container {node_container.name}): cannot start a command: "
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = Store.open(tmp_path_factory.mktemp("docker-delivery") / "root")
    put_image(s, "t/app:1", [[E("bin", "d"), E("bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755)],
                             [E("data", "d"), E("data/blob", data=os.urandom(300_000))]])  # fmt: skip
    return s


def test_a_rootfs_is_delivered_verified_and_a_tampered_layer_refused(
    dockerd: docker.DockerClient, node_container: Any, store: Store
) -> None:
    image = delivery.prepare_image(store, "t/app:1", Platform.host())
    driver = driver_for(dockerd, node_container)
    results = arun(delivery.deliver(driver, store, image, "dk", {HOST: {}}))
    assert results[HOST].blobs_sent == 2 and results[HOST].rebuilt
    applied = arun(driver.run(HOST, "cat /var/lib/sealer/data/dk/applied")).stdout.split()
    assert applied == [str(p.descriptor.digest) for p in image.layers]
    blob = arun(driver.run(HOST, "sha256sum /var/lib/sealer/data/dk/rootfs/data/blob")).stdout.split()[0]
    with tarfile.open(fileobj=io.BytesIO(_layer_tar(store, image, 1))) as tf:
        member = tf.extractfile("data/blob")
        assert member is not None and blob == hashlib.sha256(member.read()).hexdigest()
    assert arun(delivery.deliver(driver, store, image, "dk", {HOST: {}}))[HOST].bytes_sent == 0  # re-run

    # A layer whose bytes are not its digest (replaced in the store after the check by the
    # same tar compressed otherwise, so it unpacks cleanly): refused on arrival by its sha256
    # in the container, nothing switched in for that cluster.
    path = store.blobs.path(image.layers[1].descriptor.digest)
    original = path.read_bytes()
    try:
        os.chmod(path, 0o644)
        path.write_bytes(zstandard.ZstdCompressor(level=19).compress(_layer_tar(store, image, 1)))
        assert path.read_bytes() != original
        with pytest.raises(HostError) as refused:
            arun(delivery.deliver(driver, store, image, "dk2", {HOST: {}}))
        assert one_line(refused.value).startswith(
            f"{HOST}: layer {image.layers[1].descriptor.digest} failed its check on arrival"
        )
        assert not arun(driver.exists(HOST, "/var/lib/sealer/data/dk2/rootfs"))
    finally:
        path.write_bytes(original)

    # The check alone: bytes streamed under a digest they are not, into the upload command.
    claimed = Digest.from_bytes(b"what was meant")
    cmd = sh.upload_extract(sh.Paths("/var/lib/sealer", "dk3"), "0123456789abcdef", claimed.hex, "")
    arun(driver.run(HOST, f"mkdir -p {sh.Paths('/var/lib/sealer', 'dk3').staging('0123456789abcdef')}"))
    with pytest.raises(CommandFailed) as failed:
        arun(driver.pipe_to(HOST, cmd, [_tar_of({"planted": b"evil"})]))
    assert failed.value.status == sh.VERIFY_FAILED
    assert not arun(driver.exists(HOST, "/var/lib/sealer/data/dk3/.staging-0123456789abcdef"))


def _tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _layer_tar(store: Store, image: delivery.DeliveryImage, index: int) -> bytes:
    from builder.layers.compression import Compression, open_decompressed

    d = image.layers[index].descriptor
    kind = Compression(d.media_type.rpartition("+")[2] if "+" in d.media_type else "")
    with store.blobs.open(d.digest) as blob, open_decompressed(blob, kind) as stream:
        return stream.read()


def test_no_engine_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(DockerEngineUnavailable) as none:
        connect_engine()
    assert (
        one_line(none.value) == f"no Docker engine answers at unix://{tmp_path}/docker.sock (no such socket)"
    )


def test_the_engine_at_docker_host_is_used(docker_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    client: Any = connect_engine()
    try:
        assert client.ping()
    finally:
        client.close()
