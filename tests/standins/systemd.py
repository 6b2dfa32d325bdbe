"""The `systemctl` stand-in (entry "standins.systemd:main"): enough of systemd for the upstream
install scripts and the runtime plugins, on hosts where no systemd runs.

    systemctl daemon-reload
    systemctl enable [--now] UNIT...      symlink into <WantedBy>.wants/ ([Install] is required)
    systemctl disable [--now] UNIT...
    systemctl start|stop|restart UNIT...
    systemctl reload UNIT...              ExecReload= commands, $MAINPID set (a running unit only)
    systemctl is-active [--quiet] UNIT... "active"/"inactive"/"failed"; exit 0 only when active
    systemctl is-enabled [--quiet] UNIT...
    systemctl status UNIT...              a few lines and the log's tail; exit 3 when not active
    systemctl reset-failed [UNIT...]

Units are /etc/systemd/system/<name>.service ("k3s" and "k3s.service" are one unit), each with
its drop-ins /etc/systemd/system/<name>.service.d/*.conf read after it in lexical order of file
name (systemd.unit(5); the other drop-in dirs - /run, /usr/lib, "service.d/" - are not read).
Each file needs its own section headers; later assignments win and an empty one resets a list
setting, which is how a drop-in replaces a command (`ExecStart=` then `ExecStart=/new`). As
systemd does, a unit is used as loaded: `daemon-reload` snapshots every unit file with its
drop-ins, `start` uses the snapshot (warning when any of them changed on disk since), so an
install script that rewrites a unit or a drop-in and forgets daemon-reload starts the old
command line here too.

[Service] keys acted on: Type (simple, exec, notify), ExecStartPre, ExecReload, ExecStart (one; an absolute,
literal program path, shell-like quoting, "\\" continuations, variables expanded as
systemd.service(5) "Command lines" says: see `expand_argv`; of the prefixes only "-", which
ignores a failure, a missing executable too), Environment, EnvironmentFile ("-" optional, %N =
unit name), KillMode (process, or the whole process group), TimeoutStartSec, TimeoutStopSec,
WorkingDirectory, Restart and RestartSec. The service gets systemd's clean environment (PATH
only, plus its Environment/EnvironmentFile and NOTIFY_SOCKET), never the caller's. Other keys
(Delegate, LimitNOFILE...) are read and ignored.

Restart= as systemd.service(5)'s table says: `no` (the default: a crashed service stays down),
`always`, `on-success`, `on-failure` (an exit code other than 0, or a signal other than the clean
SIGHUP, SIGINT, SIGTERM, SIGPIPE), `on-abnormal` and `on-abort` (an unclean signal; there are no
timeouts or watchdogs here); the main process started again after RestartSec (default 100ms),
the unit "activating" meanwhile. `stop` (and `restart`'s stop) never causes a restart. More than
5 starts within 10 s (systemd's default StartLimitBurst/StartLimitIntervalSec) and the unit
fails instead, as systemd's start-limit-hit.

ExecStart runs detached (its own session) under a small supervisor process that records the
main pid and, when it ends, its exit status (so `is-active` can say "failed"). Type=notify
waits for READY=1 on $NOTIFY_SOCKET (core.notify_ready), the process exiting (failure) or the
start timeout (TimeoutStartSec; 0 or infinity means at most START_CAP_S here). Everything lives
under /run/standin-systemd/: <unit>.json (pid, start time, exit status), <unit>.log (stdout and
stderr), loaded/<unit> (the snapshot: JSON, the unit file and its drop-ins as path and text).

STANDIN_SYSTEMD_ROOT (default "/") prefixes every path, for unit tests in a temp dir.

Over the house ~400 lines: unit parsing, the supervisor and the CLI are one program, read
together when a service misbehaves on a test host.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import core

START_CAP_S = 120.0
STOP_CAP_S = 15.0
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NOT_FOUND = 5  # systemctl's exit status for "unit not found" on start/stop
_INACTIVE = 3


def _root() -> Path:
    return Path(os.environ.get("STANDIN_SYSTEMD_ROOT", "/"))


def unit_dir() -> Path:
    return _root() / "etc/systemd/system"


def run_dir() -> Path:
    return _root() / "run/standin-systemd"


def unit_name(name: str) -> str:
    """ "k3s", "k3s.service" and "/etc/systemd/system/k3s.service" (enable takes paths) alike."""
    if name.startswith("/"):
        if Path(name).parent != Path("/etc/systemd/system"):
            core.die(f"{name}: the stand-in links only units in /etc/systemd/system")
        name = Path(name).name
    return name if name.endswith(".service") else f"{name}.service"


# --- unit files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One assignment in a unit file or drop-in; `origin` ("path:line") is where, for messages."""

    key: str
    value: str
    origin: str


