"""LocalDriver: the same contract as the SSH driver, on this machine, without SSH."""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform as pyplatform
from pathlib import Path

import pytest

from builder.errors import CommandFailed, HostError
from builder.image.descriptor import Platform
from builder.runtime.infra import InfraDriver, LocalDriver
from tests.component.runtime.infra.test_ssh_driver import arun, blocks, one_line

pytestmark = pytest.mark.component


def test_run_env_stdin_and_failures() -> None:
    async def main() -> None:
        driver: InfraDriver = LocalDriver()
        r = await driver.run("local", 'printf "%s|" "$A" "$B"', env={"A": "x y", "B": 'it\'s "q" $HOME'})
        assert r.stdout == 'x y|it\'s "q" $HOME|' and r.exit_status == 0
        assert (await driver.run("127.0.0.1", "tr a-z A-Z", stdin=b"abc")).stdout == "ABC"
        assert (await driver.run("localhost", "cat")).stdout == ""  # stdin closed at once
        with pytest.raises(CommandFailed) as failed:
            await driver.run("local", "echo out; echo bad >&2; exit 5")
        assert one_line(failed.value) == 'local: "echo out; echo bad >&2; exit 5" exited 5: bad'
        assert failed.value.status == 5 and failed.value.stdout_tail == "out\n"
        assert (await driver.run("local", "kill -TERM $$", check=False)).exit_status == 143
        with pytest.raises(HostError, match=r'^local: "sleep 5" timed out after 0\.2 s$'):
            await driver.run("local", "sleep 5", timeout_s=0.2)
        with pytest.raises(HostError, match="the local driver runs only on this machine"):
            await driver.run("10.250.0.11", "true")
        await driver.close()

    arun(main())


def test_stream_put_file_and_facts(tmp_path: Path) -> None:
    expected = hashlib.sha256(b"".join(blocks(20 << 20, seed=5))).hexdigest()
    local = tmp_path / "src"
    local.write_bytes(b"payload" * 100_000)

    async def main() -> None:
        async with LocalDriver(extra_names=frozenset({"10.0.0.5"})) as driver:
            sent = await driver.stream_to("local", f"sha256sum > {tmp_path}/sum", blocks(20 << 20, seed=5))
            assert sent == 20 << 20
            assert (tmp_path / "sum").read_text().split()[0] == expected
            with pytest.raises(CommandFailed, match="exited 2"):
                await driver.stream_to("local", "exit 2", blocks(32 << 20))
            n = await driver.put_file("10.0.0.5", local, f"{tmp_path}/d/e/dst", mode=0o600)
            assert n == local.stat().st_size
            assert (tmp_path / "d/e/dst").read_bytes() == local.read_bytes()
            assert (tmp_path / "d/e/dst").stat().st_mode & 0o777 == 0o600
            assert os.listdir(tmp_path / "d/e") == ["dst"]
            assert await driver.exists("local", str(tmp_path / "d/e/dst"))
            assert await driver.is_dir("local", str(tmp_path / "d"))
            assert not await driver.is_dir("local", str(tmp_path / "d/e/dst"))
            assert not await driver.exists("local", str(tmp_path / "none"))
            assert await driver.hostname("local") == pyplatform.node()
            assert (await driver.platform("local")).architecture == Platform.host().architecture

    arun(main())


def test_concurrent_commands() -> None:
    async def main() -> list[str]:
        async with LocalDriver() as driver:
            results = await asyncio.gather(*(driver.run("local", f"echo {i}") for i in range(30)))
            return [r.stdout.strip() for r in results]

    assert arun(main()) == [str(i) for i in range(30)]
