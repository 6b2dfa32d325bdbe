"""The runner on this machine through the LocalDriver (harmless commands writing under
tmp_path only): journal and resume, named outputs and their placeholders, failure naming the
host, the per-host log."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from builder.errors import HostError
from builder.image.digest import Digest
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.infra.local import LocalDriver
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.plugins.base import output_ref
from builder.runtime.runner import RunEvent, Runner, RunOptions, StepFinished, combine_host_errors
from builder.runtime.state import ClusterState, Journal

HOST = "127.0.0.1"


class Scripted(Phase):
    name: ClassVar[str] = "scripted"
    title: ClassVar[str] = "Scripted steps"

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        return self.steps


D1 = Digest.from_bytes(b"d1")  # the image digest the runner journals under


def run_phase(runner: Runner, steps: Sequence[Step]) -> None:
    asyncio.run(runner.run_phase(Scripted(steps), steps))


def test_journal_skips_finished_steps_and_resumes_after_a_failure(tmp_path: Path) -> None:
    marker, count = tmp_path / "go", tmp_path / "count"
    steps = [
        Step(HOST, "one", "count", f"echo x >> {shlex.quote(str(count))}"),
        Step(HOST, "two", "fails until the marker exists", f"test -e {shlex.quote(str(marker))}"),
        Step(HOST, "three", "count", f"echo y >> {shlex.quote(str(count))}"),
    ]
    cs = ClusterState("c1", tmp_path / "state")
    events: list[RunEvent] = []
    runner = Runner(LocalDriver(), digest=D1, journal=cs.journal(), logs=cs.host_log, on_event=events.append)
    with pytest.raises(HostError) as info:
        run_phase(runner, steps)
    assert str(info.value).startswith(f'{HOST}: scripted failed: "test -e ')
    assert count.read_text() == "x\n"
    marker.touch()
    runner = Runner(LocalDriver(), digest=D1, journal=cs.journal(), logs=cs.host_log, on_event=events.append)
    events.clear()
    run_phase(runner, steps)
    assert count.read_text() == "x\ny\n"  # step one was not run again
    assert [e.step for e in events if isinstance(e, StepFinished) and e.skipped] == ["one"]
    log = (cs.logs_dir / f"{HOST}.log").read_text()
    assert "exit 1" in log and "exit 0" in log
    assert Journal(cs.journal_path).last_phase(HOST) == "scripted"


def test_named_outputs_are_resolved_at_run_time_and_kept_out_of_logs(tmp_path: Path) -> None:
    out = tmp_path / "joined"
    steps = [
        Step(HOST, "token", "mint", "printf '%s-%s' s3cret token", output="join-token", journal=False),
        Step(HOST, "join", "use", f"echo {output_ref('join-token')} > {shlex.quote(str(out))}"),
    ]
    cs = ClusterState("c1", tmp_path / "state")
    runner = Runner(LocalDriver(), digest=D1, journal=cs.journal(), logs=cs.host_log)
    run_phase(runner, steps)
    assert out.read_text() == "s3cret-token\n"
    assert "s3cret-token" not in (cs.logs_dir / f"{HOST}.log").read_text()
    # once the join is journaled, the producer is not needed and is skipped
    events: list[RunEvent] = []
    runner = Runner(LocalDriver(), digest=D1, journal=cs.journal(), logs=cs.host_log, on_event=events.append)
    run_phase(runner, steps)
    assert {e.step for e in events if isinstance(e, StepFinished) and e.skipped} == {"token", "join"}


def test_a_producer_runs_only_for_a_consumer_before_the_next_producer_of_its_name(tmp_path: Path) -> None:
    """Two joins, each with its own mint of the same output name: after the first join is
    journaled, a re-run mints once, for the second (a live credential for a host that already
    joined would be wasted); a kept output (the kubeconfig) is produced even with no consumer."""
    minted, joined = tmp_path / "minted", tmp_path / "joined"
    mint = f"echo x >> {shlex.quote(str(minted))}; echo token-$(wc -l < {shlex.quote(str(minted))})"
    steps = [
        Step(HOST, "mint-a", "mint", mint, output="token", journal=False),
        Step(HOST, "join-a", "use", f"echo a {output_ref('token')} >> {shlex.quote(str(joined))}"),
        Step(HOST, "mint-b", "mint", mint, output="token", journal=False),
        Step(
            HOST,
            "join-b",
            "fails until a marker",
            f"test -e {tmp_path}/go && echo b {output_ref('token')} >> {joined}",
        ),
        Step(HOST, "kubeconfig", "kept", "echo config", output="kubeconfig", journal=False),
    ]
    cs = ClusterState("c1", tmp_path / "state")
    runner = Runner(LocalDriver(), digest=D1, journal=cs.journal(), logs=cs.host_log)
    with pytest.raises(HostError):
        run_phase(runner, steps)
    assert minted.read_text() == "x\nx\n" and joined.read_text() == "a token-1\n"
    (tmp_path / "go").touch()
    runner = Runner(
        LocalDriver(), digest=D1, journal=cs.journal(), logs=cs.host_log, keep_outputs={"kubeconfig"}
    )
    run_phase(runner, steps)
    assert minted.read_text() == "x\nx\nx\n"  # one mint, not two
    assert joined.read_text() == "a token-1\nb token-3\n"
    assert runner.outputs["kubeconfig"] == "config"


def test_forgetting_a_host_forgets_master0s_steps_for_it_too(tmp_path: Path) -> None:
    """A host deleted and later re-added at the same address must go through everything again,
    master0's steps for it (drain, labels: ids `<ip>/...`) included."""
    journal = ClusterState("c1", tmp_path / "state").journal()
    for host, step in (("10.0.0.4", "install"), ("10.0.0.1", "10.0.0.4/labels"), ("10.0.0.1", "10.0.0.5/labels"),
                       ("10.0.0.1", "init"), ("10.0.0.5", "install")):  # fmt: skip
        journal.record(D1, "p", host, step, seconds=0)
    journal.forget_hosts(["10.0.0.4"])
    again = Journal(journal.path)
    assert not again.done(D1, "p", "10.0.0.4", "install")
    assert not again.done(D1, "p", "10.0.0.1", "10.0.0.4/labels")
    assert again.done(D1, "p", "10.0.0.1", "10.0.0.5/labels") and again.done(D1, "p", "10.0.0.1", "init")
    assert again.done(D1, "p", "10.0.0.5", "install")


