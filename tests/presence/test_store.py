"""The connection registry: the same suite against the memory and the Redis store."""

import asyncio

import pytest
import redis
from django.conf import settings

from presence.store.memory import MemoryPresenceStore
from presence.store.redis_store import RedisPresenceStore


@pytest.fixture(params=["memory", "redis"])
def store(request):
    return MemoryPresenceStore() if request.param == "memory" else RedisPresenceStore()


async def test_counts_a_users_connections_across_add_and_remove(store):
    assert await store.connection_add("u", "c1", ttl_s=30) == 1
    assert await store.connection_add("u", "c2", ttl_s=30) == 2
    assert await store.connection_add("u", "c2", ttl_s=30) == 2  # same connection again
    assert await store.connection_add("v", "c3", ttl_s=30) == 1
    assert await store.connection_remove("u", "c1") == 1
    assert await store.connection_count("u") == 1
    assert await store.connection_remove("u", "c2") == 0
    assert await store.connection_remove("u", "c2") == 0


async def test_entries_expire_unless_touched(store):
    await store.connection_add("u", "kept", ttl_s=0.3)
    await store.connection_add("u", "lost", ttl_s=0.3)
    for _ in range(3):
        await asyncio.sleep(0.15)
        await store.connections_touch([("u", "kept")], ttl_s=0.3)
    assert await store.connection_count("u") == 1
    await asyncio.sleep(0.4)
    assert await store.connection_count("u") == 0


async def test_touch_does_not_resurrect_removed_connections(store):
    await store.connection_add("u", "c1", ttl_s=30)
    await store.connection_remove("u", "c1")
    await store.connections_touch([("u", "c1")], ttl_s=30)
    assert await store.connection_count("u") == 0


async def test_redis_leaves_no_keys_behind_once_every_connection_is_gone():
    store = RedisPresenceStore()
    await store.connection_add("u", "c1", ttl_s=0.2)
    await store.connection_add("w", "c2", ttl_s=30)
    await store.connection_remove("w", "c2")
    await asyncio.sleep(0.35)
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert list(client.scan_iter(match=f"{settings.REDIS_PREFIX}:conn:*")) == []
