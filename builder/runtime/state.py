"""The controller's record of a cluster: `~/.sealer/<cluster>/` (or `$SEALER_STATE_HOME/<cluster>/`).

    Clusterfile     the cluster as last run (dump_clusterfile; secrets, so 0600)
    state.json      image name and manifest digest, platform, runtime, the -e env, complete?,
                    the apps run on the cluster (`sealer run APP_IMAGE`) and the API server
                    SANs `sealer cert` added (kubeadm and k0s also keep them in Clusterfile's
                    ClusterConfiguration / ClusterConfig, which later joins and upgrades read)
    journal.json    one entry per finished step, keyed by image digest + phase + host + step;
                    a re-run skips what is there, so a run that failed half-way resumes
    kubeconfig      the admin kubeconfig master0 gave at the end of the last run or upgrade,
                    naming the stable endpoint (not for the `none` runtime)
    logs/<host>.log every command run on that host, its exit status and its output

Every file is written whole (temp file + rename) and 0600, in a 0700 directory. One process
works on a cluster at a time (the CLI takes `lock()`); the journal is written by the event loop
thread only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from builder._fs import atomic_write, remove_tree
from builder.errors import ClusterError
from builder.image.digest import Digest
from builder.runtime.cluster import Cluster, check_cluster_name
from builder.runtime.clusterfile import dump_clusterfile, load_clusterfile
from builder.runtime.hooks import ShellHook

STATE_HOME_ENV = "SEALER_STATE_HOME"
JOURNAL_VERSION = 1
JOINED = "joined"  # journal phase marking a host that went through every install phase


def state_home() -> Path:
    """`$SEALER_STATE_HOME`, else ~/.sealer (sealer's own place for it)."""
    env = os.environ.get(STATE_HOME_ENV)
    return Path(env) if env else Path("~/.sealer").expanduser()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _digest(value: Any) -> Digest:
    """A digest read from state.json (ValueError, which `load_meta` reports, when it is not one)."""
    if not Digest.is_valid(str(value)):
        raise ValueError(f"invalid digest {value!r}")
    return Digest.parse(str(value))


def _journal_digest(digest: Digest | None) -> str:
    return "" if digest is None else str(digest)


@dataclass(frozen=True, slots=True)
class AppRecord:
    """One app image run on the cluster: its rootfs is data/<cluster>/apps/<name> on master0."""

    name: str
    image: str
    digest: Digest  # manifest digest of the app image delivered (and launched, once `launched`)
    launched: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "image": self.image, "digest": str(self.digest), "launched": self.launched}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AppRecord:
        return cls(
            str(obj["name"]), str(obj["image"]), _digest(obj["digest"]), bool(obj.get("launched", False))
        )


@dataclass(frozen=True, slots=True)
class SavedMeta:
    """state.json: what the saved Clusterfile does not say."""

    image: str
    digest: Digest  # manifest digest of the image for the cluster's platform
    platform: str
    runtime: str
    cli_env: Mapping[str, str] = field(default_factory=dict)
    image_env: Mapping[str, str] = field(default_factory=dict)  # for clean.sh once the image is gone
    complete: bool = False  # every phase of the last run/apply/join finished
    updated: str = ""
    kube_version: str = ""  # the image's KUBEVERSION ("" for app images and older states)
    previous_image: str = ""  # during an upgrade: the image the cluster ran before it
    apps: tuple[AppRecord, ...] = ()  # in the order first run; absent in older state.json
    cert_sans: tuple[str, ...] = ()  # API server SANs added by `sealer cert`, in the order given
    image_hooks: tuple[ShellHook, ...] = ()  # the image's plugins/*.yaml, for delete once the image is gone

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["digest"] = str(self.digest)  # state.json keeps the string form
        out["cli_env"] = dict(self.cli_env)
        out["image_env"] = dict(self.image_env)
        out["apps"] = [a.to_json() for a in self.apps]
        out["cert_sans"] = list(self.cert_sans)
        out["image_hooks"] = [h.to_json() for h in self.image_hooks]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SavedMeta:
        return cls(
            image=str(obj["image"]),
            digest=_digest(obj["digest"]),
            platform=str(obj.get("platform", "")),
            runtime=str(obj.get("runtime", "none")),
            cli_env={str(k): str(v) for k, v in dict(obj.get("cli_env") or {}).items()},
            image_env={str(k): str(v) for k, v in dict(obj.get("image_env") or {}).items()},
            complete=bool(obj.get("complete", False)),
            updated=str(obj.get("updated", "")),
            kube_version=str(obj.get("kube_version", "")),
            previous_image=str(obj.get("previous_image", "")),
            apps=tuple(AppRecord.from_json(a) for a in obj.get("apps") or ()),
            cert_sans=tuple(str(s) for s in obj.get("cert_sans") or ()),
            image_hooks=tuple(ShellHook.from_json(h) for h in obj.get("image_hooks") or ()),
        )


