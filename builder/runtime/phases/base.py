"""What every phase shares: the `Step` a plan is made of, the `Phase` base class and the
read-only `PlanState` a plan reads (the image, the runtime plugin, the hosts in scope).

A phase's `plan(cluster, facts, state)` is pure: no I/O, the same inputs give the same steps.
The runner (`builder/runtime/runner.py`) executes them and journals each one; `--dry-run`
prints the same list. Steps of one phase run in `stage` order; within a stage each host's steps
run in plan order and hosts run concurrently (bounded), or one at a time in plan order when
the phase is `serial`.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.image.extension import Application
from builder.runtime._fanout_shell import FanoutPlan
from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.cluster_mirror import MirrorFacts
from builder.runtime.delivery import DEFAULT_ROOT, rootfs_path
from builder.runtime.env import merge_env, reserved_env
from builder.runtime.facts import Facts
from builder.runtime.hooks import ShellHook
from builder.runtime.plugins.base import HostContext, RuntimePlugin
from builder.runtime.plugins.sealer_image import container_runtime, is_sealer_image, sealer_env
from builder.runtime.registry_pki import RegistryMaterial

StepKind = Literal["command", "probe", "deliver", "remove"]


@dataclass(frozen=True, slots=True)
class Step:
    """One thing to do on one host.

    `kind`: "command" runs `command` (with `env`, in `cwd`); "probe" runs it and keeps its
    output for the phase (check); "deliver" and "remove" hand the host to the delivery code
    (`command` is then only what a dry-run shows). `id` is stable within phase and host: the
    journal keys on it. `output` names a value this step's stdout provides to later commands;
    `journal=False` runs the step on every attempt (probes, delivery that checks itself,
    credentials that expire). Secrets go in `env`, named in `secret_env`: logs name env
    variables only, a verbose dry-run shows them as ***, and the runner sends them on the
    command's stdin (env.secret_stdin), never in a command line a host's `ps` would show.
    """

    host: str
    id: str
    description: str
    command: str
    kind: StepKind = "command"
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stage: int = 0
    output: str | None = None
    journal: bool = True
    timeout_s: float | None = None
    shown: tuple[str, ...] = ()  # dry-run lines when they differ from `command`
    secret_env: tuple[str, ...] = ()  # names in `env` whose values a plan shows as *** (keys, passwords)
    stdin: bytes | None = None  # fed to the command (data too large for a command line: 128 KiB)

    @property
    def full_command(self) -> str:
        """`command` as run: in `cwd` when one is set (env goes separately, exported)."""
        if self.cwd:
            return f"cd {shlex.quote(self.cwd)} && {self.command}"
        return self.command

    @property
    def dry_run_lines(self) -> tuple[str, ...]:
        return self.shown or (self.full_command,)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the phases need to know about the image, read from the store before planning."""

    name: str
    digest: Digest | None  # manifest digest for `platform` (None: not known yet, the check's probes)
    platform: Platform
    env: Mapping[str, str] = field(default_factory=dict)  # the image ENV
    launch_cmds: tuple[str, ...] = ()
    app_names: tuple[str, ...] = ()
    applications: tuple[Application, ...] = ()
    runtime_label: str | None = None
    container_runtime_label: str | None = None  # cluster.alpha.sealer.io/container-runtime-type
    metadata_runtime: str | None = None
    kube_version: str | None = None  # KUBEVERSION (the supported-kube-version label)
    compressed_bytes: int = 0
    layer_count: int = 0
    files: Mapping[str, str] = field(default_factory=dict)  # rootfs files the plans read, by path
    hooks: tuple[ShellHook, ...] = ()  # the image's plugins/*.yaml (Plugin documents), in file order


@dataclass(frozen=True, slots=True)
class PlanState:
    """The read-only inputs of every plan besides the cluster and the facts.

    `targets`: addresses of the hosts this action works on (all of them for run; the new
    ones for join; the leaving ones for delete). `cli_env`: the `-e` layer. `delivery_lines`:
    the delivery commands a dry-run shows per host (from `delivery.plan_commands`).
    """

    image: ImageInfo
    plugin: RuntimePlugin
    targets: tuple[str, ...]
    cli_env: Mapping[str, str] = field(default_factory=dict)
    root: str = DEFAULT_ROOT
    delivery_lines: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    delete_all: bool = False
    upgrade_batch: int = 1  # workers upgraded (drained) at once
    registry: RegistryMaterial | None = None  # the local registry's CA, certificate, htpasswd
    mirror: MirrorFacts = field(default_factory=MirrorFacts)  # what save-clusterfile keeps besides
    fanout: FanoutPlan | None = None  # fan-out delivery (fanout.py); None: every host over SSH

    def rootfs(self, cluster: Cluster) -> str:
        """The cluster's rootfs on its hosts: under its spec.dataRoot when it has one, which
        wins over `root` (the hosts' sealer root, DEFAULT_ROOT unless a caller of the library
        sets another)."""
        return rootfs_path(cluster.name, self.root, data_root=cluster.data_root)

    @property
    def container_runtime(self) -> str:
        """The container runtime a sealer image installs (sealer_image.container_runtime)."""
        return container_runtime(self.image.files, self.image.container_runtime_label)

    def target_hosts(self, cluster: Cluster) -> tuple[HostSpec, ...]:
        wanted = set(self.targets)
        return tuple(h for h in cluster.hosts if h.ip in wanted)

    def host_env(self, cluster: Cluster, host: HostSpec) -> dict[str, str]:
        """The env of `host`'s scripts: image ENV < Clusterfile < host < -e, then (a sealer
        image) the variables sealer computes, then SEALER_*."""
        env = merge_env(self.image.env, cluster.env, host.env, self.cli_env)
        if is_sealer_image(self.image.files):  # the variables sealer computes (sealer_image.py)
            env.update(sealer_env(cluster, env, self.container_runtime))
        env.update(reserved_env(cluster, host, self.rootfs(cluster)))
        return env

    def host_context(self, cluster: Cluster, host: HostSpec, subject: HostSpec | None = None) -> HostContext:
        return HostContext(
            cluster,
            host,
            self.rootfs(cluster),
            self.host_env(cluster, host),
            subject,
            self.image.files,
            self.mirror.cert_sans,  # `sealer cert`'s SANs: a master joining later gets them too
        )


class Phase(ABC):
    """One phase of the orchestrator: a stable `name` (journal key; what actions insert or
    skip), a human `title`, and a pure `plan`."""

    name: ClassVar[str]
    title: ClassVar[str]
    serial: ClassVar[bool] = False

    @abstractmethod
    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]: ...

    def should_run(self, cluster: Cluster, facts: Facts, state: PlanState) -> bool:
        return bool(self.plan(cluster, facts, state))


def ordered_for_removal(cluster: Cluster, hosts: Sequence[HostSpec]) -> list[tuple[int, HostSpec]]:
    """(stage, host) in removal order: nodes (stage 0), then masters (1), master0 last (2)."""
    out: list[tuple[int, HostSpec]] = []
    for host in hosts:
        if not host.is_master:
            out.append((0, host))
    for host in hosts:
        if host.is_master and host.ip != cluster.master0.ip:
            out.append((1, host))
    for host in hosts:
        if host.ip == cluster.master0.ip:
            out.append((2, host))
    return out
