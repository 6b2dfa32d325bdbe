"""sealer's Plugin documents as shell hooks: the values, no I/O.

    apiVersion: sealer.io/v1
    kind: Plugin
    metadata: {name: disk-check}          # hooks of one phase run in name order
    spec:
      type: SHELL                         # the only type
      action: pre-init-host|post-init-host  # one or more phases
      scope: master|node                  # host phases: the roles it runs on (absent: all)
      data: |                             # run as `cd ROOTFS && DATA` with the host's script env
        df -h /var/lib

They come from the Clusterfile and from the image's `plugins/*.yaml` (clusterfile.py reads
both, strictly, with the line of every error). Cluster phases run on master0, host phases on
the hosts of the action whose role is in scope. `rollback` is accepted, as sealer has it, but
this implementation has no rollback command, so such hooks never run.

sealer runs a hook with an empty scope nowhere (its role lookup finds no host); here an absent
scope means every role, and an empty one is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from builder.runtime.cluster import HostSpec, Role

PLUGIN_API_VERSION = "sealer.io/v1"
PLUGIN_KIND = "Plugin"
HOOK_TYPES = ("SHELL",)

# Cluster phases, on master0.
PRE_INSTALL = "pre-install"
POST_INSTALL = "post-install"
PRE_UNINSTALL = "pre-uninstall"
POST_UNINSTALL = "post-uninstall"
PRE_SCALEUP = "pre-scaleup"
POST_SCALEUP = "post-scaleup"
UPGRADE = "upgrade"
ROLLBACK = "rollback"
CLUSTER_PHASES = (
    PRE_INSTALL,
    POST_INSTALL,
    PRE_UNINSTALL,
    POST_UNINSTALL,
    PRE_SCALEUP,
    POST_SCALEUP,
    UPGRADE,
    ROLLBACK,
)

# Host phases, on the action's hosts whose role is in the hook's scope.
PRE_INIT_HOST = "pre-init-host"
POST_INIT_HOST = "post-init-host"
PRE_CLEAN_HOST = "pre-clean-host"
POST_CLEAN_HOST = "post-clean-host"
UPGRADE_HOST = "upgrade-host"
HOST_PHASES = (PRE_INIT_HOST, POST_INIT_HOST, PRE_CLEAN_HOST, POST_CLEAN_HOST, UPGRADE_HOST)

HOOK_PHASES = CLUSTER_PHASES + HOST_PHASES


@dataclass(frozen=True, slots=True)
class ShellHook:
    """One Plugin document: `name` (metadata.name), the `phases` it runs in, the `scope` roles
    (empty: every role) and the shell `data`; `source` says where it was written (a file and
    line), for the plan and errors."""

    name: str
    phases: tuple[str, ...]
    data: str
    scope: tuple[Role, ...] = ()
    source: str = ""

    def runs_on(self, host: HostSpec) -> bool:
        return not self.scope or host.role in self.scope

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phases": list(self.phases),
            "data": self.data,
            "scope": [str(r) for r in self.scope],
            "source": self.source,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ShellHook:
        return cls(
            str(obj["name"]),
            tuple(str(p) for p in obj["phases"]),
            str(obj["data"]),
            tuple(Role(str(r)) for r in obj.get("scope") or ()),
            str(obj.get("source") or ""),
        )


def parse_action(text: str) -> tuple[str, ...]:
    """`pre-init-host|post-init-host` -> the phases; ValueError names an unknown one."""
    phases = tuple(p.strip() for p in text.split("|") if p.strip())
    if not phases:
        raise ValueError("names no phase")
    for phase in phases:
        if phase not in HOOK_PHASES:
            raise ValueError(f"unknown phase {phase!r}")
    return tuple(dict.fromkeys(phases))


def parse_scope(text: str) -> tuple[Role, ...]:
    """`master|node` -> the roles; ValueError names an unknown one."""
    words = [w.strip() for w in text.split("|") if w.strip()]
    if not words:
        raise ValueError("names no role")
    roles: list[Role] = []
    for word in words:
        if word not in (Role.MASTER.value, Role.NODE.value):
            raise ValueError(f"unknown role {word!r}")
        roles.append(Role(word))
    return tuple(dict.fromkeys(roles))


def hooks_of(phase: str, hooks: Iterable[ShellHook]) -> list[ShellHook]:
    """The hooks of `phase`, in name order (sealer sorts them so); a stable sort keeps the
    image's before the Clusterfile's of the same name."""
    return sorted((h for h in hooks if phase in h.phases), key=lambda h: h.name)
