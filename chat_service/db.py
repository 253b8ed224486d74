"""The database path of the async code: a small pool of threads, each with its own connection.

asgiref runs every ``database_sync_to_async`` call of a process on one thread. Measured
with bench/ (S1, docs/performance.md), that thread was the service's ceiling: one message
costs a handful of serial round trips to PostgreSQL, and every socket of the process
queued behind them, so a process stored fewer than 100 messages per second while its CPU
sat half idle. ``db_call`` runs the work on ``CHAT_DB_THREADS`` threads instead; Django's
connections are per thread, so each pool thread has its own, and PostgreSQL's row lock
per thread (see services.event_append) still orders the writes of one thread.

SQLite (the embedded default) takes one writer at a time: there the pool has one thread.

Like ``database_sync_to_async``, calls close connections that are past CONN_MAX_AGE or
unusable, in the thread that owns them (see ``_run`` for how often), and the caller's
context variables travel with the call (fanout's collector relies on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections, connection, connections

T = TypeVar("T")

CHECK_EVERY_S = 1.0

_executor: ThreadPoolExecutor | None = None
_local = threading.local()
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                import os
                import sys
                sys.setswitchinterval(float(os.environ.get("XSWITCH", "0.005")))
                _executor = ThreadPoolExecutor(max_workers=settings.CHAT["DB_THREADS"], thread_name_prefix="chat-db")
    return _executor


def _run(func: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    # Django's check of an old connection (close_old_connections) also re-arms
    # CONN_HEALTH_CHECKS, i.e. a "SELECT 1" round trip before the next query. Per call
    # that was one query in eight of a message; once a second per thread is enough: a
    # call that meets a dead connection fails, marks it, and the check after it closes
    # it, so a PostgreSQL restart costs at most the calls already in flight.
    checked = getattr(_local, "checked_at", None)
    now = time.monotonic()
    if checked is None or now - checked >= CHECK_EVERY_S or _hung_up():
        close_old_connections()
        _local.checked_at = now
    try:
        return func(*args, **kwargs)
    finally:
        if connection.connection is not None and connection.errors_occurred:
            close_old_connections()


def _hung_up() -> bool:
    """Whether this thread's idle PostgreSQL connection has something to read. The server
    sends an idle connection nothing unless it ends it (a restart sends FATAL and closes),
    so then the next query would fail: the check above must run now, not within the second.
    Without this, requests made right after a restart failed on connections that died
    unused (tests/resilience/test_faults_postgres.py). A poll costs no round trip."""
    raw = connection.connection
    if raw is None or connection.vendor != "postgresql":
        return False
    try:
        poller = select.poll()  # not select.select: a busy process's descriptors pass 1024
        poller.register(raw.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except Exception:  # noqa: BLE001 - a closed or broken connection: let the check decide
        return True


async def db_call(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run the sync ``func`` (ORM work) on the database pool and wait for its result."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_pool(), context.run, _run, func, args, kwargs)


def db_pool_close() -> None:
    """Close every pool thread's database connection and stop the pool (tests call this
    before the test database is dropped; a new pool starts on the next ``db_call``)."""
    global _executor
    with _executor_lock:
        executor, _executor = _executor, None
    if executor is None:
        return
    workers = executor._max_workers
    # One job per thread: each waits for the others so that no thread takes two.
    barrier = threading.Barrier(workers)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        connections.close_all()

    for future in [executor.submit(close) for _ in range(workers)]:
        future.result()
    executor.shutdown(wait=True)