class Journal:
    """Finished steps, and the last phase each host finished. Saved after every change."""

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: in memory only (dry-run, tests)
        self.entries: dict[str, dict[str, Any]] = {}
        self.hosts: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                if data.get("version") != JOURNAL_VERSION:
                    raise ValueError(f"version {data.get('version')!r}")
                self.entries = dict(data.get("entries") or {})
                self.hosts = dict(data.get("hosts") or {})
            except (OSError, ValueError, AttributeError) as err:
                raise ClusterError(
                    f"{path}: cannot read the journal: {err}",
                    hint="remove the file to start the cluster's steps over",
                ) from None

    @staticmethod
    def key(digest: Digest | None, phase: str, host: str, step: str) -> str:
        """The entry's key: the digest's string form ("" for none), phase, host and step."""
        return f"{_journal_digest(digest)}|{phase}|{host}|{step}"

    def done(self, digest: Digest | None, phase: str, host: str, step: str) -> bool:
        return self.key(digest, phase, host, step) in self.entries

    def record(self, digest: Digest | None, phase: str, host: str, step: str, *, seconds: float) -> None:
        at = _now()
        self.entries[self.key(digest, phase, host, step)] = {"at": at, "seconds": round(seconds, 3)}
        self.hosts[host] = {"phase": phase, "step": step, "at": at}
        self.save()

    def last_phase(self, host: str) -> str | None:
        entry = self.hosts.get(host)
        return str(entry["phase"]) if entry else None

    def phases_done(self, host: str, digest: Digest | None = None) -> list[str]:
        """The phases with a finished step on `host`, in the order they finished."""
        out: dict[str, None] = {}
        for key in self.entries:
            d, phase, h, _ = key.split("|", 3)
            if h == host and (digest is None or d == str(digest)):
                out[phase] = None
        return list(out)

    def forget_hosts(self, hosts: Iterable[str]) -> None:
        """Drop every entry of `hosts`: their own steps and master0's steps for them (step ids
        `<ip>/...`), so a host re-added at the same address goes through everything again."""
        gone = set(hosts)

        def kept(key: str) -> bool:
            _, _, host, step = key.split("|", 3)
            return host not in gone and step.split("/", 1)[0] not in gone

        self.entries = {k: v for k, v in self.entries.items() if kept(k)}
        self.hosts = {h: v for h, v in self.hosts.items() if h not in gone}
        self.save()

    def forget_phase(self, phase: str, hosts: Iterable[str]) -> None:
        """Drop `phase`'s entries for `hosts` (its steps run again next time)."""
        which = set(hosts)
        self.entries = {
            k: v
            for k, v in self.entries.items()
            if not (k.split("|", 3)[1] == phase and k.split("|", 3)[2] in which)
        }
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        data = {"version": JOURNAL_VERSION, "entries": self.entries, "hosts": self.hosts}
        atomic_write(self.path, (json.dumps(data, indent=1) + "\n").encode(), mode=0o600)


class HostLog:
    """logs/<host>.log: appended, one block per command."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, text: str) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8", errors="replace") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def command(
        self,
        *,
        phase: str,
        step: str,
        command: str,
        status: int | str,
        stdout: str,
        stderr: str,
        seconds: float,
    ) -> None:
        lines = [f"--- {_now()} {phase}/{step} ({seconds:.2f}s) exit {status}", f"$ {command}"]
        for name, text in (("stdout", stdout), ("stderr", stderr)):
            if text.strip():
                lines.append(f"[{name}]")
                lines.append(text.rstrip("\n"))
        self.write("\n".join(lines) + "\n")


class ClusterState:
    """The state directory of one cluster (nothing is created until something is saved)."""

    def __init__(self, name: str, home: Path | None = None) -> None:
        self.name = check_cluster_name(name)
        self.home = home if home is not None else state_home()
        self.dir = self.home / name
        self.clusterfile_path = self.dir / "Clusterfile"
        self.meta_path = self.dir / "state.json"
        self.journal_path = self.dir / "journal.json"
        self.kubeconfig_path = self.dir / "kubeconfig"
        self.logs_dir = self.dir / "logs"

    def exists(self) -> bool:
        return self.clusterfile_path.exists()

    def _ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)

    def load_cluster(self) -> Cluster | None:
        if not self.clusterfile_path.exists():
            return None
        return load_clusterfile(self.clusterfile_path)

    def load_meta(self) -> SavedMeta | None:
        if not self.meta_path.exists():
            return None
        try:
            return SavedMeta.from_json(json.loads(self.meta_path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ClusterError(f"{self.meta_path}: cannot read the saved state: {err}") from None

    def save(self, cluster: Cluster, meta: SavedMeta) -> None:
        """Write the Clusterfile and state.json. A `meta` without apps keeps the saved ones:
        run, apply and upgrade build their meta afresh and know nothing of the apps, which stay
        on master0 until `delete --all` removes the whole cluster."""
        self._ensure_dir()
        if not meta.apps and self.meta_path.exists():
            saved = self.load_meta()
            if saved is not None and saved.apps:
                meta = replace(meta, apps=saved.apps)
        atomic_write(self.clusterfile_path, dump_clusterfile(cluster).encode(), mode=0o600)
        stamped = replace(meta, updated=_now())
        atomic_write(self.meta_path, (json.dumps(stamped.to_json(), indent=2) + "\n").encode(), mode=0o600)

    def save_kubeconfig(self, text: str) -> None:
        self._ensure_dir()
        atomic_write(self.kubeconfig_path, (text.rstrip("\n") + "\n").encode(), mode=0o600)

    def journal(self) -> Journal:
        self._ensure_dir()
        return Journal(self.journal_path)

    def host_log(self, host: str) -> HostLog:
        return HostLog(self.logs_dir / f"{host}.log")

    def remove(self) -> None:
        remove_tree(self.dir)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One sealer at a time per cluster; a second one fails at once, naming the cluster."""
        self._ensure_dir()
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ClusterError(
                    f"cluster {self.name} is busy: another sealer command is working on it"
                ) from None
            yield
        finally:
            os.close(fd)
