"""Shared fixtures. Tests talk to the real PostgreSQL and Redis (see tests/settings.py)."""

from __future__ import annotations

import inspect
import os
import re

import psycopg
import pytest
import redis
from django.conf import settings


def pytest_sessionstart(session):
    """Drop test databases left by runs that were killed (their pid is gone), so a machine
    that runs the suite often does not fill up with them."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        return
    try:
        conn = psycopg.connect(
            host=db["HOST"] or None,
            port=db["PORT"] or None,
            user=db["USER"] or None,
            password=db["PASSWORD"] or None,
            dbname="postgres",
            autocommit=True,
        )
    except psycopg.Error:
        return  # the run itself will report an unreachable database
    with conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'test_chat_%'")]
        for name in names:
            match = re.fullmatch(r"test_chat_(\d+)", name)
            if match and not _alive(int(match.group(1))):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(autouse=True)
def _close_loop_resources(request):
    """The hot path's database pool and the broadcast hub live on the event loop; each
    async test has its own loop, so they are closed with it (and the test database can
    be dropped at the end). Sync tests get nothing here: a sync test may drive its own
    loop (Playwright's), where an async fixture cannot run."""
    if inspect.iscoroutinefunction(request.function):
        request.getfixturevalue("_loop_resources_closed")
    yield


@pytest.fixture
async def _loop_resources_closed():
    yield
    from chat_service.machinery import broadcast, pgpool

    await broadcast.hub_close()
    await pgpool.pool_close()


@pytest.fixture(autouse=True)
def _clean_redis_keys():
    """Each test starts with none of this run's Redis keys (and no cached limiter/store)."""
    from chat_service.machinery.presence_store import get_presence_store
    from chat_service.machinery.ratelimit import get_rate_limiter

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}:*", count=1000):
        client.delete(key)
    get_rate_limiter.cache_clear()
    get_presence_store.cache_clear()
    yield
    client.close()
