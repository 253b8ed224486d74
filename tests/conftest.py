"""Shared fixtures. Tests talk to the real PostgreSQL and Redis (see tests/settings.py)."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings


@pytest.fixture(autouse=True)
def _clean_redis_keys():
    """Each test starts with none of this run's Redis keys (and no cached limiter/store)."""
    from chat_service.ratelimit import get_rate_limiter
    from presence.store import get_presence_store

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}:*", count=1000):
        client.delete(key)
    get_rate_limiter.cache_clear()
    get_presence_store.cache_clear()
    yield
    client.close()
