"""SSHDriver on real hosts (tests/hosts.py): concurrency, channel limits, streaming, uploads,
auth, host keys, lost connections and unreachable hosts. Every error is one line."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
import subprocess
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from builder.errors import CommandFailed, HostError, UsageError
from builder.runtime.infra import (
    ChannelRetried,
    Connected,
    InfraEvent,
    SSHCredentials,
    SSHDriver,
    TransferProgress,
)
from tests.hosts import UNREACHABLE_ADDRESS, HostFactory, HostLab, HostSet

pytestmark = pytest.mark.component
T = TypeVar("T")
LIST_COMMANDS = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"


def arun(coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
    """Run one coroutine with a hard bound, so no test can hang."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout_s):
            return await coro

    return asyncio.run(bounded())


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def blocks(total: int, *, seed: int = 1, size: int = 1 << 20) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(total // size):
        yield rng.randbytes(size)


def test_runs_on_three_hosts_concurrently(hosts3: HostSet) -> None:
    events: list[InfraEvent] = []

    async def main() -> list[tuple[str, str]]:
        async with SSHDriver(hosts3.credentials(), on_event=events.append) as driver:
            names = await asyncio.gather(*(driver.hostname(a) for a in hosts3.addresses))
            platforms = await asyncio.gather(*(driver.platform(a) for a in hosts3.addresses))
            return [(n, str(p.architecture)) for n, p in zip(names, platforms, strict=True)]

    got = arun(main())
    assert [n for n, _ in got] == [h.hostname for h in hosts3]
    assert {a for _, a in got} <= {"amd64", "arm64"}
    # one connection per host, reused by the second round of commands
    assert sorted(e.host for e in events if isinstance(e, Connected)) == sorted(hosts3.addresses)


@pytest.mark.parametrize("channels", [6, 16])
def test_thirty_concurrent_commands_on_one_host(hosts3: HostSet, channels: int) -> None:
    """30 at once is 3x sshd's MaxSessions (10). With 6 channels the limit keeps under it; with
    16 sshd refuses channels and the driver's bounded retry carries every command through."""
    events: list[InfraEvent] = []
    host = hosts3[0].address

    async def main() -> list[str]:
        creds = hosts3.credentials()
        async with SSHDriver(creds, channels_per_connection=channels, on_event=events.append) as driver:
            results = await asyncio.gather(*(driver.run(host, f"sleep 0.2; echo {i}") for i in range(30)))
            return [r.stdout.strip() for r in results]

    assert arun(main()) == [str(i) for i in range(30)]
    retries = [e for e in events if isinstance(e, ChannelRetried)]
    if channels > 10:
        assert retries, "sshd never refused a channel: the retry path was not exercised"
    assert sum(isinstance(e, Connected) for e in events) == 1


def test_stream_100mb_into_sha256sum(hosts3: HostSet) -> None:
    host = hosts3[1]
    expected = hashlib.sha256()
    for block in blocks(100 << 20, seed=7):
        expected.update(block)
    progress: list[int] = []

    def on_event(e: InfraEvent) -> None:
        if isinstance(e, TransferProgress):
            progress.append(e.bytes_sent)

    async def main() -> int:
        async with SSHDriver(hosts3.credentials(), on_event=on_event) as driver:
            return await driver.stream_to(
                host.address, "sha256sum > /tmp/stream.sum", blocks(100 << 20, seed=7)
            )

    assert arun(main()) == 100 << 20
    assert host.path("/tmp/stream.sum").read_text().split()[0] == expected.hexdigest()
    assert progress[-1] == 100 << 20 and all(
        1 << 20 <= b - a <= 4 << 20 for a, b in itertools.pairwise(progress)
    )


def test_stream_from_async_iterator_and_remote_failure(hosts3: HostSet) -> None:
    host = hosts3[2].address

    async def agen() -> AsyncIterator[bytes]:
        for i in range(1000):  # small chunks are coalesced into 1-4 MiB writes
            yield b"%d\n" % i

    async def main() -> tuple[str, CommandFailed]:
        async with SSHDriver(hosts3.credentials()) as driver:
            piped = await driver.pipe_to(host, "wc -l", agen())
            with pytest.raises(CommandFailed) as failed:
                # the remote stops reading at once; the driver reports its status, no hang
                await driver.stream_to(host, "echo nope >&2; exit 3", blocks(64 << 20))
            return piped.stdout, failed.value

    out, failed = arun(main())
    assert out.strip() == "1000"
    assert failed.status == 3 and one_line(failed).endswith("exited 3: nope")


def test_put_file_verified_and_atomic(hosts3: HostSet, tmp_path: Path) -> None:
    host = hosts3[0]
    local = tmp_path / "blob"
    local.write_bytes(b"".join(blocks(5 << 20, seed=3)))

    async def main() -> tuple[int, bool, bool, bool]:
        async with SSHDriver(hosts3.credentials()) as driver:
            sent = await driver.put_file(host.address, local, "/var/lib/sealer/up/dir/blob", mode=0o750)
            sent2 = await driver.put_file(host.address, local, "/var/lib/sealer/up/dir/blob")  # replaces
            assert sent == sent2
            return (
                sent,
                await driver.exists(host.address, "/var/lib/sealer/up/dir/blob"),
                await driver.is_dir(host.address, "/var/lib/sealer/up/dir"),
                await driver.exists(host.address, "/var/lib/sealer/up/none"),
            )

    sent, exists, is_dir, missing = arun(main())
    assert sent == 5 << 20 and exists and is_dir and not missing
    landed = host.path("/var/lib/sealer/up/dir/blob")
    assert landed.read_bytes() == local.read_bytes()
    assert landed.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in landed.parent.iterdir()] == ["blob"]  # no temp file left
    assert not hosts3[1].path("/var/lib/sealer/up").exists()  # hosts do not share files


