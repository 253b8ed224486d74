"""The presence store: the same suite against the memory and the Redis store.

Time-based cases use short TTLs and grace periods and wait past them; they assert on
states, never on how long anything took.
"""

import asyncio

import pytest
import redis
from django.conf import settings

from chat_service.machinery.presence_store import PresenceState
from chat_service.machinery.presence_store.memory import MemoryPresenceStore
from chat_service.machinery.presence_store.redis_store import RedisPresenceStore

DAY = 86400


@pytest.fixture(params=["memory", "redis"])
def store(request):
    return MemoryPresenceStore() if request.param == "memory" else RedisPresenceStore()


async def state_of(store, user_id):
    return (await store.presence_get([user_id]))[user_id]


# --- the connection registry -------------------------------------------------------------


async def test_counts_a_users_connections_across_open_and_close(store):
    assert (await store.connection_open("u", "c1", ttl_s=30)).count == 1
    assert (await store.connection_open("u", "c2", ttl_s=30)).count == 2
    assert (await store.connection_open("u", "c2", ttl_s=30)).count == 2  # same connection again
    assert (await store.connection_open("v", "c3", ttl_s=30)).count == 1
    assert (await store.connection_close("u", "c1", grace_s=5)).count == 1
    assert await store.connection_count("u") == 1
    assert (await store.connection_close("u", "c2", grace_s=5)).count == 0
    assert (await store.connection_close("u", "c2", grace_s=5)).count == 0


async def test_entries_expire_unless_touched(store):
    await store.connection_open("u", "kept", ttl_s=0.3)
    await store.connection_open("u", "lost", ttl_s=0.3)
    for _ in range(3):
        await asyncio.sleep(0.15)
        await store.connections_touch([("u", "kept")], ttl_s=0.3)
    assert await store.connection_count("u") == 1
    await asyncio.sleep(0.4)
    assert await store.connection_count("u") == 0


async def test_touch_does_not_resurrect_closed_connections_but_names_them(store):
    await store.connection_open("u", "c1", ttl_s=30)
    await store.connection_open("u", "c2", ttl_s=30)
    await store.connection_close("u", "c1", grace_s=5)
    missing = await store.connections_touch([("u", "c1"), ("u", "c2"), ("v", "c3")], ttl_s=30)
    assert missing == [("u", "c1"), ("v", "c3")]
    assert await store.connection_count("u") == 1


# --- presence transitions ------------------------------------------------------------------


async def test_a_user_never_seen_reads_offline_without_last_seen(store):
    assert await state_of(store, "nobody") == (PresenceState(online=False, last_seen_ms=None, version=0), False)


async def test_only_the_first_connection_turns_a_user_online(store):
    first = await store.connection_open("u", "c1", ttl_s=30)
    second = await store.connection_open("u", "c2", ttl_s=30)
    assert first.came_online.online is True and first.came_online.last_seen_ms is None
    assert first.came_online.version > 0
    assert second.came_online is None
    assert await state_of(store, "u") == (first.came_online, False)


async def test_closing_one_of_two_connections_starts_no_grace_and_keeps_the_user_online(store):
    await store.connection_open("u", "c1", ttl_s=30)
    await store.connection_open("u", "c2", ttl_s=30)
    closed = await store.connection_close("u", "c1", grace_s=0.1)
    assert closed.offline_due_in_s is None
    await asyncio.sleep(0.2)
    assert (await store.offline_claim("u", last_seen_ttl_s=DAY)).went_offline is None
    assert (await state_of(store, "u"))[0].online is True


async def test_the_last_close_turns_the_user_offline_only_after_the_grace(store):
    online = (await store.connection_open("u", "c1", ttl_s=30)).came_online
    closed = await store.connection_close("u", "c1", grace_s=0.3)
    assert closed.count == 0 and closed.offline_due_in_s == 0.3
    early = await store.offline_claim("u", last_seen_ttl_s=DAY)
    assert early.went_offline is None and 0 < early.retry_in_s <= 0.3
    assert await state_of(store, "u") == (online, False)
    await asyncio.sleep(0.35)
    assert (await state_of(store, "u"))[1] is True  # a claim is due
    claim = await store.offline_claim("u", last_seen_ttl_s=DAY)
    assert claim.went_offline is not None
    assert claim.went_offline.online is False and claim.went_offline.version > online.version
    assert claim.went_offline.last_seen_ms is not None
    assert await state_of(store, "u") == (claim.went_offline, False)
    # exactly once: the transition is not handed out again
    assert (await store.offline_claim("u", last_seen_ttl_s=DAY)).went_offline is None


