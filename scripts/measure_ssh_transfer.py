"""Measure SSHDriver streaming against OpenSSH on one test host, same run, same data.

    .venv/bin/python scripts/measure_ssh_transfer.py [--rounds 2]

1. 500 MB of random bytes into `cat > /dev/null`;
2. a ~300 MB zstd layer blob (tar of /usr/lib/x86_64-linux-gnu) into `zstd -d | tar -x -C DIR`.
asyncssh reuses one open connection (as the driver does); each OpenSSH run is a fresh
`ssh -c aes128-gcm@openssh.com` process, connection set-up included (~0.1-0.2 s). The host
shares this machine's cores, so the remote side's CPU is part of both figures.
A measurement for the record (docs/hosts.md), not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.runtime.infra import SSHDriver
from tests.hosts import HostLab

LAYER_SOURCE = "usr/lib/x86_64-linux-gnu usr/lib/python3 usr/lib/python3.11 usr/libexec"


# Untimed, before every case: an empty target and no dirty pages left from the case before.
PREPARE = "rm -rf /var/lib/sealer/m && mkdir -p /var/lib/sealer/m && sync"


def read_file(path: Path, size: int = 4 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sealer-measure-", dir="/var/tmp"))
    lab = HostLab.open(work / "lab")
    try:
        hosts = lab.make_hosts(1)
        host = hosts[0]
        random_file = work / "random.bin"
        with open(random_file, "wb") as f:
            for _ in range(125):
                f.write(os.urandom(4 << 20))
        blob = work / "layer.tar.zst"
        subprocess.run(f"tar -C / -cf - {LAYER_SOURCE} | zstd -3 -T0 -q > {blob}", shell=True, check=True)
        cases = [
            ("500 MB random -> cat > /dev/null", random_file, "cat > /dev/null"),
            (
                f"{blob.stat().st_size / 1e6:.0f} MB zstd layer -> zstd -d | tar -x",
                blob,
                "zstd -d | tar -x -C /var/lib/sealer/m",
            ),
        ]
        ssh = [*hosts.openssh_args(host)[:-1], "-c", "aes128-gcm@openssh.com", f"root@{host.address}"]

        async def with_asyncssh() -> list[tuple[str, str, float, int]]:
            out = []
            async with SSHDriver(hosts.credentials()) as driver:
                await driver.run(host.address, "true")  # connection open, as in a real run
                for _ in range(args.rounds):
                    for name, path, command in cases:
                        await driver.run(host.address, PREPARE)
                        t0 = time.monotonic()
                        sent = await driver.stream_to(host.address, command, read_file(path))
                        out.append((name, "asyncssh (driver)", time.monotonic() - t0, sent))
                        await driver.run(host.address, PREPARE)
                        out.append(openssh(name, path, command))
            return out

        def openssh(name: str, path: Path, command: str) -> tuple[str, str, float, int]:
            t0 = time.monotonic()
            with open(path, "rb") as f:
                subprocess.run([*ssh, command], stdin=f, check=True)
            return name, "OpenSSH ssh -c aes128-gcm", time.monotonic() - t0, path.stat().st_size

        rows = asyncio.run(with_asyncssh())
        print(f"{'case':44} {'client':28} {'seconds':>8} {'MB/s':>7}")
        for name, client, seconds, size in rows:
            print(f"{name:44} {client:28} {seconds:8.2f} {size / seconds / 1e6:7.0f}")
    finally:
        lab.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
