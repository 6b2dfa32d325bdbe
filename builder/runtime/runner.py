"""The runner: executes the steps of a phase's plan through the infra driver.

- Bounded concurrency: hosts of a stage run at once up to `RunOptions.max_parallel` (the
  driver bounds its channels and uploads on top); a `serial` phase runs its steps one by one.
- Journal: every finished step is recorded (image digest + phase + host + step) before the
  next starts; a journaled step is skipped on the next attempt unless it is marked
  `journal=False` (probes, delivery, credentials that expire).
- Named outputs: a step's `output` keeps its stdout for later steps' placeholders; a producer
  is skipped when no pending step reads its output before the next producer of that name
  (so a re-run mints credentials only for the joins still to do).
- Failure: a failed step stops its host; the other hosts finish the step they are in and start
  nothing new, except in a phase of probes (check), which change nothing: there every host
  runs, so that one run names every host that cannot be reached or is unfit, not only the
  first. The run raises one HostError naming the phase, the first failed host with its reason
  and hint, and every other failed host (`combine_host_errors`).
- Logs: every command, its exit status and output go to the host's log (env by name only,
  placeholders unresolved, so secrets stay out).
- Dry-run: `format_plan` (dryrun.py) prints the same steps, one line per step and host (phase, host,
  what it does, bytes to send), or with `verbose` the whole shell of each step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from builder.errors import ClusterError, CommandFailed, HostError, SealerError
from builder.image.digest import Digest
from builder.runtime.dryrun import format_plan
from builder.runtime.env import secret_stdin
from builder.runtime.events import (
    EventSink,
    HostBytes,
    Notice,
    PhaseFinished,
    PhaseStarted,
    RunEvent,
    StepFailed,
    StepFinished,
    StepStarted,
    ignore,
)
from builder.runtime.infra.base import InfraDriver
from builder.runtime.phases.base import Phase, Step
from builder.runtime.plugins.base import output_refs, resolve_outputs
from builder.runtime.state import HostLog, Journal


@dataclass(frozen=True, slots=True)
class RunOptions:
    max_parallel: int = 8
    dry_run: bool = False
    verbose: bool = False  # dry-run: the whole shell of every step, not one line per step


@dataclass
class HostStats:
    """What one host went through in this run (for the summary table)."""

    host: str
    phases: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    seconds: float = 0.0
    failed: str | None = None

    def phase_done(self, phase: str) -> None:
        if phase not in self.phases:
            self.phases.append(phase)


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What a delivery function reports per host."""

    host: str
    bytes_sent: int
    seconds: float


# deliver(hosts, emit) -> outcome per host; remove(hosts) -> None. Supplied by the action (the
# delivery code needs the store and the image, which the runner does not).
DeliverFn = Callable[[Sequence[str], EventSink], Awaitable[Mapping[str, DeliveryOutcome]]]
RemoveFn = Callable[[Sequence[str]], Awaitable[None]]


