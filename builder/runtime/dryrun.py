"""The dry-run plan: the steps the runner would run, as text (`sealer ... --dry-run`).

The same plans the runner executes, so what a dry-run shows is what a run does. Short form
(default): one line per step and host, as k0sctl prints a plan; `verbose`: every step's shell.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence

from builder.runtime.cluster import Cluster
from builder.runtime.phases.base import Phase, Step


def format_plan(
    cluster: Cluster, plans: Sequence[tuple[Phase, Sequence[Step]]], *, verbose: bool = False
) -> list[str]:
    """Every step of every phase, grouped by phase and host, as a dry-run prints it.

    Short (the default), as k0sctl prints a plan: one line per step and host, `HOST (ROLE):
    what it does`, the bytes a delivery sends (a first delivery: every layer), and a total.
    `verbose`: the whole shell of every step under its description, with its env.

    Verbose env is shown once per host and phase. The variables every host block shares (the
    Clusterfile env, SEALER_MASTERS, SEALER_NODES, ...) are printed once, first, and each
    block's `env:` line starts with `(shared)` and adds only its own (SEALER_HOST_IP,
    SEALER_ROLE, host env): printing the host lists in every block made the plan of N hosts
    O(N^2) bytes (5000 hosts: 880 MB). Placeholders of named outputs stay as they are: their
    values exist only at run time.
    """
    phase_blocks = _host_blocks(plans)
    if not verbose:
        return _short_plan(cluster, phase_blocks)
    envs = [b[0].env for _, blocks in phase_blocks for b in blocks if b[0].env]
    shared: dict[str, str] = {}
    if len(envs) > 1:
        shared = dict(envs[0])
        for env in envs[1:]:
            shared = {k: v for k, v in shared.items() if env.get(k) is v or env.get(k) == v}

    secret = {name for _, blocks in phase_blocks for b in blocks for s in b for name in s.secret_env}

    def show(env: Mapping[str, str]) -> str:
        return " ".join(f"{k}={'***' if k in secret else shlex.quote(v)}" for k, v in sorted(env.items()))

    lines: list[str] = []
    if shared:
        lines.append(f"# (shared) env: {show(shared)}")
    roles = _roles(cluster)
    for phase, blocks in phase_blocks:
        lines.append(_phase_line(phase))
        for host_steps in blocks:
            host = host_steps[0].host
            lines.append(f"  {host} ({roles(host)})")
            env = host_steps[0].env
            if env:
                own = show({k: v for k, v in env.items() if k not in shared})
                lines.append("    env: " + ("(shared) " + own if shared else own).rstrip())
            for s in host_steps:
                note = f" -> output {s.output}" if s.output else ""
                lines.append(f"    # {s.description}{note}")
                for line in s.dry_run_lines:
                    lines.append(f"    $ {line}")
    return lines


def _host_blocks(plans: Sequence[tuple[Phase, Sequence[Step]]]) -> list[tuple[Phase, list[list[Step]]]]:
    """Each phase's steps as blocks of one host and stage, in the order the runner runs them."""
    phase_blocks: list[tuple[Phase, list[list[Step]]]] = []
    for phase, steps in plans:
        if not steps:
            continue
        blocks: list[list[Step]] = []
        if phase.serial:
            for s in steps:
                if blocks and (blocks[-1][0].host, blocks[-1][0].stage) == (s.host, s.stage):
                    blocks[-1].append(s)
                else:
                    blocks.append([s])
        else:
            by_key: dict[tuple[str, int], list[Step]] = {}
            for s in steps:
                by_key.setdefault((s.host, s.stage), []).append(s)
            blocks = sorted(by_key.values(), key=lambda b: b[0].stage)  # stable: plan order within a stage
        phase_blocks.append((phase, blocks))
    return phase_blocks


def _roles(cluster: Cluster) -> Callable[[str], str]:
    master0 = cluster.master0.ip
    return lambda host: "master0" if host == master0 else str(cluster.host(host).role)


def _phase_line(phase: Phase) -> str:
    return f"== {phase.name}: {phase.title}" + ("  (hosts one at a time)" if phase.serial else "")


# `upload <digest> (<size>)`: how delivery.plan_commands shows each layer it sends.
_UPLOAD = re.compile(r"^upload sha256:[0-9a-f]{64} \((\d+)\)$")


def _bytes_to_send(s: Step) -> int | None:
    """What a delivery step sends to a host that has none of the layers; None for others."""
    if s.kind != "deliver":
        return None
    return sum(int(m.group(1)) for line in s.shown if (m := _UPLOAD.match(line)))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{n} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} TB"


def _short_plan(cluster: Cluster, phase_blocks: list[tuple[Phase, list[list[Step]]]]) -> list[str]:
    roles = _roles(cluster)
    lines: list[str] = []
    steps = 0
    hosts: set[str] = set()
    total = 0
    for phase, blocks in phase_blocks:
        lines.append(_phase_line(phase))
        for host_steps in blocks:
            host = host_steps[0].host
            hosts.add(host)
            for s in host_steps:
                steps += 1
                note = f" -> output {s.output}" if s.output else ""
                sent = _bytes_to_send(s)
                if sent is not None:
                    total += sent
                    note += f" (up to {_size(sent)} to send)"
                lines.append(f"  {host} ({roles(host)}): {s.description}{note}")
    if steps:
        lines.append(
            f"# {steps} step{'s' if steps != 1 else ''} on {len(hosts)} host{'s' if len(hosts) != 1 else ''}, "
            f"up to {_size(total)} to send; --verbose shows each step's commands"
        )
    return lines


__all__ = ["format_plan"]
