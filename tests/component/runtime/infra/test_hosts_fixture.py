"""The test hosts themselves (tests/hosts.py): isolation, the empty .bashrc, the network, and
teardown that holds when set-up fails half-way or a run is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.hosts as hosts_mod
from tests.hosts import STATE_DIR, HostFactory, HostLab, HostSet, HostSetupError

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[4]


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_hosts_are_private_and_networked(hosts3: HostSet) -> None:
    a, b = hosts3[0], hosts3[1]
    assert a.address.startswith("10.250.0.") and a.netns in _netns()
    a.run(
        "mkdir -p /var/lib/sealer/mine && echo a > /var/lib/sealer/mine/f && echo cfg > /etc/sealer-probe.conf"
    )
    a.run("echo tool > /usr/local/bin/probe-tool && echo t > /tmp/probe && echo r > /root/probe")
    assert a.path("/var/lib/sealer/mine/f").read_text() == "a\n"  # visible from the controller
    assert a.path("/etc/sealer-probe.conf").read_text() == "cfg\n"
    for path in ("/var/lib/sealer/mine", "/etc/sealer-probe.conf", "/usr/local/bin/probe-tool", "/tmp/probe"):
        assert b.run(f"test -e {path}", check=False).returncode == 1, path
        assert not Path(path).exists(), f"{path} leaked to this machine"
    assert not Path("/root/probe").exists()
    assert a.run("cat /root/.bashrc; hostname").stdout == f"{a.hostname}\n"
    # hosts reach each other across the bridge (a cluster needs it), on port 22 at least
    probe = f"exec 3<>/dev/tcp/{b.address}/22 && head -c 4 <&3"
    assert b.run(f"bash -c '{probe}'").stdout == "SSH-"
    with pytest.raises(ValueError, match="shared with this machine"):
        a.path("/usr/sbin/sshd")


def test_scripts_that_install_into_usr_bin_and_set_sysctls_stay_in_the_host(hosts3: HostSet) -> None:
    """What sealer's image scripts do (init-kube.sh: `cp ../bin/* /usr/bin`, sysctl) lands in
    the host: /usr/bin is an overlay, /proc/sys read-only but for the netns' own net/."""
    a, b = hosts3[0], hosts3[1]
    a.run("echo bin > /usr/bin/sealer-probe-bin && chmod +x /usr/bin/sealer-probe-bin")
    assert a.path("/usr/bin/sealer-probe-bin").read_text() == "bin\n"
    assert b.run("test -e /usr/bin/sealer-probe-bin", check=False).returncode == 1
    assert not Path("/usr/bin/sealer-probe-bin").exists()
    assert a.run("test -x /usr/bin/env").returncode == 0  # this machine's /usr/bin below
    # the machine's container runtime stays hidden, and a host may install its own there
    assert a.run("command -v containerd", check=False).returncode != 0
    a.run("printf '#!/bin/sh\\necho mine\\n' > /usr/bin/containerd && chmod +x /usr/bin/containerd")
    assert a.run("containerd").stdout == "mine\n"
    # a symlink of this machine's /usr/bin that leads elsewhere is hidden: a write never follows it
    escaping = [
        e.path for e in os.scandir("/usr/bin")
        if e.is_symlink() and not os.path.realpath(e.path).startswith(("/usr/bin/", "/etc/"))
    ]  # fmt: skip
    for link in escaping[:1]:
        target = Path(os.path.realpath(link))
        before = target.stat().st_mtime_ns if target.exists() else None
        assert a.run(f"test -e {link}", check=False).returncode == 1, link
        a.run(f"echo mine > {link}")
        assert (target.stat().st_mtime_ns if target.exists() else None) == before, f"{link} wrote {target}"
    mine = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    flipped = "0" if b.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1" else "1"
    a.run(f"sysctl -q -w net.ipv4.ip_forward={flipped}")
    assert a.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == flipped
    assert b.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() != flipped
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == mine
    swappiness = Path("/proc/sys/vm/swappiness").read_text()
    refused = a.run("sysctl -w vm.swappiness=17", check=False)
    assert refused.returncode != 0 and Path("/proc/sys/vm/swappiness").read_text() == swappiness


def test_make_hosts_fast_and_clean(host_factory: HostFactory) -> None:
    t0 = time.monotonic()
    hosts = host_factory(3, password_host=2)
    took = time.monotonic() - t0
    assert took < 2, f"3 hosts took {took:.2f} s"
    assert len(hosts) == 3 and hosts[2].password and not hosts[0].password
    assert len(hosts.known_hosts.read_text().splitlines()) == 3
    assert all(h.pid_of_sshd for h in hosts)


def test_half_failed_setup_leaves_nothing(host_lab: HostLab, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = f"-s{host_lab.slot}"  # other labs (another run) may come and go meanwhile
    before = {n for n in _netns() if n.endswith(mine)}
    monkeypatch.setattr(hosts_mod, "SSHD", "/bin/false")  # sshd "starts" and exits at once
    with pytest.raises(HostSetupError, match="sshd does not accept"):
        host_lab.make_hosts(2)
    assert {n for n in _netns() if n.endswith(mine)} == before
    assert not [pid for pid in _pids_in(host_lab.base_dir)]


def _pids_in(base_dir: Path) -> list[int]:
    """Processes whose command line names `base_dir` (holders and sshds of that lab)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(base_dir) in cmdline and "pytest" not in cmdline:
                out.append(int(entry.name))
    return out


CRASHING_LAB = """
import os, signal, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.hosts import HostLab
lab = HostLab.open(Path({base!r}))
hosts = lab.make_hosts(1)
print(lab.slot, hosts[0].netns, hosts[0].sshd[0], hosts[0].holder[0], flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_stale_lab_of_a_killed_run_is_cleaned(host_lab: HostLab, tmp_path: Path) -> None:
    script = CRASHING_LAB.format(root=str(ROOT), base=str(tmp_path / "crashed"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    slot, netns, sshd_pid, holder_pid = proc.stdout.split()
    assert netns in _netns() and (STATE_DIR / f"slot{slot}.json").exists()
    lab = HostLab.open(tmp_path / "next")  # cleans the dead owner's slot first
    try:
        assert netns not in _netns()
        for pid in (int(sshd_pid), int(holder_pid)):
            assert (
                not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
    finally:
        lab.close()