@dataclass
class Unit:
    name: str
    path: Path
    dropins: list[str] = field(default_factory=list)
    sections: dict[str, list[Setting]] = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, files: list[tuple[str, str]]) -> Unit:
        """The unit from its file and drop-ins, (path, text) in load order (`_sources`). Each file
        is read on its own - a drop-in's assignments need its own section header, as in systemd -
        and the assignments are appended in order, so a later one wins (`values`)."""
        (path, _), *dropins = files
        unit = cls(name, Path(path), [p for p, _ in dropins])
        for file_path, text in files:
            section = None
            lines = text.replace("\\\n", " ").splitlines()
            for number, raw in enumerate(lines, 1):
                line = raw.strip()
                if not line or line[0] in "#;":
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1]
                    unit.sections.setdefault(section, [])
                    continue
                key, eq, value = line.partition("=")
                if not eq or section is None:
                    core.die(f"{file_path}:{number}: not a key=value line in a section: {line!r}")
                setting = Setting(key.strip(), value.strip(), f"{file_path}:{number}")
                unit.sections[section].append(setting)
        if "Service" not in unit.sections:
            core.die(f"{path}: no [Service] section")
        return unit

    def settings(self, section: str, key: str) -> list[Setting]:
        out: list[Setting] = []
        for setting in self.sections.get(section, []):
            if setting.key == key:
                if setting.value == "":
                    out.clear()  # an empty assignment resets a list setting, as in systemd
                else:
                    out.append(setting)
        return out

    def _specifiers(self, value: str) -> str:
        return value.replace("%N", self.name.removesuffix(".service"))

    def values(self, section: str, key: str) -> list[str]:
        return [self._specifiers(s.value) for s in self.settings(section, key)]

    def value(self, section: str, key: str, default: str = "") -> str:
        found = self.values(section, key)
        return found[-1] if found else default

    def command(self, key: str, env: dict[str, str]) -> list[tuple[bool, list[str]]]:
        """ExecStart-like settings as (ignore_failure, argv), variables expanded from `env`."""
        out = []
        for setting in self.settings("Service", key):
            where = f"{setting.origin}: {key}={setting.value}"
            value = self._specifiers(setting.value)
            ignore = value.startswith("-")
            text = value[1:] if ignore else value
            if text[:1] and text[0] in "@+!:":
                core.die(f"{where}: the prefix {text[0]!r} is not supported by the stand-in")
            try:
                words = shlex.split(text)
            except ValueError as err:
                core.die(f"{where}: {err}")
            if not words or not words[0].startswith("/"):
                core.die(f"{where}: the executable path must be absolute")
            if "$" in words[0]:
                core.die(f"{where}: the program to execute may not be a variable (systemd.service(5))")
            out.append((ignore, [words[0], *expand_argv(words[1:], env, where)]))
        return out

    def environment(self) -> dict[str, str]:
        env = {"PATH": SERVICE_PATH}
        for value in self.values("Service", "Environment"):
            for item in shlex.split(value):
                k, eq, v = item.partition("=")
                if not eq:
                    core.die(f"{self.path}: Environment={value}: {item!r} is not KEY=value")
                env[k] = v
        for value in self.values("Service", "EnvironmentFile"):
            optional = value.startswith("-")
            path = Path(value[1:] if optional else value)
            host_path = _root() / str(path).lstrip("/")
            if not host_path.is_file():
                if optional:
                    continue
                core.die(f"{self.name}: EnvironmentFile {path} is missing")
            env.update(_read_env_file(host_path))
        return env


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IN_WORD = re.compile(r"\$\$|\$\{([^}]*)\}")


