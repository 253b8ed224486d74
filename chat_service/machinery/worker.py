"""The worker process: periodic jobs that run beside the socket servers (``manage.py worker``).

A ``Job`` is a name, an interval and a sync callable with ordinary Django database access.
Jobs register themselves with ``register`` from a ``jobs`` module of any installed app
(``<app>/jobs.py``); the worker imports those modules at start (``autodiscover``). Later
issues add outbox delivery, offer expiry and presence sweeps this way.

Invariants:
* One job runs at a time, in the main thread. Every job runs once at start; after that a
  job is due ``interval_s`` after its previous run *started*. A job that overruns its
  interval runs again right away, never concurrently with itself, and missed runs are
  not caught up in a burst.
* An exception in a job is logged with the job's name and swallowed: the other jobs and
  the job's own next run happen as scheduled.
* Before and after every run, connections that broke or outlived CONN_MAX_AGE are closed
  (``close_old_connections``, what Django does around each request). Without it a
  long-lived process keeps a connection that died with a PostgreSQL restart, and every
  later run fails on it; with it, the restart costs one failed run at most.
* SIGTERM / SIGINT stop the loop after the running job returns; no job is cut short.
  A second signal gets the previous handler (a second Ctrl+C interrupts at once).
* Nothing here holds state that must survive the process: whatever a job must not lose
  lives in PostgreSQL (the outbox, the offers), so a killed worker just resumes.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from django.db import close_old_connections, connections
from django.utils.module_loading import autodiscover_modules

log = logging.getLogger(__name__)

# Upper bound of one wait with nothing due (or no jobs at all): the loop looks at its
# stop flag at least this often even if a wake-up were lost.
IDLE_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval_s: float
    run: Callable[[], None]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a job needs a name")
        if self.interval_s <= 0:
            raise ValueError(f"job {self.name}: interval_s must be positive, got {self.interval_s}")


@dataclass(frozen=True, slots=True)
class JobRun:
    name: str
    ok: bool
    duration_s: float


_jobs: dict[str, Job] = {}


def register(job: Job) -> Job:
    """Add ``job`` to the worker's registry (at import time of a ``jobs`` module)."""
    if job.name in _jobs:
        raise ValueError(f"a job named {job.name!r} is already registered")
    _jobs[job.name] = job
    return job


def registered_jobs() -> list[Job]:
    return list(_jobs.values())


def autodiscover() -> None:
    """Import every installed app's ``jobs`` module, whose import registers its jobs."""
    autodiscover_modules("jobs")


class Runner:
    """Runs due jobs; ``run_forever`` loops until ``stop``.

    ``clock`` (monotonic seconds) is injectable so that scheduling is tested without
    sleeping; ``run_forever`` waits in real time, so use it with the real clock.
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        *,
        clock: Callable[[], float] = time.monotonic,
        idle_wait_s: float = IDLE_WAIT_S,
    ) -> None:
        self._jobs = list(jobs)
        self._clock = clock
        self._idle_wait_s = idle_wait_s
        start = clock()
        self._next_due = {job.name: start for job in self._jobs}
        self._stopping = False
        self.stop_reason: str | None = None
        # Self-pipe: stop() writes a byte, the idle wait selects on it. A signal handler
        # may run at any bytecode of the main thread, so it must not take a lock (an
        # Event's) that the interrupted code may hold; a pipe write takes none.
        self._wake_w: int | None = None

    def run_due(self) -> list[JobRun]:
        """Run every job that is due now, in registration order; return what ran."""
        runs = []
        for job in self._jobs:
            if self._stopping:
                break
            started = self._clock()
            if self._next_due[job.name] > started:
                continue
            self._next_due[job.name] = started + job.interval_s
            runs.append(self._run(job, started))
        return runs

    def seconds_until_due(self) -> float | None:
        """How long until the next job is due (0 if one is); None without jobs."""
        if not self._jobs:
            return None
        return max(0.0, min(self._next_due.values()) - self._clock())

    def run_forever(self) -> None:
        """Run due jobs and wait for the next, until ``stop`` is called."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake_w = wake_w
        log.info("worker started jobs=%s", ",".join(job.name for job in self._jobs) or "-")
        try:
            while not self._stopping:
                self.run_due()
                due_in = self.seconds_until_due()
                timeout = self._idle_wait_s if due_in is None else min(due_in, self._idle_wait_s)
                self._wait(wake_r, timeout)
        finally:
            self._wake_w = None
            os.close(wake_r)
            os.close(wake_w)
            connections.close_all()
            log.info("worker stopped reason=%s", self.stop_reason or "-")

    def stop(self, reason: str = "stop") -> None:
        """Stop after the running job. Safe from a signal handler and from other threads."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stopping = True
        wake_w = self._wake_w
        if wake_w is not None:
            try:
                os.write(wake_w, b"\0")
            except OSError:
                pass  # pipe full (a wake-up is already pending) or just closed (loop done)

    def _wait(self, wake_r: int, timeout: float) -> None:
        if self._stopping or timeout <= 0:
            return
        # A signal arriving during select runs its handler, which writes to the pipe;
        # select is then retried (PEP 475) and returns at once.
        readable, _, _ = select.select([wake_r], [], [], timeout)
        if readable:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass

    def _run(self, job: Job, started: float) -> JobRun:
        close_old_connections()
        ok = False
        try:
            job.run()
            ok = True
        except Exception:  # noqa: BLE001 - one job's failure must not end the worker
            log.exception("job failed job=%s", job.name)
        finally:
            close_old_connections()
        duration = self._clock() - started
        log.debug("job done job=%s ok=%s duration_s=%.3f", job.name, ok, duration)
        return JobRun(name=job.name, ok=ok, duration_s=duration)


@contextmanager
def stop_on_signals(
    runner: Runner, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
) -> Iterator[None]:
    """While inside, the given signals ask ``runner`` to stop (main thread only)."""
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handle(signum: int, frame: FrameType | None) -> None:
        runner.stop(signal.Signals(signum).name)
        # The next one of this signal acts as it did before: Ctrl+C twice interrupts.
        signal.signal(signum, previous[signal.Signals(signum)])

    for sig in signals:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
