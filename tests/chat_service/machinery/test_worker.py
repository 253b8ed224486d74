"""The worker: scheduling, failure isolation, database-connection hygiene, --once, signals.

Scheduling is tested with an injected clock; the loop itself with real intervals of
10 ms. Jobs here are test jobs; the apps' own jobs are kept out of the registry.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from chat_service.machinery import worker
from chat_service.machinery.worker import Job, Runner

REPO_ROOT = Path(__file__).resolve().parents[3]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(monkeypatch) -> dict[str, Job]:
    """An empty job registry for the test; the real one is left as it was."""
    jobs: dict[str, Job] = {}
    monkeypatch.setattr(worker, "_jobs", jobs)
    # Keep the apps' real jobs (orders_bridge.jobs) out of this registry.
    monkeypatch.setattr(worker, "autodiscover_modules", lambda name: None)
    return jobs


@pytest.fixture
def watchdog() -> Iterator[list[Runner]]:
    """Stops the runners appended to it after 20 s, so a broken loop fails instead of
    hanging; the tests check it never had to (``fired``)."""
    runners: list[Runner] = []
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        for runner in runners:
            runner.stop("watchdog")

    timer = threading.Timer(20, fire)
    timer.start()
    yield runners
    timer.cancel()
    assert not fired.is_set(), "the loop did not stop on its own; the watchdog stopped it"


# --- scheduling ------------------------------------------------------------------------------


def test_jobs_run_at_start_and_then_every_interval(clock):
    ran: list[tuple[str, float]] = []
    fast = Job("fast", 3, lambda: ran.append(("fast", clock.now)))
    slow = Job("slow", 10, lambda: ran.append(("slow", clock.now)))
    runner = Runner([fast, slow], clock=clock)

    for t in range(21):
        clock.now = t
        runner.run_due()

    assert [t for name, t in ran if name == "fast"] == [0, 3, 6, 9, 12, 15, 18]
    assert [t for name, t in ran if name == "slow"] == [0, 10, 20]
    assert runner.seconds_until_due() == 1  # fast, at 21


def test_an_overrunning_job_runs_again_at_once_but_never_catches_up(clock):
    starts: list[float] = []

    def job() -> None:
        starts.append(clock.now)
        if len(starts) == 1:
            clock.now += 25  # the first run overruns by one and a half intervals

    runner = Runner([Job("job", 10, job)], clock=clock)

    runner.run_due()
    assert len(runner.run_due()) == 1  # overdue: runs again right away ...
    assert len(runner.run_due()) == 0  # ... but the missed runs are not made up
    clock.now = 34.9
    assert len(runner.run_due()) == 0
    clock.now = 35
    assert len(runner.run_due()) == 1  # an interval after the late run started
    assert starts == [0, 25, 35]


def test_a_stop_during_a_pass_skips_the_jobs_still_due(clock):
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        runner.stop()

    runner = Runner([Job("first", 1, first), Job("second", 1, lambda: ran.append("second"))], clock=clock)

    assert [r.name for r in runner.run_due()] == ["first"]
    assert ran == ["first"]


def test_seconds_until_due_is_none_without_jobs(clock):
    assert Runner([], clock=clock).seconds_until_due() is None


# --- failures ------------------------------------------------------------------------------


def test_a_failing_job_does_not_stop_other_jobs_or_its_own_next_run(clock, caplog):
    ran: list[str] = []

    def boom() -> None:
        ran.append("boom")
        raise RuntimeError("kaput")

    runner = Runner([Job("boom", 5, boom), Job("fine", 5, lambda: ran.append("fine"))], clock=clock)

    with caplog.at_level(logging.ERROR, logger="chat_service.machinery.worker"):
        first = runner.run_due()
        clock.now = 5
        second = runner.run_due()

    assert [(r.name, r.ok) for r in first] == [("boom", False), ("fine", True)]
    assert [(r.name, r.ok) for r in second] == [("boom", False), ("fine", True)]
    assert ran == ["boom", "fine", "boom", "fine"]
    failures = [r for r in caplog.records if "job failed job=boom" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)


def test_the_loop_keeps_running_jobs_after_failures_until_stopped(watchdog):
    counts = {"boom": 0, "tick": 0}

    def boom() -> None:
        counts["boom"] += 1
        raise RuntimeError("kaput")

    def tick() -> None:
        counts["tick"] += 1
        if counts["tick"] >= 3 and counts["boom"] >= 3:
            runner.stop()

    runner = Runner([Job("boom", 0.01, boom), Job("tick", 0.01, tick)])
    watchdog.append(runner)

    runner.run_forever()

    assert counts["boom"] >= 3 and counts["tick"] >= 3
    assert runner.stop_reason == "stop"


@pytest.mark.django_db(transaction=True)
def test_a_job_survives_its_database_connection_being_killed(monkeypatch):
    # As in production: connections live long (CONN_MAX_AGE) and are health-checked.
    # Only close_old_connections between runs makes the health check happen again.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    connection.close()
    backend_pids: list[int] = []

    def query() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend_pids.append(cursor.fetchone()[0])

    clock = FakeClock()
    runner = Runner([Job("query", 1, query)], clock=clock)
    assert [r.ok for r in runner.run_due()] == [True]

    _terminate_backend(backend_pids[0])  # what a PostgreSQL restart does to it
    clock.now = 1
    assert [r.ok for r in runner.run_due()] == [True]
    clock.now = 2
    assert [r.ok for r in runner.run_due()] == [True]

    assert backend_pids[1] != backend_pids[0]
    assert backend_pids[2] == backend_pids[1]  # a healthy connection is kept, not churned


def _terminate_backend(pid: int) -> None:
    params = connection.settings_dict
    conninfo = {
        "dbname": params["NAME"],
        "user": params["USER"],
        "host": params["HOST"],
        "port": params["PORT"],
    }
    with psycopg.connect(**{k: v for k, v in conninfo.items() if v}, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend did not go away"
            time.sleep(0.01)


# --- the command -------------------------------------------------------------------------


def test_worker_once_runs_each_registered_job_once_and_exits(registry):
    ran: list[str] = []
    worker.register(Job("one", 3600, lambda: ran.append("one")))
    worker.register(Job("two", 0.001, lambda: ran.append("two")))
    out = StringIO()

    call_command("worker", "--once", stdout=out)

    assert ran == ["one", "two"]
    assert "one: ok" in out.getvalue() and "two: ok" in out.getvalue()


def test_worker_once_fails_when_a_job_failed_but_runs_the_others(registry):
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("kaput")

    worker.register(Job("boom", 60, boom))
    worker.register(Job("fine", 60, lambda: ran.append("fine")))

    with pytest.raises(CommandError, match="boom"):
        call_command("worker", "--once", stdout=StringIO())
    assert ran == ["fine"]


def test_worker_once_without_jobs_says_so(registry):
    out = StringIO()
    call_command("worker", "--once", stdout=out)
    assert "No jobs registered." in out.getvalue()


def test_worker_runs_the_jobs_that_apps_jobs_modules_register(registry, monkeypatch):
    imported: list[str] = []

    def fake_autodiscover_modules(name: str) -> None:
        # What importing an app's jobs.py does.
        imported.append(name)
        worker.register(Job("from-an-app", 60, lambda: imported.append("ran")))

    monkeypatch.setattr(worker, "autodiscover_modules", fake_autodiscover_modules)

    call_command("worker", "--once", stdout=StringIO())

    assert imported == ["jobs", "ran"]


def test_register_refuses_duplicate_names_and_bad_intervals(registry):
    worker.register(Job("once", 1, lambda: None))
    with pytest.raises(ValueError, match="already registered"):
        worker.register(Job("once", 2, lambda: None))
    with pytest.raises(ValueError, match="interval_s"):
        Job("never", 0, lambda: None)


# --- signals -------------------------------------------------------------------------------


def test_sigterm_stops_the_loop_after_the_running_job(watchdog):
    runs = 0

    def job() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # handled while this job is still running

    runner = Runner([Job("tick", 0.01, job)])
    watchdog.append(runner)
    previous = signal.getsignal(signal.SIGTERM)

    with worker.stop_on_signals(runner):
        runner.run_forever()

    assert runs == 2  # finished the job it was in, started no other
    assert runner.stop_reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is previous


def test_signal_handlers_are_restored_after_the_loop():
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    runner = Runner([])

    with worker.stop_on_signals(runner):
        assert all(signal.getsignal(sig) is not handler for sig, handler in previous.items())
    assert {sig: signal.getsignal(sig) for sig in previous} == previous


def test_sigterm_wakes_a_worker_that_waits_for_its_next_job(watchdog):
    runs = 0

    def job() -> None:
        nonlocal runs
        runs += 1
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()

    clock_reads = 0

    def clock() -> float:
        nonlocal clock_reads
        clock_reads += 1
        return time.monotonic()

    runner = Runner([Job("hourly", 3600, job)], clock=clock, idle_wait_s=30)
    watchdog.append(runner)

    with worker.stop_on_signals(runner):
        runner.run_forever()

    assert runs == 1
    # It slept until the signal; a loop that spins instead reads the clock thousands of times.
    assert clock_reads < 10
    assert runner.stop_reason == "SIGTERM"  # and the watchdog fixture checks it was prompt


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_manage_py_worker_exits_cleanly_on(sig):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "worker"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    try:
        seen = []
        while not any("worker started" in line for line in seen):
            seen.append(lines.get(timeout=30))

        process.send_signal(sig)

        assert process.wait(timeout=15) == 0, "".join(seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)  # it ends at the process's EOF
    while not lines.empty():
        seen.append(lines.get())
    assert any(f"worker stopped reason={sig.name}" in line for line in seen), "".join(seen)