# --- a phase failing on several hosts -------------------------------------------------------------


def test_a_probe_phase_names_every_host_that_fails_with_the_causes_hint(tmp_path: Path) -> None:
    """A connect failure is raised before the first await (a missing known_hosts, here a host
    the local driver does not serve): the first host used to stop the probes of the others,
    so one run named one host and the user fixed them one run at a time. The cause's hint
    (which flag to add) used to be replaced by a generic "run again"."""
    hosts = [f"10.0.0.{i}" for i in range(1, 4)]
    steps = [Step(h, "probe", "probe", "true", kind="probe", journal=False) for h in hosts]
    cs = ClusterState("c1", tmp_path / "state")
    runner = Runner(LocalDriver(), digest=D1, journal=cs.journal(), logs=cs.host_log, log_hint="LOG/{host}")
    with pytest.raises(HostError) as info:
        run_phase(runner, steps)
    err = info.value
    assert err.message.startswith("10.0.0.1: scripted failed: the local driver runs only on this machine")
    assert err.message.endswith("(also failed: 10.0.0.2, 10.0.0.3)")
    assert err.hint == "give SSH credentials to reach other hosts; log: LOG/10.0.0.1"
    assert {h: runner.host_stats(h).failed for h in hosts} == dict.fromkeys(hosts, "scripted")


def test_a_failure_on_many_hosts_stays_one_line() -> None:
    errors = [HostError(f"10.0.1.{i}: boom", host=f"10.0.1.{i}") for i in range(25)]
    err = combine_host_errors(errors)
    assert err.message == (
        "10.0.1.0: boom (also failed: " + ", ".join(f"10.0.1.{i}" for i in range(1, 11)) + " and 14 more)"
    )
    assert combine_host_errors(errors[:1]) is errors[0]


def test_a_command_phase_still_starts_nothing_new_after_a_failure(tmp_path: Path) -> None:
    """Commands change hosts: after a failure the hosts that have not started stay untouched
    (here max_parallel=1, so the second host waits for the first and then starts nothing)."""
    ran = tmp_path / "ran"
    steps = [
        Step("127.0.0.1", "one", "fails", "exit 3"),
        Step("localhost", "one", "would run", f"touch {shlex.quote(str(ran))}"),
    ]
    cs = ClusterState("c1", tmp_path / "state")
    runner = Runner(
        LocalDriver(), digest=D1, journal=cs.journal(), logs=cs.host_log, options=RunOptions(max_parallel=1)
    )
    with pytest.raises(HostError, match=r'^127\.0\.0\.1: scripted failed: "exit 3" exited 3$'):
        run_phase(runner, steps)
    assert not ran.exists()


def test_secret_env_reaches_the_command_on_stdin_never_in_its_command_line(tmp_path: Path) -> None:
    secret = "-----BEGIN KEY-----\nab'c\" $HOME \\ `x`\n-----END KEY-----\n\n"
    out, argv, rest = (tmp_path / n for n in ("secret", "argv", "rest"))
    q = {p: shlex.quote(str(p)) for p in (out, argv, rest)}
    command = (
        f'printf %s "$KEY" > {q[out]} && tr "\\0" " " < /proc/$$/cmdline > {q[argv]} && '
        f'test "$PLAIN" = shown && cat > {q[rest]}'
    )
    step = Step(HOST, "s", "secret", command, env={"KEY": secret, "PLAIN": "shown"}, secret_env=("KEY",),
                stdin=b"the step's own stdin\n")  # fmt: skip
    cs = ClusterState("c1", tmp_path / "state")
    run_phase(Runner(LocalDriver(), digest=D1, journal=cs.journal(), logs=cs.host_log), [step])
    assert out.read_text() == secret  # exactly, trailing newlines too
    assert "BEGIN KEY" not in argv.read_text() and "PLAIN=" in argv.read_text()
    assert rest.read_text() == "the step's own stdin\n"
    assert "BEGIN KEY" not in (cs.logs_dir / f"{HOST}.log").read_text()