def test_command_failed_env_quoting_and_timeout(hosts3: HostSet) -> None:
    host = hosts3[1].address
    env = {"SPACES": "a  b", "QUOTES": 'it\'s "quoted"', "DOLLAR": "$HOME `id` \\n", "EMPTY": ""}

    async def main() -> None:
        async with SSHDriver(hosts3.credentials()) as driver:
            r = await driver.run(host, 'printf "%s|" "$SPACES" "$QUOTES" "$DOLLAR" "$EMPTY"', env=env)
            assert r.stdout == 'a  b|it\'s "quoted"|$HOME `id` \\n||'
            r = await driver.run(host, "tr a-z A-Z", stdin=b"from stdin")
            assert r.stdout == "FROM STDIN"
            r = await driver.run(host, "cat")  # no stdin: EOF at once, no hang
            assert r.stdout == ""
            with pytest.raises(CommandFailed) as failed:
                await driver.run(host, "echo out; echo first >&2; echo last >&2; exit 3")
            assert failed.value.status == 3
            assert (
                one_line(failed.value)
                == f'{host}: "echo out; echo first >&2; echo last >&2; exit 3" exited 3: last'
            )
            assert failed.value.stdout_tail == "out\n" and failed.value.stderr_tail == "first\nlast\n"
            r = await driver.run(host, "exit 4", check=False)
            assert r.exit_status == 4 and not r.ok
            r = await driver.run(host, "kill -TERM $$", check=False)
            assert r.exit_status == 128 + 15
            with pytest.raises(HostError, match=r"timed out after 0\.3 s"):
                await driver.run(host, "sleep 9.75", timeout_s=0.3)
            # sshd will not signal root's sessions; the host-side `timeout` ends it soon after
            for _ in range(40):
                if "sleep 9.75" not in hosts3[1].run(LIST_COMMANDS).stdout:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the timed-out command still runs on the host")
            assert (await driver.run(host, "echo still")).stdout == "still\n"
            with pytest.raises(UsageError, match="invalid environment variable name"):
                await driver.run(host, "true", env={"A B": "x"})

    arun(main())


def test_password_host(host_factory: HostFactory) -> None:
    hosts = host_factory(2, password_host=1)
    pw = hosts[1]
    assert pw.password

    async def main() -> None:
        async with SSHDriver(hosts.credentials()) as driver:
            assert (await driver.hostname(pw.address)) == pw.hostname
        wrong = SSHCredentials(user="root", password="wrong", known_hosts=hosts.known_hosts, use_agent=False)
        async with SSHDriver(wrong) as driver:
            with pytest.raises(HostError) as err:
                await driver.run(pw.address, "true")
            assert one_line(err.value) == f"{pw.address}: authentication failed for root (password)"
            assert err.value.host == pw.address
        key_only = hosts.credentials()[hosts[0].address]
        async with SSHDriver(key_only) as driver:  # the password host refuses keys
            with pytest.raises(HostError, match=r"authentication failed for root \(publickey\)"):
                await driver.run(pw.address, "true")

    arun(main())


def test_host_keys_verified(hosts3: HostSet, tmp_path: Path) -> None:
    a, b = hosts3[0], hosts3[1]
    lines = hosts3.known_hosts.read_text().splitlines()
    without_a = tmp_path / "known_hosts_without_a"
    without_a.write_text("\n".join(line for line in lines if not line.startswith(a.address + " ")) + "\n")
    changed = tmp_path / "known_hosts_changed"  # b's key filed under a's address
    changed.write_text(
        next(line for line in lines if line.startswith(b.address + " ")).replace(b.address, a.address)
    )

    async def expect(known_hosts: Path, pattern: str) -> HostError:
        async with SSHDriver(hosts3.credentials(known_hosts=known_hosts)) as driver:
            with pytest.raises(HostError, match=pattern) as err:
                await driver.run(a.address, "true")
            return err.value

    async def main() -> None:
        err = await expect(without_a, f"^{a.address}: host key not in {without_a}$")
        assert "verify_host_keys=False" in (err.hint or "")
        await expect(changed, f"^{a.address}: host key changed: it does not match {changed}$")
        await expect(tmp_path / "absent", "host key cannot be verified: .*absent does not exist")
        async with SSHDriver(hosts3.credentials(known_hosts=without_a, verify_host_keys=False)) as driver:
            assert (await driver.run(a.address, "echo ok")).stdout == "ok\n"

    arun(main())