def expand_argv(words: list[str], env: dict[str, str], where: str = "command line") -> list[str]:
    """Expand variables in a command's arguments (quotes already removed) as systemd.service(5)
    "Command lines" says: a word that is exactly $NAME becomes the value split at whitespace,
    quotes respected and removed (zero or more words; none when unset or empty); ${NAME} anywhere
    in a word is replaced by the value as is, whitespace and all (empty when unset), the word
    staying one argument; $$ is a literal "$". Any other "$" stays as written, as in systemd
    (`--a=$NAME` passes "$NAME" literally). A whole word `$x-y` is refused: systemd would look up
    a variable named "x-y" and drop the word; ${NAME:-default} and the like are refused too."""

    def braced(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if not _NAME.fullmatch(match.group(1)):
            core.die(f"{where}: {match.group(0)}: only ${{NAME}} is supported by the stand-in")
        return env.get(match.group(1), "")

    out: list[str] = []
    for word in words:
        if word.startswith("$") and word[1:2] not in ("{", "$"):
            if not _NAME.fullmatch(word[1:]):
                core.die(f"{where}: {word!r}: systemd looks up a variable named {word[1:]!r} "
                         "(a whole word); write ${NAME} to expand inside a word")  # fmt: skip
            try:
                out += shlex.split(env.get(word[1:], ""))
            except ValueError as err:
                core.die(f"{where}: {word}: its value cannot be split into words: {err}")
            continue
        out.append(_IN_WORD.sub(braced, word))
    return out


def _read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip().replace("_", "a").isalnum():
            core.die(f"{path}:{number}: not KEY=value: {line!r}")
        words = shlex.split(value) if value.strip() else [""]
        out[key.strip()] = " ".join(words)
    return out


def _timeout(unit: Unit, key: str, cap_s: float) -> float:
    text = unit.value("Service", key, "90").strip().lower()
    if text in ("0", "infinity"):
        return cap_s
    units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix) and text[: -len(suffix)].strip().replace(".", "", 1).isdigit():
            return min(float(text[: -len(suffix)]) * factor, cap_s)
    if text.replace(".", "", 1).isdigit():
        return min(float(text), cap_s)
    core.die(f"{unit.path}: {key}={text}: not a time span")


def _disk_path(name: str) -> Path:
    return unit_dir() / name


def _snapshot_path(name: str) -> Path:
    return run_dir() / "loaded" / name


def _sources(name: str) -> list[tuple[str, str]] | None:
    """The unit file and its drop-ins on disk, as (path, text) in load order; None without a
    unit file. Drop-ins are the regular *.conf files of <unit>.d/, sorted by name (so one
    linked to /dev/null adds nothing, as in systemd)."""
    disk = _disk_path(name)
    if not disk.is_file():
        return None
    files = [(f"/etc/systemd/system/{name}", disk.read_text())]
    dropin_dir = unit_dir() / f"{name}.d"
    if dropin_dir.is_dir():
        for conf in sorted(dropin_dir.glob("*.conf"), key=lambda p: p.name):
            if conf.is_file():
                files.append((f"/etc/systemd/system/{name}.d/{conf.name}", conf.read_text()))
    return files


def _snapshot(name: str, files: list[tuple[str, str]]) -> None:
    snap = _snapshot_path(name)
    snap.parent.mkdir(parents=True, exist_ok=True)
    snap.write_text(json.dumps({"files": files}))


def load(name: str, *, for_start: bool = False) -> Unit | None:
    """The unit as loaded (the daemon-reload snapshot, else the files, then snapshotted)."""
    snap = _snapshot_path(name)
    if snap.is_file():
        files = [(path, text) for path, text in json.loads(snap.read_text())["files"]]
        if for_start and _sources(name) != files:
            print(
                f"Warning: The unit file, source configuration file or drop-ins of {name} changed on "
                "disk. Run 'systemctl daemon-reload' to reload units.",
                file=sys.stderr,
            )
        return Unit.parse(name, files)
    on_disk = _sources(name)
    if on_disk is None:
        return None
    _snapshot(name, on_disk)
    return Unit.parse(name, on_disk)


# --- processes -------------------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def _record(name: str) -> core.StateFile:
    return core.StateFile(run_dir() / f"{name}.json")


