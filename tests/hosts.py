"""Real test hosts on this machine: network namespaces on a bridge, each with its own mount
namespace and its own sshd (DESIGN.md section 6). Used by the component tests through the
fixtures at the bottom (`host_lab`, `host_factory`, `hosts3`) and by people through
`make hosts N=3` / `make hosts-down` (scripts/hosts.py). docs/hosts.md tells what is private.

Addresses. 10.250.0.0/24 is cut into seven /27 slots, one per live lab (a pytest session or
`make hosts`), so two runs on one machine never clash: slot k has the bridge `sealbr<k>` at
10.250.0.(32k+1) and host i (1..20) at 10.250.0.(32k+10+i), in netns `sealer-h<i>-s<k>`. The
first lab gets exactly 10.250.0.1 and 10.250.0.11, .12, ... The eighth /27 (.224-.255) is never
used, and an `unreachable 10.250.0.0/24` route in the root namespace makes every address of the
range that no lab owns fail at once on this machine: no test packet ever leaves it.

Ownership. /run/sealer-test-hosts/slot<k>.json records the owner (pid + start time, or
"persistent" for `make hosts`) and every process started for the slot. A slot whose owner is
dead is torn down by the next lab that starts; only processes recorded there, or running
inside that slot's network namespaces (which only this module creates), are ever killed.

This file is over the house ~400 lines because set-up, ownership and teardown of one resource
must be read together to be trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import pytest

from tests.standins import install_systemctl

SUBNET = "10.250.0.0/24"
STATE_DIR = Path("/run/sealer-test-hosts")
SLOT_COUNT = 7
SLOT_SIZE = 32
MAX_HOSTS = 20
UNREACHABLE_ADDRESS = "10.250.0.250"  # in the eighth /27, which no slot uses
PASSWORD = "sealer-test-password"
SSHD = "/usr/sbin/sshd"
TOOLS = ("ip", "unshare", "nsenter", "ssh-keygen", "sleep", SSHD)
# Private per host, bind-mounted from root_dir/<same path>; /etc is an overlay (see _holder_script).
# The cluster runtimes' data dirs are private too: the stand-ins keep their state there.
PRIVATE_DIRS = (
    "var/lib/sealer", "usr/local/bin", "root", "run", "var/tmp", "tmp",
    "var/lib/rancher", "var/lib/k0s", "var/lib/kubelet", "var/lib/etcd", "var/lib/containerd",
)  # fmt: skip
# Container runtimes this machine has for the suite's own dockerd (Debian's docker.io brings
# containerd and runc): a test host is a bare host, so they are masked in its mount namespace,
# or the kubernetes image's init.sh would take the machine's containerd for the host's own.
MASKED_BINARIES = (
    "/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/dockerd", "/usr/bin/docker",
    "/usr/sbin/runc", "/usr/bin/runc",
)  # fmt: skip
MASKED_ETC = ("containerd", "docker")
# /usr/bin is an overlay too (this machine's below, root_dir/usr/bin above): scripts of sealer's
# image contract copy binaries there (init-kube.sh: `cp ../bin/* /usr/bin`; a containerd
# tarball unpacked at /), and each host keeps its own. MASKED_BINARIES under it are whiteouts
# in its lowest layer, so a host may install its own containerd there. /proc/sys is read-only
# but for /proc/sys/net, which is the host's network namespace's own: a script's `sysctl` of a
# net.* key stays in the host; any other key (global to this machine) fails instead of leaking.
# A symlink of this machine's /usr/bin that leads out of /usr/bin and /etc (google-cloud-sdk's
# kubectl -> /usr/lib/...) is hidden the same way: `cp kubectl /usr/bin` would write through it.
OVERLAID_BIN = "usr/bin"
BIN_MASK = ".usr-bin-mask"
# What a host made with `containerd=True` keeps of MASKED_BINARIES: Debian's containerd, ctr and
# runc, started by the test (TestHost.start_containerd) with its own /run and a /var/lib/containerd
# under root_dir, which sits on this machine's disk (pytest's tmp dir): containerd's overlayfs
# snapshotter needs a real filesystem below it (an overlay mount cannot be an overlay's upper
# dir, so /var/lib/containerd must not sit in the host's /etc-style overlay).
REAL_CONTAINERD_BINARIES = ("/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc", "/usr/bin/runc")
CONTAINERD = "/usr/bin/containerd"
CONTAINERD_CONFIG = "/etc/sealer-test/containerd.toml"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
# The least containerd needs here: its own root, state and socket, and the CRI plugin reading
# registry hosts from containerd's certs.d (what the cluster registry's mirrors are written to).
MINIMAL_CONTAINERD_CONFIG = f"""version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
"""
_NETNS_RE = re.compile(r"^sealer-h(\d+)-s(\d+)$")
_LINK_RE = re.compile(r"^(?:sealbr(\d+)|svh\d+s(\d+))$")  # the bridges and root-side veths


class HostSetupError(Exception):
    """The test hosts could not be made or removed: a broken machine, not a product failure."""


# --- processes -----------------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """The kernel start time of `pid` (jiffies since boot), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def _is_alive(pid: int, start: int | None) -> bool:
    now = _start_time(pid)
    return now is not None and (start is None or now == start)