def test_sshd_killed_mid_stream_then_reconnect(hosts3: HostSet) -> None:
    host = hosts3[2]
    started = asyncio.Event()

    def on_event(e: InfraEvent) -> None:
        if isinstance(e, TransferProgress) and e.bytes_sent >= 16 << 20:
            started.set()

    async def main() -> tuple[HostError, str]:
        async with SSHDriver(hosts3.credentials(), on_event=on_event) as driver:
            await driver.run(host.address, "true")  # connection open before the kill

            async def killer() -> None:
                await started.wait()
                await asyncio.to_thread(host.kill_sshd)

            kill = asyncio.ensure_future(killer())
            with pytest.raises(HostError) as err:
                await driver.stream_to(host.address, "cat > /dev/null", blocks(4 << 30, size=4 << 20))
            await kill
            with pytest.raises(HostError, match=rf"^{host.address}:22: connection refused$"):
                await driver.run(host.address, "true")
            await asyncio.to_thread(host.start_sshd)
            return err.value, (await driver.run(host.address, "echo back")).stdout

    err, out = arun(main())
    assert one_line(err) == f'{host.address}: connection lost while running "cat > /dev/null"'
    assert err.host == host.address
    assert out == "back\n"


def test_unreachable_hosts_fail_within_the_connect_timeout(host_lab: HostLab, hosts3: HostSet) -> None:
    creds = hosts3.credentials()[hosts3[0].address]

    async def attempt(address: str, timeout_s: float) -> tuple[str, float]:
        from dataclasses import replace

        async with SSHDriver(replace(creds, connect_timeout_s=timeout_s)) as driver:
            t0 = time.monotonic()
            with pytest.raises(HostError) as err:
                await driver.run(address, "true")
            return one_line(err.value), time.monotonic() - t0

    # no lab owns .250: the test range's unreachable route refuses it on this machine at once
    msg, took = arun(attempt(UNREACHABLE_ADDRESS, 3))
    assert msg == f"{UNREACHABLE_ADDRESS}:22: no route to host" and took < 3
    # an address on the lab's bridge that nobody answers: the connect timeout bounds it
    silent = host_lab.unused_address()
    msg, took = arun(attempt(silent, 1))
    assert msg in (f"{silent}:22: connection timed out after 1 s", f"{silent}:22: no route to host")
    assert took < 2.5


def test_proxy_jump_goes_through_the_bastion(hosts3: HostSet) -> None:
    bastion, target = hosts3[0], hosts3[1]
    creds = dict(hosts3.credentials())
    creds[target.address] = SSHCredentials(
        user="root",
        key_files=(hosts3.client_key,),
        known_hosts=hosts3.known_hosts,
        use_agent=False,
        proxy_jump=f"root@{bastion.address}:22",
    )

    async def main() -> str:
        async with SSHDriver(creds) as driver:
            return (await driver.run(target.address, "echo $SSH_CONNECTION")).stdout

    # sshd on the target sees the bastion as its client, not the controller's 10.250.0.x+1
    assert arun(main()).split()[0] == bastion.address


def test_no_credentials_for_host(hosts3: HostSet) -> None:
    async def main() -> None:
        async with SSHDriver({hosts3[0].address: hosts3.credentials()[hosts3[0].address]}) as driver:
            with pytest.raises(HostError, match="no SSH credentials for this host"):
                await driver.run(hosts3[1].address, "true")

    arun(main())


def test_ssh_config_and_agent(hosts3: HostSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """~/.ssh/config supplies HostName, User and IdentityFile for an alias; ssh-agent (with
    SSH_AUTH_SOCK set) supplies the key when the credentials name none."""
    host = hosts3[2]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/config").write_text(
        f"Host box\n  HostName {host.address}\n  User root\n  IdentityFile {hosts3.client_key}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    plain = SSHCredentials(known_hosts=hosts3.known_hosts, use_agent=False)

    async def via_config() -> str:
        async with SSHDriver({"box": plain}) as driver:
            return await driver.hostname("box")

    assert arun(via_config()) == host.hostname

    (home / ".ssh/config").unlink()  # now only the agent holds the key
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.01)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(hosts3.client_key)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))

        async def via_agent() -> str:
            async with SSHDriver(SSHCredentials(user="root", known_hosts=hosts3.known_hosts)) as driver:
                return await driver.hostname(host.address)

        assert arun(via_agent()) == host.hostname
    finally:
        agent.kill()
        agent.wait(timeout=5)