def _alive(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    if not pid:
        return False
    return _start_time(int(pid)) == record.get("start_time")


def state_of(name: str) -> str:
    record = _record(name).read()
    if _alive(record):
        return "active"
    if record.get("restarting"):
        return "activating"  # systemd: "activating (auto-restart)" while RestartSec runs
    if record.get("result") == "failed":
        return "failed"
    return "inactive"


def _exec_failed(out: Any, argv: list[str], err: OSError, ignore: bool) -> int:
    """Log a command that could not be spawned, as systemd does, and return its exit status:
    203 (EXEC), or 0 for a "-" command whose executable is missing, which systemd skips
    (systemd.service(5): containerd.service's `ExecStartPre=-/sbin/modprobe overlay`)."""
    if ignore and isinstance(err, FileNotFoundError | PermissionError):
        out.write(f"Executable {argv[0]} missing, skipping: {err.strerror}\n".encode())
        status = 0
    else:
        out.write(f"Failed at step EXEC spawning {argv[0]}: {err.strerror}\n".encode())
        status = 203
    out.flush()
    return status


RESTART_POLICIES = ("no", "always", "on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog")
START_LIMIT_BURST = 5  # systemd's DefaultStartLimitBurst and DefaultStartLimitIntervalSec
START_LIMIT_INTERVAL_S = 10.0
_CLEAN_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)


def should_restart(policy: str, status: int) -> bool:
    """systemd.service(5)'s Restart= table for a main process that ended with `status` (a
    Popen returncode: negative for the signal that killed it), not stopped by systemctl."""
    clean = status == 0 or (status < 0 and -status in _CLEAN_SIGNALS)
    unclean_signal = status < 0 and not clean
    return {
        "always": True,
        "on-success": clean,
        "on-failure": not clean,
        "on-abnormal": unclean_signal,
        "on-abort": unclean_signal,
    }.get(policy, False)


@dataclass(frozen=True)
class RestartPolicy:
    policy: str = "no"
    delay_s: float = 0.1


def _restart_policy(unit: Unit) -> RestartPolicy:
    policy = unit.value("Service", "Restart", "no").strip()
    if policy not in RESTART_POLICIES:
        core.die(f"{unit.path}: Restart={policy}: not one of {', '.join(RESTART_POLICIES)}")
    text = unit.value("Service", "RestartSec", "100ms").strip().lower()
    units = (("ms", 0.001), ("min", 60.0), ("sec", 1.0), ("s", 1.0), ("m", 60.0), ("", 1.0))
    for suffix, factor in units:
        number = text[: len(text) - len(suffix)].strip() if text.endswith(suffix) else None
        if number is not None and number.replace(".", "", 1).isdigit():
            return RestartPolicy(policy, min(float(number) * factor, START_CAP_S))
    core.die(f"{unit.path}: RestartSec={text}: not a time span")