def _kill(pid: int, start: int | None, *, sig: int = signal.SIGTERM, wait_s: float = 2.0) -> None:
    """Signal one process we started (checked by start time, so a reused pid is left alone)."""
    if not _is_alive(pid, start):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + wait_s
    while _is_alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.01)
    if _is_alive(pid, start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def _descendants(pid: int) -> list[int]:
    children, out, todo = _children_map(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _run(*args: str, check: bool = True, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise HostSetupError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _netns_pids(netns: str) -> list[int]:
    proc = _run("ip", "netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def _destroy_netns(netns: str) -> None:
    """Kill every process inside `netns` (all started by a lab of this module), then delete it."""
    for _ in range(3):
        pids = _netns_pids(netns)
        if not pids:
            break
        for pid in pids:
            _kill(pid, _start_time(pid), sig=signal.SIGKILL, wait_s=1.0)
    _run("ip", "netns", "del", netns, check=False)


def _hash_password(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
        except ImportError:  # Python 3.13 dropped crypt; openssl is there with ca-certificates
            return _run("openssl", "passwd", "-6", password).stdout.strip()


# --- hosts -----------------------------------------------------------------------------------------


@dataclass
class TestHost:
    """One host: its own network, mount and UTS namespaces, and its own sshd on port 22."""

    __test__ = False  # not a test class, despite the name

    index: int
    address: str
    netns: str
    hostname: str
    root_dir: Path  # controller side: root_dir/var/lib/sealer is the host's /var/lib/sealer, ...
    password: str | None = None  # set on the password host: root's password inside it
    holder: tuple[int, int | None] | None = None  # (pid, start time) of the mount-ns holder
    sshd: tuple[int, int | None] | None = None
    real_containerd: bool = False  # made with containerd=True: Debian's containerd, ctr, runc usable
    containerd: tuple[int, int | None] | None = None  # (pid, start time) once start_containerd ran
    _on_change: Callable[[], None] = field(default=lambda: None, repr=False)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def pid_of_sshd(self) -> int | None:
        return self.sshd[0] if self.sshd and _is_alive(*self.sshd) else None

    def path(self, inside: str) -> Path:
        """Where the host's `inside` path lives on this machine (private dirs and /etc changes)."""
        rel = inside.lstrip("/")
        if not any(rel == d or rel.startswith(d + "/") for d in ("etc", OVERLAID_BIN, *PRIVATE_DIRS)):
            raise ValueError(f"{inside} is shared with this machine, not private to {self.hostname}")
        return self.root_dir / rel

    def _nsenter(self) -> list[str]:
        if self.holder is None or not _is_alive(*self.holder):
            raise HostSetupError(f"{self.hostname}: its namespace holder is not running")
        return ["nsenter", "-t", str(self.holder[0]), "-m", "-n", "-u", "--"]

    def start_sshd(self, *, wait_s: float = 10.0) -> int:
        """Start the host's sshd (after `kill_sshd`, or the first time) and wait until it accepts."""
        if self.pid_of_sshd is not None:
            return self.pid_of_sshd
        proc = self._spawn([SSHD, "-D", "-e", "-f", "/etc/sealer-test/sshd_config"], "sshd.log")
        self.sshd = (proc.pid, _start_time(proc.pid))
        self._on_change()
        self._wait_accepting(proc, wait_s)
        return proc.pid

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """Start `argv` inside the host, in a session of its own, output to root_dir/`log_name`;
        the process is the host's to end (`_procs`)."""
        log = open(self.root_dir / log_name, "ab")  # noqa: SIM115 (handed to the child)
        with log:
            proc = subprocess.Popen(
                [*self._nsenter(), *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._procs.append(proc)
        return proc

    def _reap(self, pid: int) -> None:
        """Collect the exit status of a child `_spawn` started (no zombie left)."""
        for proc in self._procs:
            if proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)

    def _wait_accepting(self, proc: subprocess.Popen[bytes] | None, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with socket.create_connection((self.address, 22), timeout=0.5):
                    return
            except OSError as err:
                last = err
            if proc is not None and proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        log = (self.root_dir / "sshd.log").read_text(errors="replace")[-2000:]
        raise HostSetupError(
            f"{self.hostname}: sshd does not accept on {self.address}:22 ({last}); log:\n{log}"
        )

    def kill_sshd(self) -> None:
        """Kill the sshd listener and every sshd session process under it (connections drop)."""
        if self.sshd is None:
            return
        pid, start = self.sshd
        if _is_alive(pid, start):
            for child in _descendants(pid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{child}/comm").read_text().strip() == "sshd":
                        os.kill(child, signal.SIGKILL)
            _kill(pid, start, sig=signal.SIGKILL)
        self._reap(pid)
        self.sshd = None
        self._on_change()

    def start_containerd(self, config: str = MINIMAL_CONTAINERD_CONFIG, *, wait_s: float = 20.0) -> int:
        """Start Debian's containerd inside the host (its mount, network and UTS namespaces) with
        `config` written to CONTAINERD_CONFIG, and wait until `ctr version` answers on its socket.
        Only on a host made with `containerd=True`; `stop_containerd` (or the host's removal)
        ends it by PID."""
        if not self.real_containerd:
            raise HostSetupError(f"{self.hostname}: made without containerd=True (its containerd is masked)")
        if self.containerd is not None and _is_alive(*self.containerd):
            return self.containerd[0]
        config_path = self.path(CONTAINERD_CONFIG)
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(config)
        proc = self._spawn([CONTAINERD, "--config", CONTAINERD_CONFIG], "containerd.log")
        self.containerd = (proc.pid, _start_time(proc.pid))
        self._on_change()
        deadline = time.monotonic() + wait_s
        while self.run(
            f"ctr --address {CONTAINERD_SOCKET} version", check=False, timeout_s=wait_s
        ).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.root_dir / "containerd.log").read_text(errors="replace")[-2000:]
                self.stop_containerd()
                raise HostSetupError(
                    f"{self.hostname}: containerd did not answer on {CONTAINERD_SOCKET}:\n{tail}"
                )
            time.sleep(0.05)
        return proc.pid

    def stop_containerd(self) -> None:
        """End the containerd `start_containerd` started (SIGTERM, then SIGKILL), and its shims."""
        if self.containerd is None:
            return
        pid, start = self.containerd
        _kill(pid, start, wait_s=5.0)
        # A shim re-parents itself away from containerd; the ones inside this host's netns are
        # its containerd's (only this module starts processes there).
        for shim in _netns_pids(self.netns):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{shim}/comm").read_text().startswith("containerd-shim"):
                    _kill(shim, _start_time(shim), sig=signal.SIGKILL)
        self._reap(pid)
        self.containerd = None
        self._on_change()

    def run(
        self, command: str, *, check: bool = True, timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `sh -c command` inside the host, without ssh (for assertions and set-up)."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C",
        }
        proc = subprocess.run(
            [*self._nsenter(), "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{self.hostname}: {command!r} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def record(self) -> dict[str, Any]:
        return {
            "netns": self.netns, "holder": self.holder, "sshd": self.sshd, "containerd": self.containerd,
            "root_dir": str(self.root_dir),
        }  # fmt: skip


@dataclass(frozen=True)
class HostSet(Sequence[TestHost]):
    """Hosts made together, with the client key and a known_hosts file naming all of them."""

    hosts: tuple[TestHost, ...]
    client_key: Path
    known_hosts: Path

    @overload
    def __getitem__(self, i: int) -> TestHost: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[TestHost]: ...
    def __getitem__(self, i: int | slice) -> TestHost | Sequence[TestHost]:
        return self.hosts[i]

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def addresses(self) -> list[str]:
        return [h.address for h in self.hosts]

    def credentials(self, **overrides: Any) -> dict[str, Any]:
        """SSHCredentials per address for builder.runtime.infra.SSHDriver (no agent, this known_hosts)."""
        from builder.runtime.infra import SSHCredentials

        out = {}
        for h in self.hosts:
            base: dict[str, Any] = {"user": "root", "known_hosts": self.known_hosts, "use_agent": False}
            base |= {"password": h.password} if h.password else {"key_files": (self.client_key,)}
            out[h.address] = SSHCredentials(**(base | overrides))
        return out

    def openssh_args(self, host: TestHost) -> list[str]:
        """`ssh` arguments that log into `host` with this set's key and known_hosts."""
        return [
            "ssh", "-i", str(self.client_key), "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            f"root@{host.address}",
        ]  # fmt: skip


def _sshd_config(address: str, *, password: bool) -> str:
    return "\n".join(
        [
            f"ListenAddress {address}:22",
            "HostKey /etc/sealer-test/ssh_host_ed25519_key",
            "UsePAM no",
            "PermitRootLogin yes",
            f"PasswordAuthentication {'yes' if password else 'no'}",
            f"PubkeyAuthentication {'no' if password else 'yes'}",
            "KbdInteractiveAuthentication no",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "StrictModes no",  # root_dir sits in pytest's tmp dir, whose modes sshd would refuse
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "PidFile none",
            "LogLevel INFO",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "",  # MaxSessions stays at its default 10: the driver must cope
        ]
    )


def _mask_escaping_links(mask: Path) -> None:
    """Whiteouts in `mask` (the lowest layer of a host's /usr/bin) for this machine's /usr/bin
    symlinks that resolve outside /usr/bin and /etc, whose targets no overlay covers."""
    mask.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(f"/{OVERLAID_BIN}"):
        if not entry.is_symlink():
            continue
        target = os.path.realpath(entry.path)
        if not target.startswith((f"/{OVERLAID_BIN}/", "/etc/")) and not (mask / entry.name).exists():
            os.mknod(mask / entry.name, stat.S_IFCHR, os.makedev(0, 0))


def _holder_script(root_dir: Path, hostname: str, *, masked: Sequence[str] = MASKED_BINARIES) -> str:
    """Shell run by the per-host holder: private mounts, `masked` binaries hidden, /usr/bin an
    overlay and /proc/sys read-only but for its net/ (OVERLAID_BIN), hostname, then sleep forever.

    /etc is an overlay (this machine's /etc below, root_dir/etc above), so a host may write
    /etc and only it sees the change. The private dir that contains root_dir itself (pytest's
    tmp dir is under /tmp) is mounted last, or its own source would be hidden first.
    """
    dirs = sorted(PRIVATE_DIRS, key=lambda d: str(root_dir).startswith("/" + d + "/"))
    mask = f"{root_dir}/.etc-mask"
    lines = [
        "set -e",
        # A lower layer of whiteouts hides the machine's container runtime config (see
        # MASKED_BINARIES) from the host, so that it starts as bare as a fresh machine.
        f"mkdir -p {mask}",
        *(f"if [ -e /etc/{d} ] && [ ! -e {mask}/{d} ]; then mknod {mask}/{d} c 0 0; fi" for d in MASKED_ETC),
        f"mount -t overlay sealer-etc -o lowerdir={mask}:/etc,upperdir={root_dir}/etc,workdir={root_dir}/.etc-work /etc",
    ]
    bin_mask = f"{root_dir}/{BIN_MASK}"
    in_bin = [b for b in masked if b.startswith(f"/{OVERLAID_BIN}/")]
    lines += [
        f"mkdir -p {bin_mask}",
        *(f"if [ -e {b} ] && [ ! -e {bin_mask}/{b.rsplit('/', 1)[1]} ]; then mknod {bin_mask}/{b.rsplit('/', 1)[1]} c 0 0; fi"
          for b in in_bin),
        f"mount -t overlay sealer-usr-bin -o lowerdir={bin_mask}:/{OVERLAID_BIN},"
        f"upperdir={root_dir}/{OVERLAID_BIN},workdir={root_dir}/.usr-bin-work /{OVERLAID_BIN}",
        "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys",
        "mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net",
    ]  # fmt: skip
    lines += [f"mkdir -p /{d} && mount --bind {root_dir}/{d} /{d}" for d in dirs]
    lines += [f"if [ -e {b} ]; then mount --bind /dev/null {b}; fi" for b in masked if b not in in_bin]
    lines += [f"hostname {hostname}", "echo ready", "exec sleep infinity"]
    return "\n".join(lines)


# --- labs ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _global_lock() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _state_files() -> list[Path]:
    return sorted(STATE_DIR.glob("slot*.json")) if STATE_DIR.is_dir() else []


def _owner_alive(state: dict[str, Any]) -> bool:
    return bool(state.get("persistent")) or _is_alive(int(state["pid"]), state.get("start"))


def _destroy_slot(state: dict[str, Any]) -> None:
    """Tear down what a state file records (and anything else of its slot); best effort."""
    slot = int(state["slot"])
    for record in state.get("hosts", {}).values():
        for key in ("sshd", "containerd", "holder"):
            if record.get(key):
                _kill(record[key][0], record[key][1], sig=signal.SIGKILL)
    for netns in _run("ip", "netns", "list", check=False).stdout.split("\n"):
        m = _NETNS_RE.match(netns.split(" ")[0])
        if m and int(m.group(2)) == slot:
            _destroy_netns(m.group(0))
    _delete_links(lambda s: s == slot)
    (STATE_DIR / f"slot{slot}.json").unlink(missing_ok=True)


def _delete_links(of_slot: Callable[[int], bool]) -> None:
    """Delete this module's bridges and root-side veths of the slots `of_slot` picks. A veth
    goes explicitly: a deleted netns can outlive its name for minutes while orphaned TCP
    sockets of a killed sshd time out, and its veth pair with it."""
    for line in _run("ip", "-o", "link", "show", check=False).stdout.split("\n"):
        parts = line.split(":")
        m = _LINK_RE.match(parts[1].strip().split("@")[0]) if len(parts) > 1 else None
        if m and of_slot(int(m.group(1) or m.group(2))):
            _run("ip", "link", "del", m.group(0), check=False)


def _clean_stale() -> None:
    """Remove every slot whose owner died, and resources of this module that no state records."""
    owned = set()
    for path in _state_files():
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _owner_alive(state):
            owned.add(int(state["slot"]))
        else:
            _destroy_slot(state)
    for line in _run("ip", "netns", "list", check=False).stdout.split("\n"):
        m = _NETNS_RE.match(line.split(" ")[0])
        if m and int(m.group(2)) not in owned:
            _destroy_netns(m.group(0))
    _delete_links(lambda slot: slot not in owned)


def check_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise HostSetupError(
            f"test hosts need {', '.join(missing)}: run `make install` (openssh-server, iproute2)"
        )
    if os.geteuid() != 0:
        raise HostSetupError("test hosts need root (network and mount namespaces)")


class HostLab:
    """One slot: a bridge and the hosts on it, owned by this process (or persistent)."""

    def __init__(self, slot: int, base_dir: Path, *, persistent: bool) -> None:
        self.slot = slot
        self.base_dir = base_dir
        self.persistent = persistent
        self.bridge = f"sealbr{slot}"
        self.hosts: dict[int, TestHost] = {}
        self._sets = 0
        self.client_key = base_dir / "client_key"

    @classmethod
    def open(cls, base_dir: Path, *, persistent: bool = False) -> HostLab:
        check_tools()
        with _global_lock():
            _clean_stale()
            taken = {int(p.stem.removeprefix("slot")) for p in _state_files()}
            free = [k for k in range(SLOT_COUNT) if k not in taken]
            if not free:
                raise HostSetupError(f"all {SLOT_COUNT} host slots are in use: see {STATE_DIR}")
            lab = cls(free[0], base_dir, persistent=persistent)
            lab._save()
        try:
            base_dir.mkdir(parents=True, exist_ok=True)
            _run("ip", "route", "replace", "unreachable", SUBNET)
            _run("ip", "link", "add", lab.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{lab.address(0, gateway=True)}/27", "dev", lab.bridge)
            _run("ip", "link", "set", lab.bridge, "up")
            if not lab.client_key.exists():
                _run(
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "sealer-test",
                    "-f",
                    str(lab.client_key),
                )
        except BaseException:
            lab.close()
            raise
        return lab

    def address(self, index: int, *, gateway: bool = False) -> str:
        return f"10.250.0.{SLOT_SIZE * self.slot + (1 if gateway else 10 + index)}"

    def unused_address(self) -> str:
        """An address on this lab's bridge that no host answers (connects time out there)."""
        return self.address(max(i for i in range(1, MAX_HOSTS + 1) if i not in self.hosts))

    def _save(self) -> None:
        state = {
            "slot": self.slot,
            "pid": os.getpid(),
            "start": _start_time(os.getpid()),
            "persistent": self.persistent,
            "base_dir": str(self.base_dir),
            "hosts": {str(i): h.record() for i, h in self.hosts.items()},
        }
        tmp = STATE_DIR / f".slot{self.slot}.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.rename(STATE_DIR / f"slot{self.slot}.json")

    def make_hosts(self, n: int, *, password_host: int | None = None, containerd: bool = False) -> HostSet:
        """Create `n` hosts (`password_host`: position in the set that takes root's password
        instead of the key; `containerd`: Debian's containerd, ctr and runc left usable, see
        TestHost.start_containerd). All accept ssh when this returns; on failure none is left."""
        free = [i for i in range(1, MAX_HOSTS + 1) if i not in self.hosts]
        if n > len(free):
            raise HostSetupError(f"a lab holds at most {MAX_HOSTS} hosts ({len(self.hosts)} exist)")
        self._sets += 1
        set_dir = self.base_dir / f"set{self._sets}"
        shutil.rmtree(set_dir, ignore_errors=True)  # left by an earlier lab in the same base dir
        made: list[TestHost] = []
        try:
            for pos, index in enumerate(free[:n]):
                made.append(self._prepare_host(index, set_dir, password=pos == password_host))
                made[-1].real_containerd = containerd
            self._start_network(made)
            self._start_holders(made)
            for host in made:
                host.start_sshd()
                # systemd's systemctl, as every machine sealer runs on has it (the cluster
                # registry is a unit on each master); the stand-in, since no systemd runs here
                install_systemctl(host)
        except BaseException:
            self.remove_hosts(made)
            raise
        known_hosts = set_dir / "known_hosts"
        lines = [
            f"{h.address} {(h.root_dir / 'etc/sealer-test/ssh_host_ed25519_key.pub').read_text()}"
            for h in made
        ]
        known_hosts.write_text("".join(lines))
        return HostSet(tuple(made), self.client_key, known_hosts)

    def _prepare_host(self, index: int, set_dir: Path, *, password: bool) -> TestHost:
        netns = f"sealer-h{index}-s{self.slot}"
        host = TestHost(
            index, self.address(index), netns, netns, set_dir / f"h{index}", _on_change=self._save
        )
        self.hosts[index] = host
        self._save()
        root = host.root_dir
        work = (".etc-work", ".usr-bin-work")  # the overlays' work dirs
        for d in (*PRIVATE_DIRS, OVERLAID_BIN, *work, "etc/sealer-test", "root/.ssh", "run/sshd"):
            (root / d).mkdir(parents=True, exist_ok=True)
        _mask_escaping_links(root / BIN_MASK)
        (root / "tmp").chmod(0o1777)
        (root / "var/tmp").chmod(0o1777)
        # Root's real .bashrc runs `pyenv init` (~200 ms a command); sshd's bash sources it.
        (root / "root/.bashrc").write_text("")
        (root / "root/.profile").write_text("")
        (root / "etc/hostname").write_text(host.hostname + "\n")
        (root / "etc/hosts").write_text(Path("/etc/hosts").read_text() + f"{host.address}\t{host.hostname}\n")
        (root / "etc/sealer-test/sshd_config").write_text(_sshd_config(host.address, password=password))
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.hostname,
             "-f", str(root / "etc/sealer-test/ssh_host_ed25519_key"))  # fmt: skip
        if password:
            host.password = PASSWORD
            hashed = _hash_password(PASSWORD)
            shadow = [
                f"root:{hashed}:{line.split(':', 2)[2]}" if line.startswith("root:") else line
                for line in Path("/etc/shadow").read_text().splitlines()
            ]
            (root / "etc/shadow").write_text("\n".join(shadow) + "\n")
            (root / "etc/shadow").chmod(0o640)
        else:
            shutil.copyfile(f"{self.client_key}.pub", root / "root/.ssh/authorized_keys")
        return host

    def _start_network(self, hosts: Sequence[TestHost]) -> None:
        for host in hosts:
            veth = f"svh{host.index}s{self.slot}"
            _run("ip", "link", "del", veth, check=False)  # see _delete_links
            _run("ip", "netns", "add", host.netns)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            _run("ip", "link", "set", veth, "master", self.bridge, "up")
            _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/27", "dev", "eth0")
            _run("ip", "-n", host.netns, "link", "set", "eth0", "up")
            _run("ip", "-n", host.netns, "link", "set", "lo", "up")
            # A host re-made at an address used seconds ago has a new MAC, but this side's ARP
            # entry may still name the old one (frames flood and are dropped) until it goes
            # stale: ssh then fails to connect for up to a minute. Forget it now.
            _run("ip", "neigh", "flush", "to", host.address, check=False)

    def _start_holders(self, hosts: Sequence[TestHost], wait_s: float = 10.0) -> None:
        procs = []
        for host in hosts:
            masked = [
                b for b in MASKED_BINARIES if not (host.real_containerd and b in REAL_CONTAINERD_BINARIES)
            ]
            with open(host.root_dir / "holder.log", "wb") as log:
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--propagation", "private",
                     "--", "sh", "-c", _holder_script(host.root_dir, host.hostname, masked=masked)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                )  # fmt: skip
            host._procs.append(proc)
            host.holder = (proc.pid, _start_time(proc.pid))
            procs.append((host, proc))
        self._save()
        deadline = time.monotonic() + wait_s
        for host, proc in procs:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else b""
            proc.stdout.close()
            if line.strip() != b"ready":
                err = (host.root_dir / "holder.log").read_text(errors="replace")[-2000:]
                raise HostSetupError(f"{host.hostname}: namespace set-up failed:\n{err}")
            host.holder = (proc.pid, _start_time(proc.pid))  # now `sleep`, same pid
        self._save()

    def remove_hosts(self, hosts: Sequence[TestHost]) -> None:
        """Tear hosts down: sshd, every process inside them, the holder, the netns. Best effort:
        every step runs even when an earlier one failed; the state file follows each change."""
        for host in hosts:
            with contextlib.suppress(Exception):
                host.kill_sshd()
            with contextlib.suppress(Exception):
                host.stop_containerd()
            _destroy_netns(host.netns)
            _run("ip", "link", "del", f"svh{host.index}s{self.slot}", check=False)
            if host.holder:
                _kill(*host.holder, sig=signal.SIGKILL)
            for proc in host._procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
            host.holder = None
            for work in (".etc-work", ".usr-bin-work"):
                with contextlib.suppress(OSError):
                    shutil.rmtree(host.root_dir / work)
            self.hosts.pop(host.index, None)
            self._save()

    def close(self) -> None:
        """Remove every host, the bridge and the slot; the range's unreachable route goes with the
        last slot on this machine."""
        self.remove_hosts(list(self.hosts.values()))
        with _global_lock():
            _destroy_slot({"slot": self.slot})
            if not _state_files():
                _run("ip", "route", "del", "unreachable", SUBNET, check=False)


def remove_persistent_labs() -> list[int]:
    """`make hosts-down`: tear down every lab made by `make hosts`; returns their slots."""
    removed = []
    with _global_lock():
        for path in _state_files():
            state = json.loads(path.read_text())
            if state.get("persistent"):
                _destroy_slot(state)
                shutil.rmtree(state["base_dir"], ignore_errors=True)
                removed.append(int(state["slot"]))
        _clean_stale()
        if not _state_files():
            _run("ip", "route", "del", "unreachable", SUBNET, check=False)
    return removed


# --- pytest fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def host_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostLab]:
    lab = HostLab.open(tmp_path_factory.mktemp("hosts"))
    try:
        yield lab
    finally:
        lab.close()


HostFactory = Callable[..., HostSet]


@pytest.fixture
def host_factory(host_lab: HostLab) -> Iterator[HostFactory]:
    """`host_factory(n, password_host=None, containerd=False)`: hosts torn down when the test
    ends, pass or fail (a containerd started in them too)."""
    made: list[HostSet] = []

    def make(n: int, *, password_host: int | None = None, containerd: bool = False) -> HostSet:
        hosts = host_lab.make_hosts(n, password_host=password_host, containerd=containerd)
        made.append(hosts)
        return hosts

    try:
        yield make
    finally:
        for hosts in made:
            host_lab.remove_hosts(hosts)


@pytest.fixture(scope="module")
def hosts3(host_lab: HostLab) -> Iterator[HostSet]:
    """Three key-auth hosts shared by a test module; tests that kill sshd must start it again."""
    hosts = host_lab.make_hosts(3)
    try:
        yield hosts
    finally:
        host_lab.remove_hosts(hosts)
