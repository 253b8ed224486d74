"""PostgreSQL on the event loop: psycopg 3 async connections from psycopg_pool.

The socket's hot path (message.send, thread.read, connect, thread.join and its catch-up,
the supervisor's sync) talks to PostgreSQL from the event loop, one statement per round
trip, without a hop into a thread. Measured on this machine (docs/performance.md): a
round trip costs the process about 80 µs of CPU, a statement in pipeline mode inside
BEGIN/COMMIT about 375 µs for three, so every hot operation is *one* statement in
autocommit: it is its own transaction, and its row locks last until it ends.

Everything else (commerce commands, HTTP views, the worker) keeps Django's ORM and its
transactions, in a thread.

* One pool per event loop (a daphne process has one), opened on first use with the
  ``default`` database's parameters; statements are prepared by psycopg after a few uses
  per connection, so the hot statements are parsed and planned once.
* Sessions run in UTC, like Django's.
* A connection that broke (a PostgreSQL restart) is discarded by the pool when it is
  returned; ``run`` then has the pool check its idle connections (a restart breaks them
  all) and retries the statement once, so a restart costs at most the statements that
  were in flight.
  Retrying is safe for every hot statement: each is idempotent or keyed (a repeated
  message is recognised by its client_msg_id).
* ``enabled()`` is False on SQLite (the embedded default): callers take the ORM path.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import psycopg
from django.conf import settings
from django.db import connections
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

T = TypeVar("T")

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = weakref.WeakKeyDictionary()
# Loops whose pool was closed (shutting down): no new pool is opened on them. A pool
# opened while its loop is being torn down would never stop: psycopg_pool's workers
# swallow the cancellation they get in the middle of a task.
_closed: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_DJANGO_ONLY = ("cursor_factory", "context", "prepare_threshold")


def enabled() -> bool:
    """Whether the hot path runs here (PostgreSQL) rather than through the ORM (SQLite)."""
    return connections["default"].vendor == "postgresql"


def _conninfo() -> dict[str, Any]:
    params = connections["default"].get_connection_params()
    for name in _DJANGO_ONLY:
        params.pop(name, None)
    return params


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(orjson.loads, conn)
    await conn.execute("SET TIME ZONE 'UTC'")


def pool() -> AsyncConnectionPool:
    """This event loop's pool (opened on first use)."""
    loop = asyncio.get_running_loop()
    existing = _pools.get(loop)
    if existing is not None:
        return existing
    if loop in _closed:
        raise RuntimeError("the database pool of this event loop is closed")
    created = AsyncConnectionPool(
        kwargs={**_conninfo(), "autocommit": True},
        min_size=1,
        max_size=settings.CHAT["DB_POOL_SIZE"],
        configure=_configure,
        open=False,
        name="chat-hot-path",
        timeout=settings.CHAT["DB_POOL_TIMEOUT_S"],
    )
    _pools[loop] = created
    return created


async def run(work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    """Run ``work`` with a connection of the pool; once more on a fresh connection if the
    first one turned out to be broken (see the module docstring)."""
    current = pool()
    if current.closed:
        await current.open(wait=False)
    for attempt in (1, 2):
        async with current.connection() as conn:
            try:
                return await work(conn)
            except psycopg.OperationalError:
                if attempt == 2 or not conn.broken:
                    raise
        # A restart broke every idle connection of the pool at once: have the pool test
        # them (and replace the dead ones) before the retry takes one.
        log.warning("database connection broke; checking the pool's connections and retrying")
        await current.check()
    raise AssertionError("unreachable")


async def pool_close() -> None:
    """Close this loop's pool for good (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    _closed.add(loop)
    existing = _pools.pop(loop, None)
    if existing is not None:
        await existing.close()