async def test_a_reconnect_within_the_grace_is_no_transition_at_all(store):
    online = (await store.connection_open("u", "c1", ttl_s=30)).came_online
    await store.connection_close("u", "c1", grace_s=0.2)
    reopened = await store.connection_open("u", "c2", ttl_s=30)
    assert reopened.came_online is None
    await asyncio.sleep(0.25)
    assert await store.offline_due(limit=10) == []
    assert (await store.offline_claim("u", last_seen_ttl_s=DAY)).went_offline is None
    assert await state_of(store, "u") == (online, False)


async def test_reconnecting_after_going_offline_is_a_new_transition(store):
    await store.connection_open("u", "c1", ttl_s=30)
    await store.connection_close("u", "c1", grace_s=0)
    await asyncio.sleep(0.01)
    offline = (await store.offline_claim("u", last_seen_ttl_s=DAY)).went_offline
    assert offline is not None
    again = await store.connection_open("u", "c2", ttl_s=30)
    assert again.came_online.online is True and again.came_online.version > offline.version


async def test_versions_keep_growing_after_the_state_was_forgotten(store):
    first = (await store.connection_open("u", "c1", ttl_s=30)).came_online
    await store.connection_close("u", "c1", grace_s=0)
    await asyncio.sleep(0.01)
    offline = (await store.offline_claim("u", last_seen_ttl_s=0.1)).went_offline
    await asyncio.sleep(0.15)  # last_seen forgotten: the state reads "never seen"
    assert (await state_of(store, "u"))[0].version == 0
    again = (await store.connection_open("u", "c2", ttl_s=30)).came_online
    assert first.version < offline.version < again.version


async def test_expired_entries_of_a_crashed_process_are_swept_once_by_concurrent_claims(store):
    await store.connection_open("crashed", "c1", ttl_s=0.2)
    await store.connection_open("crashed", "c2", ttl_s=0.2)
    await store.connection_open("alive", "c3", ttl_s=0.2)
    assert await store.offline_due(limit=10) == []
    for _ in range(3):
        await asyncio.sleep(0.1)
        await store.connections_touch([("alive", "c3")], ttl_s=0.2)
    await asyncio.sleep(0.05)
    assert await store.offline_due(limit=10) == ["crashed"]
    assert (await state_of(store, "crashed"))[1] is True
    claims = await asyncio.gather(*(store.offline_claim("crashed", last_seen_ttl_s=DAY) for _ in range(8)))
    flipped = [c.went_offline for c in claims if c.went_offline is not None]
    assert len(flipped) == 1 and flipped[0].online is False and flipped[0].last_seen_ms is not None
    assert await store.offline_due(limit=10) == []
    assert (await state_of(store, "alive"))[0].online is True


async def test_offline_users_forget_last_seen_after_its_ttl(store):
    await store.connection_open("u", "c1", ttl_s=30)
    await store.connection_close("u", "c1", grace_s=0)
    await asyncio.sleep(0.01)
    await store.offline_claim("u", last_seen_ttl_s=0.2)
    assert (await state_of(store, "u"))[0].last_seen_ms is not None
    await asyncio.sleep(0.3)
    assert await state_of(store, "u") == (PresenceState(online=False, last_seen_ms=None, version=0), False)


async def test_last_seen_is_when_the_last_connection_closed(store):
    await store.connection_open("u", "c1", ttl_s=30)
    closed_before = await _clock_ms(store)
    await store.connection_close("u", "c1", grace_s=0.1)
    closed_after = await _clock_ms(store)
    await asyncio.sleep(0.15)
    went = (await store.offline_claim("u", last_seen_ttl_s=DAY)).went_offline
    assert closed_before <= went.last_seen_ms <= closed_after


async def _clock_ms(store):
    if isinstance(store, MemoryPresenceStore):
        return store._now()
    seconds, micros = redis.Redis.from_url(settings.REDIS_URL).time()
    return seconds * 1000 + micros // 1000


async def test_redis_leaves_only_offline_statuses_that_expire_once_everyone_is_gone():
    store = RedisPresenceStore()
    await store.connection_open("u", "c1", ttl_s=0.2)  # crashed: never closed
    await store.connection_open("w", "c2", ttl_s=30)
    await store.connection_close("w", "c2", grace_s=0)
    await asyncio.sleep(0.3)
    for user_id in await store.offline_due(limit=10):
        await store.offline_claim(user_id, last_seen_ttl_s=DAY)
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = settings.REDIS_PREFIX
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*"))
    assert keys == [f"{prefix}:presence:u", f"{prefix}:presence:w"]
    assert all(0 < client.pttl(k) <= DAY * 1000 for k in keys)
