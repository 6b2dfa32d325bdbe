"""The time and retry budget of one registry operation (a push, a pull, a login, a resolve).

Retries used to multiply (5 per request times 5 per blob, 3 blobs at once: ~60 retry lines
for a killed registry) and every silent request waited 60 s six times (362 s for a registry
that accepts connections and never answers). Now one `RetryBudget` per operation, shared by
all of its requests and threads:

- `timeout_s` (default 30, `--timeout`, SEALER_REGISTRY_TIMEOUT): the longest the operation
  may go without progress, where progress is an answer from the registry or bytes moving.
  Each connect or read waits at most `timeout_s / 3`, never past that deadline, so a silent
  or stopped registry ends the operation about `timeout_s` after it went quiet.
- `retries` (default 5): retries in the whole operation, whichever blob or request needs them.
  A failure that comes while another thread already waits out a retry is the same outage (a
  killed registry cuts every blob in flight at once): it waits with that thread and spends
  nothing, so an outage costs one retry however many requests it cut.
- A refused connection before the registry answered anything in this operation is final (a
  closed port: one line at once). After an answer it is a registry restarting (systemd, a pod,
  an upgrade): `restarting` waits for it, polling at most every RESTART_POLL_S, without
  spending a retry (three blobs refused at once would spend three), until it answers again or
  the no-progress deadline; it is reported once per outage, not once per poll.

The first to run out ends the operation with one RegistryUnavailable line naming the registry
and the flag to raise; every retry is reported once, through the `on_retry` hook (the client
turns it into a `Retrying` event), never printed.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from builder.errors import RegistryError, RegistryUnavailable

BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0
MIN_WAIT_S = 0.05  # a request started just before the deadline still gets a chance to answer
RESTART_POLL_S = 1.0  # the longest wait between connects to a restarting registry

RetryHook = Callable[[str, int, float, str], None]


def backoff_s(attempt: int) -> float:
    """Full-jitter exponential backoff (AWS architecture blog): uniform in [0, base * 2**n]."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2**attempt))) + 0.05


def timeout_hint(host: str, timeout_s: float) -> str:
    return (
        f"check that the registry {host} is running and reachable; if it is only slow, raise "
        f"--timeout (or SEALER_REGISTRY_TIMEOUT), now {timeout_s:g} s"
    )


class RetryBudget:
    """What one operation may spend on waiting and retrying; safe to share between threads."""

    def __init__(
        self,
        *,
        retries: int,
        timeout_s: float,
        on_retry: RetryHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retries = max(0, retries)
        self.timeout_s = timeout_s
        self.on_retry = on_retry
        self._clock = clock
        self._lock = threading.Lock()
        self._started = self._last_progress = clock()
        self._used = 0
        self._outage_until = 0.0  # when the retry wait in progress ends (another thread's)
        self._answered = False  # the registry answered in this operation: a refusal is a restart
        self._restart_reported = False  # the outage in progress was reported (once, not per poll)
        self._spent: tuple[str, str] | None = None  # (message, hint) once the budget ran out
        self._gave_up = threading.Event()  # wakes the threads sleeping in `retry`

    @property
    def request_timeout_s(self) -> float:
        """How long one connect or read may wait for the registry."""
        return self.timeout_s / 3

    @property
    def used(self) -> int:
        return self._used

    @property
    def answered(self) -> bool:
        """Whether the registry answered in this operation (a refused connection is then a
        restart to wait for, not a closed port)."""
        return self._answered

    def progress(self) -> None:
        """The registry answered or bytes moved: the no-progress clock starts again."""
        self._last_progress = self._clock()
        self._answered = True
        self._restart_reported = False

    def timeouts(self, host: str, what: str, *, read_s: float | None = None) -> tuple[float, float]:
        """(connect, read) timeouts for the next request, never past the deadline; raises
        RegistryUnavailable when the budget has run out (here or in another thread)."""
        with self._lock:
            self._raise_if_spent()
            left = self._last_progress + self.timeout_s - self._clock()
            if left <= 0:
                self._spend(
                    f"{host}: no progress for {self.timeout_s:g} s during {what}",
                    timeout_hint(host, self.timeout_s),
                )
        read = read_s if read_s is not None else self.request_timeout_s
        return max(MIN_WAIT_S, min(self.request_timeout_s, left)), max(MIN_WAIT_S, min(read, left))

    def retry(self, host: str, what: str, error: RegistryError, delay_s: float | None = None) -> None:
        """Spend one retry on `error` about `what`: report it, then sleep the backoff (or the
        registry's Retry-After `delay_s`). Raises `error`, made final, when no retry is left
        or the wait would end past the deadline."""
        self._wait(host, what, error, backoff_s(self._used) if delay_s is None else delay_s, counted=True)

    def restarting(self, host: str, what: str, error: RegistryError, polls: int) -> None:
        """The registry answered earlier in this operation and now refuses connections: wait for
        it to come back (the `polls`-th wait of this caller, backoff capped at RESTART_POLL_S)
        without spending a retry. Raises `error`, made final, at the no-progress deadline."""
        self._wait(host, what, error, min(RESTART_POLL_S, backoff_s(polls - 1)), counted=False)

    def _wait(self, host: str, what: str, error: RegistryError, delay: float, *, counted: bool) -> None:
        with self._lock:
            self._raise_if_spent()
            now = self._clock()
            joined = counted and now < self._outage_until  # the outage another thread waits out
            if joined:
                delay = self._outage_until - now + random.uniform(0, 0.1)
            past_deadline = now + delay >= self._last_progress + self.timeout_s
            if (counted and not joined and self._used >= self.retries) or past_deadline:
                retries = f"{self._used} {'retry' if self._used == 1 else 'retries'}"
                quiet = now - self._last_progress
                if not counted:
                    why = f"still refused {quiet:.1f} s after its last answer (the budget is {self.timeout_s:g} s)"
                elif self._used >= self.retries:
                    why = f"gave up after {retries} in {now - self._started:.1f} s"
                else:
                    why = f"no progress for {quiet:.1f} s, gave up after {retries} (the budget is {self.timeout_s:g} s)"
                self._spend(
                    f"{error.message}; {why}",
                    timeout_hint(host, self.timeout_s),
                    status=error.status,
                    code=error.code,
                )
            report = counted or not self._restart_reported
            if counted and not joined:
                self._used += 1
                self._outage_until = now + delay
            elif not counted:
                self._restart_reported = True
            attempt = max(1, self._used) if counted else self._used + 1
        if report and self.on_retry is not None:
            self.on_retry(what, attempt, delay, error.message)
        if self._gave_up.wait(delay):  # another thread spent the budget: stop now, not after the sleep
            with self._lock:
                self._raise_if_spent()

    def _spend(self, message: str, hint: str, *, status: int | None = None, code: str | None = None) -> None:
        self._spent = (message, hint)
        self._gave_up.set()
        raise RegistryUnavailable(message, hint=hint, status=status, code=code, temporary=True)

    def _raise_if_spent(self) -> None:
        if self._spent is not None:
            message, hint = self._spent
            raise RegistryUnavailable(message, hint=hint, temporary=True)