class Runner:
    def __init__(
        self,
        driver: InfraDriver,
        *,
        digest: Digest | None,
        journal: Journal,
        logs: Callable[[str], HostLog] | None = None,
        options: RunOptions | None = None,
        deliver: DeliverFn | None = None,
        remove: RemoveFn | None = None,
        on_event: EventSink = ignore,
        log_hint: str | None = None,
        keep_outputs: Iterable[str] = (),
        stats: Mapping[str, HostStats] | None = None,
    ) -> None:
        """`digest`: the image's, the journal's key (None: the check's probes, before the image
        is known; they are never journaled). `keep_outputs`: outputs the action itself reads (the kubeconfig), so their producers
        always run. `stats`: what the hosts went through before this runner, in the same run
        (the check's probes, run before the image's digest was known), carried on."""
        self.driver = driver
        self.digest = digest
        self.journal = journal
        self.logs = logs or (lambda host: HostLog(None))
        self.options = options or RunOptions()
        self.deliver_fn = deliver
        self.remove_fn = remove
        self.emit = on_event
        self.log_hint = log_hint
        self.outputs: dict[str, str] = {}
        self.keep_outputs = frozenset(keep_outputs)
        self.stats: dict[str, HostStats] = dict(stats or {})
        self._slots = asyncio.Semaphore(max(1, self.options.max_parallel))

    def host_stats(self, host: str) -> HostStats:
        if host not in self.stats:
            self.stats[host] = HostStats(host)
        return self.stats[host]

    # --- a phase ---------------------------------------------------------------------------------

    async def run_phase(self, phase: Phase, steps: Sequence[Step]) -> dict[str, str]:
        """Run `steps` (the phase's plan); returns the stdout of its probe steps by host."""
        started = time.monotonic()
        hosts = tuple(dict.fromkeys(s.host for s in steps))
        self.emit(PhaseStarted(phase.name, phase.title, hosts))
        pending = self._pending(phase, steps)
        probes: dict[str, str] = {}
        for stage in sorted({s.stage for s in pending}):
            batch = [s for s in pending if s.stage == stage]
            delivers = [s for s in batch if s.kind == "deliver"]
            removes = [s for s in batch if s.kind == "remove"]
            commands = [s for s in batch if s.kind in ("command", "probe")]
            if delivers:
                await self._deliver(phase, delivers)
            if commands:
                await self._commands(phase, commands, probes)
            if removes:
                await self._remove(phase, removes)
        for host in hosts:
            self.host_stats(host).phase_done(phase.name)
        self.emit(PhaseFinished(phase.name, time.monotonic() - started))
        return probes

    def _pending(self, phase: Phase, steps: Sequence[Step]) -> list[Step]:
        """Steps still to run: journaled ones are skipped; so are producers nobody needs."""
        todo: list[Step] = []
        for s in steps:
            if s.journal and self.journal.done(self.digest, phase.name, s.host, s.id):
                self.emit(StepFinished(phase.name, s.host, s.id, s.description, 0.0, skipped=True))
            else:
                todo.append(s)
        out: list[Step] = []
        for i, s in enumerate(todo):
            if s.output is not None and not self._output_used(s.output, todo[i + 1 :]):
                self.emit(StepFinished(phase.name, s.host, s.id, s.description, 0.0, skipped=True))
                continue
            out.append(s)
        return out

    def _output_used(self, name: str, later: Sequence[Step]) -> bool:
        """Whether a step of `later` reads output `name` before another step produces it again
        (credentials minted for a host that already joined would be wasted, and live)."""
        if name in self.keep_outputs:
            return True
        for s in later:
            if name in output_refs(s.command):
                return True
            if s.output == name:
                return False
        return False

    async def _commands(self, phase: Phase, steps: Sequence[Step], probes: dict[str, str]) -> None:
        if phase.serial:
            for s in steps:
                await self._step(phase, s, probes)
            return
        by_host: dict[str, list[Step]] = {}
        for s in steps:
            by_host.setdefault(s.host, []).append(s)
        stop = asyncio.Event()

        async def host_worker(host_steps: list[Step]) -> None:
            async with self._slots:
                for s in host_steps:
                    if stop.is_set():
                        return
                    try:
                        await self._step(phase, s, probes)
                    except BaseException as err:
                        # A probe changes nothing: the other hosts still run theirs, so that
                        # every unreachable or unfit host is named at once.
                        if s.kind != "probe" or not isinstance(err, HostError):
                            stop.set()
                        raise

        results = await asyncio.gather(*(host_worker(v) for v in by_host.values()), return_exceptions=True)
        self._raise_first(results)

    @staticmethod
    def _raise_first(results: Iterable[object]) -> None:
        errors = [r for r in results if isinstance(r, BaseException)]
        if not errors:
            return
        host_errors = [e for e in errors if isinstance(e, HostError)]
        if len(errors) == len(host_errors):
            raise combine_host_errors(host_errors) from host_errors[0]
        raise next(e for e in errors if not isinstance(e, HostError))

    async def _step(self, phase: Phase, s: Step, probes: dict[str, str]) -> None:
        self.emit(StepStarted(phase.name, s.host, s.id, s.description))
        log = self.logs(s.host)
        shown = s.full_command
        try:
            command = resolve_outputs(shown, self.outputs)
        except KeyError as err:
            raise ClusterError(
                f"{phase.name}: step {s.id} on {s.host} needs output {err.args[0]!r}, which no earlier step gave"
            ) from None
        env_names = " ".join(s.env)
        logged = f"{shown}" + (f"\n  (env: {env_names})" if env_names else "")
        started = time.monotonic()
        env, stdin = s.env, s.stdin
        if s.secret_env:  # on stdin, before the step's own: never in a command line on the host
            secrets = {k: v for k, v in s.env.items() if k in s.secret_env}
            env = {k: v for k, v in s.env.items() if k not in secrets}
            prefix, lines = secret_stdin(secrets)
            command, stdin = prefix + command, lines + (s.stdin or b"")
        try:
            result = await self.driver.run(
                s.host, command, env=env, stdin=stdin, timeout_s=s.timeout_s, check=False
            )
        except SealerError as err:
            seconds = time.monotonic() - started
            log.command(
                phase=phase.name,
                step=s.id,
                command=logged,
                status="-",
                stdout="",
                stderr=err.message,
                seconds=seconds,
            )
            raise self._failed(phase, s, err.message, cause_hint=err.hint) from None
        seconds = time.monotonic() - started
        log.command(
            phase=phase.name,
            step=s.id,
            command=logged,
            status=result.exit_status,
            stdout="(kept as a named output)" if s.output else result.stdout,
            stderr=result.stderr,
            seconds=seconds,
        )
        if result.exit_status != 0:
            last = next((ln.strip() for ln in reversed(result.stderr.splitlines()) if ln.strip()), "")
            if not last:
                last = next((ln.strip() for ln in reversed(result.stdout.splitlines()) if ln.strip()), "")
            message = f'"{_short(s.full_command if not s.cwd else s.command)}" exited {result.exit_status}'
            raise self._failed(phase, s, message + (f": {_short(last, 160)}" if last else ""))
        if s.kind == "probe":
            probes[s.host] = result.stdout
        if s.output is not None:
            self.outputs[s.output] = result.stdout.strip()
        self.journal.record(self.digest, phase.name, s.host, s.id, seconds=seconds)
        self.host_stats(s.host).seconds += seconds
        self.emit(StepFinished(phase.name, s.host, s.id, s.description, seconds))

    def _failed(self, phase: Phase, s: Step, message: str, *, cause_hint: str | None = None) -> HostError:
        """The HostError of a failed step. The cause's own hint (a connect failure's: which
        flag to add) comes first: the generic "run again" told a user nothing it could act on."""
        host_prefix = f"{s.host}: "
        if message.startswith(host_prefix):
            message = message[len(host_prefix) :]
        self.host_stats(s.host).failed = phase.name
        self.emit(StepFailed(phase.name, s.host, s.id, message))
        hint = cause_hint or "fix the cause and run the same command again: finished steps are skipped"
        if self.log_hint:
            hint = f"{hint}; log: {self.log_hint.format(host=s.host)}"
        return HostError(f"{s.host}: {phase.name} failed: {message}", host=s.host, step=s.id, hint=hint)

    async def _deliver(self, phase: Phase, steps: Sequence[Step]) -> None:
        if self.deliver_fn is None:
            raise ClusterError(f"{phase.name}: no delivery configured")
        hosts = [s.host for s in steps]
        for s in steps:
            self.emit(StepStarted(phase.name, s.host, s.id, s.description))
        try:
            outcomes = await self.deliver_fn(hosts, self._on_delivery_event)
        except HostError as err:
            step = next((s for s in steps if s.host == err.host), steps[0])
            self.logs(step.host).command(
                phase=phase.name,
                step=step.id,
                command=step.command,
                status="-",
                stdout="",
                stderr=err.message,
                seconds=0,
            )
            raise self._failed(phase, step, err.message, cause_hint=err.hint) from None
        for s in steps:
            outcome = outcomes.get(s.host)
            stats = self.host_stats(s.host)
            seconds = outcome.seconds if outcome else 0.0
            if outcome is not None:
                stats.bytes_sent = max(stats.bytes_sent, outcome.bytes_sent)
                stats.seconds += seconds
                self.logs(s.host).command(
                    phase=phase.name,
                    step=s.id,
                    command=s.command,
                    status=0,
                    stdout=f"{outcome.bytes_sent} bytes sent",
                    stderr="",
                    seconds=seconds,
                )
            self.journal.record(self.digest, phase.name, s.host, s.id, seconds=seconds)
            self.emit(StepFinished(phase.name, s.host, s.id, s.description, seconds))

    def _on_delivery_event(self, event: RunEvent) -> None:
        if isinstance(event, HostBytes):
            stats = self.host_stats(event.host)
            stats.bytes_sent = event.bytes_sent
        self.emit(event)

    async def _remove(self, phase: Phase, steps: Sequence[Step]) -> None:
        if self.remove_fn is None:
            raise ClusterError(f"{phase.name}: no removal configured")
        for s in steps:
            self.emit(StepStarted(phase.name, s.host, s.id, s.description))
        started = time.monotonic()
        try:
            await self.remove_fn([s.host for s in steps])
        except HostError as err:
            step = next((s for s in steps if s.host == err.host), steps[0])
            raise self._failed(phase, step, err.message, cause_hint=err.hint) from None
        seconds = time.monotonic() - started
        for s in steps:
            self.logs(s.host).command(
                phase=phase.name,
                step=s.id,
                command=s.command,
                status=0,
                stdout="",
                stderr="",
                seconds=seconds,
            )
            self.emit(StepFinished(phase.name, s.host, s.id, s.description, seconds))


