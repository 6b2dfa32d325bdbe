"""RetryBudget: one retry count and one no-progress deadline per operation, shared by threads."""

from __future__ import annotations

import threading

import pytest

from builder.errors import RegistryUnavailable
from builder.registry.budget import MIN_WAIT_S, RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _error() -> RegistryUnavailable:
    return RegistryUnavailable("reg:5000: connection refused during blob upload", temporary=True)


def test_retries_are_shared_by_all_threads_and_reported_once_each() -> None:
    reported: list[int] = []
    budget = RetryBudget(retries=4, timeout_s=30, on_retry=lambda what, n, delay, why: reported.append(n))
    outcomes: list[str] = []

    def worker() -> None:
        for _ in range(5):
            try:
                budget.retry("reg:5000", "blob", _error(), delay_s=0)
            except RegistryUnavailable as err:
                outcomes.append(str(err))
                return

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(reported) == [1, 2, 3, 4]
    assert len(outcomes) == 3
    assert all("gave up after 4 retries" in o and "\n" not in o for o in outcomes), outcomes
    with pytest.raises(RegistryUnavailable) as info:  # spent for every later request too
        budget.timeouts("reg:5000", "manifest")
    assert info.value.hint and "--timeout" in info.value.hint


def test_deadline_counts_from_the_last_progress_and_caps_each_wait() -> None:
    clock = Clock()
    budget = RetryBudget(retries=100, timeout_s=30, clock=clock)
    assert budget.timeouts("reg:5000", "manifest") == (10, 10)
    clock.now += 25
    assert budget.timeouts("reg:5000", "manifest") == (5, 5)  # never past the deadline
    assert budget.timeouts("reg:5000", "blob", read_s=30) == (5, 5)
    budget.progress()
    assert budget.timeouts("reg:5000", "blob", read_s=30) == (10, 30)
    clock.now += 29.99
    assert budget.timeouts("reg:5000", "manifest")[0] == MIN_WAIT_S
    with pytest.raises(RegistryUnavailable, match=r"no progress for 30\.0 s, gave up after 0 retries"):
        budget.retry("reg:5000", "manifest", _error(), delay_s=1)
    assert budget.used == 0


def test_a_wait_past_the_deadline_gives_up_at_once() -> None:
    budget = RetryBudget(retries=5, timeout_s=10)
    with pytest.raises(RegistryUnavailable) as info:
        budget.retry("reg:5000", "manifest", _error(), delay_s=60)  # a Retry-After of 60 s
    assert "reg:5000" in str(info.value) and "the budget is 10 s" in str(info.value)


def test_failures_during_another_threads_retry_wait_are_the_same_outage() -> None:
    """A killed registry cuts every blob in flight at once: one retry, not one per blob."""
    clock = Clock()
    reported: list[int] = []
    budget = RetryBudget(retries=1, timeout_s=30, clock=clock, on_retry=lambda w, n, d, r: reported.append(n))
    budget.retry("reg:5000", "blob a", _error(), delay_s=0.05)
    clock.now += 0.01  # while that wait (to 100.05 on this clock) is still running
    budget.retry("reg:5000", "blob b", _error())  # joins it: spends nothing, does not give up
    budget.retry("reg:5000", "blob c", _error())
    assert budget.used == 1 and reported == [1, 1, 1]
    clock.now += 1  # that outage is over: the next failure is a new one, and none is left
    with pytest.raises(RegistryUnavailable, match="gave up after 1 retry"):
        budget.retry("reg:5000", "blob a", _error())


def test_a_refusal_before_any_answer_is_not_a_restart_and_after_one_is_waited_for() -> None:
    clock = Clock()
    reported: list[str] = []
    budget = RetryBudget(retries=0, timeout_s=3, clock=clock, on_retry=lambda w, n, d, r: reported.append(w))
    assert not budget.answered  # the callers make a refusal final then (a closed port)
    budget.progress()
    assert budget.answered
    for polls in range(1, 4):  # no retry left, yet a restart is waited for within the deadline
        budget.restarting("reg:5000", "blob a", _error(), polls)
        clock.now += 0.5
    assert reported == ["blob a"] and budget.used == 0  # one line for the outage, not per poll
    budget.progress()  # it answered again: a later outage is reported again
    budget.restarting("reg:5000", "blob b", _error(), 1)
    assert reported == ["blob a", "blob b"]
    clock.now += 3
    with pytest.raises(RegistryUnavailable) as info:
        budget.restarting("reg:5000", "blob b", _error(), 2)
    assert "still refused 3.0 s after its last answer (the budget is 3 s)" in str(info.value)
    assert "\n" not in str(info.value) and info.value.hint and "--timeout" in info.value.hint