def _supervise(
    name: str,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    log: Path,
    *,
    ignore: bool,
    restart: RestartPolicy,
) -> None:
    """In the forked supervisor: run the service, record its pid, then its exit status (with
    `ignore`, the "-" prefix, a failure is recorded but the unit does not become failed), and
    start it again as `restart` says unless it was stopped (module docstring)."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    starts: list[float] = []
    try:
        with open(log, "ab") as out:
            for _ in range(1_000_000):  # bounded by the start limit long before this
                starts.append(time.monotonic())
                try:
                    proc = subprocess.Popen(
                        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                        start_new_session=True,
                    )  # fmt: skip
                except OSError as err:
                    status = _exec_failed(out, argv, err, ignore)
                    with _record(name).edit() as rec:
                        rec.update(
                            pid=None,
                            result=None if ignore else "failed",
                            exit_status=status,
                            restarting=False,
                        )
                    return
                with _record(name).edit() as rec:
                    stopped = rec.get("stopping", False)  # a stop came while RestartSec ran
                    rec.update(
                        pid=proc.pid,
                        start_time=_start_time(proc.pid),
                        exit_status=None,
                        result=None,
                        restarting=False,
                    )
                if stopped:
                    proc.terminate()
                status = proc.wait()
                with _record(name).edit() as rec:
                    if rec.get("pid") != proc.pid:
                        return
                    stopping = rec.get("stopping", False)
                    ok = (
                        ignore
                        or status == 0
                        or (stopping and status in (-signal.SIGTERM, -signal.SIGKILL, 143))
                    )
                    # an injected fault would recur at every restart (core.crash_at): failed
                    again = (
                        not stopping
                        and should_restart(restart.policy, status)
                        and not core.injected_crash(proc.pid)
                    )
                    recent = [t for t in starts if time.monotonic() - t < START_LIMIT_INTERVAL_S]
                    if again and len(recent) >= START_LIMIT_BURST:
                        again, ok = False, False  # start-limit-hit
                    rec.update(
                        pid=None,
                        exit_status=status,
                        result=None if ok or again else "failed",
                        stopping=False,
                        restarting=again,
                    )
                if not again:
                    return
                out.write(
                    f"{name}: main process exited ({status}), scheduled restart (Restart={restart.policy})\n".encode()
                )
                out.flush()
                deadline = time.monotonic() + restart.delay_s
                while time.monotonic() < deadline and not _record(name).read().get("stopping"):
                    time.sleep(0.02)
                with _record(name).edit() as rec:
                    if rec.get("stopping") or not rec.get("restarting"):
                        rec.update(stopping=False, restarting=False)
                        return
    finally:
        os._exit(0)


def start(name: str) -> int:
    unit = load(name, for_start=True)
    if unit is None:
        print(f"Failed to start {name}: Unit {name} not found.", file=sys.stderr)
        return _NOT_FOUND
    if state_of(name) in ("active", "activating"):
        return 0
    run = run_dir()
    run.mkdir(parents=True, exist_ok=True)
    log = run / f"{name}.log"
    env = unit.environment()
    cwd = unit.value("Service", "WorkingDirectory", "/")
    kind = unit.value("Service", "Type", "simple")
    if kind not in ("simple", "exec", "notify"):
        core.die(f"{unit.path}: Type={kind} is not supported by the stand-in")
    main_cmds = unit.command("ExecStart", env)
    if not main_cmds:
        core.die(f"{name}: Service has no ExecStart=, ExecStop=, or SuccessAction=. Refusing.")
    if len(main_cmds) > 1:  # e.g. a drop-in that adds an ExecStart= without an empty one first
        core.die(f"{name}: Service has more than one ExecStart= setting, which is only allowed for "
                 "Type=oneshot services. Refusing.")  # fmt: skip
    with open(log, "ab") as out:
        for ignore, argv in unit.command("ExecStartPre", env):
            try:
                code = subprocess.call(
                    argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out
                )
            except OSError as err:
                code = _exec_failed(out, argv, err, ignore)
            if code != 0 and not ignore:
                return _failed(name, "the control process exited with error code")
    notify = None
    if kind == "notify":
        notify_path = run / f"{name}.notify"
        notify_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        env["NOTIFY_SOCKET"] = str(notify_path)
    with _record(name).edit() as rec:
        rec.clear()
        rec["starting"] = time.time()
    child = os.fork()
    if child == 0:
        if notify is not None:
            notify.close()
        _supervise(
            name, main_cmds[0][1], env, cwd, log, ignore=main_cmds[0][0], restart=_restart_policy(unit)
        )
    # the supervisor outlives this process (adopted and reaped by init), as the service does
    deadline = time.monotonic() + _timeout(unit, "TimeoutStartSec", START_CAP_S)
    try:
        while True:
            rec = _record(name).read()
            if rec.get("result") == "failed" or (rec.get("exit_status") is not None and kind == "notify"):
                return _failed(name, "the control process exited with error code")
            if kind != "notify" and (rec.get("pid") or rec.get("exit_status") is not None):
                return 0  # running, or already ended (a fast or "-" skipped command) without failing
            if kind == "notify" and rec.get("pid") and _ready(notify):
                return 0
            if time.monotonic() > deadline:
                stop(name)
                return _failed(name, "a timeout was exceeded")
            time.sleep(0.02)
    finally:
        if notify is not None:
            notify.close()
            (run / f"{name}.notify").unlink(missing_ok=True)


def _ready(sock: socket.socket | None) -> bool:
    assert sock is not None
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            message = sock.recv(4096).decode(errors="replace")
            if "READY=1" in message.split("\n"):
                return True
    return False


def _failed(name: str, why: str) -> int:
    with _record(name).edit() as rec:
        rec["result"] = "failed"
    print(
        f'Job for {name} failed because {why}.\nSee "systemctl status {name}" and '
        f'"journalctl -xeu {name}" for details.',
        file=sys.stderr,
    )
    return 1


def stop(name: str) -> int:
    unit = load(name)
    record = _record(name).read()
    if unit is None and not record:
        print(f"Failed to stop {name}: Unit {name} not loaded.", file=sys.stderr)
        return _NOT_FOUND
    if not _alive(record):
        with _record(name).edit() as rec:
            pending = bool(rec.get("restarting"))
            if pending:  # between a crash and its restart: the supervisor gives up the restart
                rec["stopping"] = True
        end = time.monotonic() + STOP_CAP_S
        while pending and _record(name).read().get("restarting") and time.monotonic() < end:
            time.sleep(0.02)
        if pending and _alive(_record(name).read()):
            return stop(name)  # it had started again just before: stop that one
        return 0
    pid = int(record["pid"])
    with _record(name).edit() as rec:
        rec["stopping"] = True
    whole_group = unit is None or unit.value("Service", "KillMode", "control-group") != "process"
    kill = os.killpg if whole_group else os.kill
    with contextlib.suppress(ProcessLookupError):
        kill(pid, signal.SIGTERM)
    timeout = _timeout(unit, "TimeoutStopSec", STOP_CAP_S) if unit else STOP_CAP_S
    deadline = time.monotonic() + timeout
    while _start_time(pid) == record["start_time"] and time.monotonic() < deadline:
        time.sleep(0.02)
    if _start_time(pid) == record["start_time"]:
        with contextlib.suppress(ProcessLookupError):
            kill(pid, signal.SIGKILL)
        while _start_time(pid) == record["start_time"] and time.monotonic() < deadline + 5:
            time.sleep(0.02)
    # the supervisor records the exit; wait briefly so is-active right after says inactive
    end = time.monotonic() + 5
    while _record(name).read().get("pid") == pid and time.monotonic() < end:
        time.sleep(0.02)
    with _record(name).edit() as rec:
        if rec.get("pid") == pid:
            rec.update(pid=None, stopping=False)
    return 0


# --- enable / disable ------------------------------------------------------------------------------


def reload(name: str) -> int:
    """`systemctl reload`: each ExecReload= in order, with $MAINPID the running main process (as
    systemd sets it), failing at the first that fails; a unit without ExecReload= or not active
    is refused as systemd refuses it. The unit stays active whatever a reload command does."""
    unit = load(name)
    if unit is None:
        print(f"Failed to reload {name}: Unit {name} not found.", file=sys.stderr)
        return _NOT_FOUND
    record = _record(name).read()
    if not _alive(record):
        print(f"Failed to reload {name}: Unit {name} is not active.", file=sys.stderr)
        return 1
    env = {**unit.environment(), "MAINPID": str(record["pid"])}
    commands = unit.command("ExecReload", env)
    if not commands:
        print(f"Failed to reload {name}: Job type reload is not applicable for unit {name}.", file=sys.stderr)
        return 1
    with open(run_dir() / f"{name}.log", "ab") as out:
        for ignore, argv in commands:
            try:
                code = subprocess.call(
                    argv, env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=out, stderr=out
                )
            except OSError as err:
                code = _exec_failed(out, argv, err, ignore)
            if code != 0 and not ignore:
                print(
                    f"Job for {name} failed because the control process exited with error code.\n"
                    f'See "systemctl status {name}" and "journalctl -xeu {name}" for details.',
                    file=sys.stderr,
                )
                return 1
    return 0


def _wants_links(name: str) -> list[Path]:
    return sorted(p for p in unit_dir().glob(f"*.wants/{name}") if p.is_symlink() or p.exists())


def enable(name: str) -> int:
    unit = load(name)
    if unit is None or not _disk_path(name).is_file():
        print(f"Failed to enable unit: Unit file {name} does not exist.", file=sys.stderr)
        return 1
    targets = unit.values("Install", "WantedBy")
    if not targets:
        print(
            f"The unit files have no installation config (WantedBy=, RequiredBy=, Also=,\n"
            f"Alias= settings in the [Install] section) ({name}).",
            file=sys.stderr,
        )
        return 0
    for target in targets:
        for word in target.split():
            link = unit_dir() / f"{word}.wants" / name
            if link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path("/etc/systemd/system") / name)
            print(f"Created symlink {Path('/etc/systemd/system') / link.relative_to(unit_dir())} → "
                  f"/etc/systemd/system/{name}.", file=sys.stderr)  # fmt: skip
    return 0


def disable(name: str) -> int:
    for link in _wants_links(name):
        link.unlink()
        print(f"Removed {Path('/etc/systemd/system') / link.relative_to(unit_dir())}.", file=sys.stderr)
    return 0


def is_enabled(name: str) -> bool | None:
    if not _disk_path(name).is_file() and not _snapshot_path(name).is_file():
        return None
    return bool(_wants_links(name))


def daemon_reload() -> int:
    loaded = run_dir() / "loaded"
    loaded.mkdir(parents=True, exist_ok=True)
    on_disk = {p.name: p for p in unit_dir().glob("*.service") if p.is_file()} if unit_dir().is_dir() else {}
    for snap in loaded.iterdir():
        if snap.name not in on_disk:
            snap.unlink()
    for name in on_disk:
        files = _sources(name)
        assert files is not None
        Unit.parse(name, files)  # a broken unit fails here, as systemd logs it
        _snapshot(name, files)
    return 0


def status(name: str) -> int:
    unit = load(name)
    record = _record(name).read()
    if unit is None and not record:
        print(f"Unit {name} could not be found.", file=sys.stderr)
        return 4
    state = state_of(name)
    description = unit.value("Unit", "Description", name) if unit else name
    enabled = {True: "enabled", False: "disabled", None: "not-found"}[is_enabled(name)]
    print(f"● {name} - {description}")
    print(f"     Loaded: loaded (/etc/systemd/system/{name}; {enabled})")
    if unit and unit.dropins:
        print(f"    Drop-In: /etc/systemd/system/{name}.d")
        print(f"             └─{', '.join(Path(p).name for p in unit.dropins)}")
    detail = "running" if state == "active" else f"exit status {record.get('exit_status')}"
    print(f"     Active: {state} ({detail})")
    if state == "active":
        print(f"   Main PID: {record['pid']}")
    log = run_dir() / f"{name}.log"
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines()[-10:]:
            print(f"  {line}")
    return 0 if state == "active" else _INACTIVE


# --- the CLI ---------------------------------------------------------------------------------------

_COMMANDS = (
    "daemon-reload", "enable", "disable", "start", "stop", "restart", "reload", "is-active", "is-enabled",
    "status", "reset-failed",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    flags = {a for a in args if a.startswith("-")}
    words = [a for a in args if not a.startswith("-")]
    known = {"--now", "--quiet", "-q", "--no-pager", "--no-block"}
    if flags - known:
        core.die(f"unrecognized option '{sorted(flags - known)[0]}'")
    if not words or words[0] not in _COMMANDS:
        core.die(f"unknown command {words[0]!r}" if words else "missing command")
    command, names = words[0], [unit_name(n) for n in words[1:]]
    quiet = bool(flags & {"--quiet", "-q"})
    if "--now" in flags and command not in ("enable", "disable"):
        core.die(f"--now is only for enable and disable, not {command}")
    if command == "daemon-reload":
        return daemon_reload()
    if not names and command != "reset-failed":
        core.die(f"too few arguments: {command} needs a unit name")
    status_code = 0
    if command == "reset-failed" and not names:
        names = sorted(p.name.removesuffix(".json") for p in run_dir().glob("*.service.json"))
    for name in names:
        if command == "start":
            status_code = start(name) or status_code
        elif command == "stop":
            status_code = stop(name) or status_code
        elif command == "restart":
            if load(name) is None:
                print(f"Failed to restart {name}: Unit {name} not found.", file=sys.stderr)
                status_code = _NOT_FOUND
                continue
            stop(name)
            status_code = start(name) or status_code
        elif command == "reload":
            status_code = reload(name) or status_code
        elif command == "enable":
            status_code = enable(name) or status_code
            if "--now" in flags and status_code == 0:
                status_code = start(name)
        elif command == "disable":
            if "--now" in flags:
                stop(name)
            status_code = disable(name) or status_code
        elif command == "is-active":
            state = state_of(name)
            if not quiet:
                print(state)
            status_code = status_code or (0 if state == "active" else _INACTIVE)
        elif command == "is-enabled":
            enabled = is_enabled(name)
            if enabled is None:
                if not quiet:
                    print(
                        f"Failed to get unit file state for {name}: No such file or directory",
                        file=sys.stderr,
                    )
                status_code = 1
            else:
                if not quiet:
                    print("enabled" if enabled else "disabled")
                status_code = status_code or (0 if enabled else 1)
        elif command == "status":
            status_code = status(name) or status_code
        elif command == "reset-failed":
            with _record(name).edit() as rec:
                if rec.get("result") == "failed":
                    rec["result"] = None
    return status_code