def _short(command: str, limit: int = 80) -> str:
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


MAX_NAMED_HOSTS = 10  # hosts named in one error line; the rest are counted


def name_hosts(hosts: Sequence[str], limit: int = MAX_NAMED_HOSTS) -> str:
    """`a, b, c`, or the first `limit` and how many more: one line, even for 5000 hosts."""
    if len(hosts) <= limit:
        return ", ".join(hosts)
    return f"{', '.join(hosts[:limit])} and {len(hosts) - limit} more"


def combine_host_errors(errors: Sequence[HostError]) -> HostError:
    """One HostError for the failures of several hosts in one phase: the first one's message
    and hint, and every other failed host named (`also failed: ...`), so a user fixes them all
    before the next run rather than one per run."""
    first = errors[0]
    others = list(dict.fromkeys(e.host for e in errors[1:] if e.host != first.host))
    if not others:
        return first
    return HostError(
        f"{first.message} (also failed: {name_hosts(others)})",
        host=first.host,
        step=first.step,
        hint=first.hint,
    )


__all__ = [
    "CommandFailed",
    "DeliveryOutcome",
    "EventSink",
    "HostBytes",
    "HostStats",
    "Notice",
    "PhaseFinished",
    "PhaseStarted",
    "RunEvent",
    "RunOptions",
    "Runner",
    "StepFailed",
    "StepFinished",
    "StepStarted",
    "combine_host_errors",
    "format_plan",
    "ignore",
    "name_hosts",
]
