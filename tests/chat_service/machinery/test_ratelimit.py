"""The same rate-limit behaviour from the memory and the Redis implementation."""

import asyncio

import pytest

from chat_service.machinery.ratelimit.memory_store import MemoryRateLimiter
from chat_service.machinery.ratelimit.redis_store import RedisRateLimiter


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["memory", "redis"])
def limiter(request):
    return MemoryRateLimiter() if request.param == "memory" else RedisRateLimiter()


async def test_allows_the_limit_then_refuses_with_a_retry_after(limiter):
    decisions = [await limiter.hit("send:u", limit=5, window_s=10) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert 0 < decisions[-1].retry_after_s <= 2.0  # one token refills in 10/5 s


async def test_buckets_are_per_key(limiter):
    for _ in range(3):
        await limiter.hit("send:a", limit=3, window_s=10)
    assert not (await limiter.hit("send:a", limit=3, window_s=10)).allowed
    assert (await limiter.hit("send:b", limit=3, window_s=10)).allowed


async def test_tokens_refill_over_time(limiter):
    for _ in range(2):
        await limiter.hit("send:r", limit=2, window_s=0.4)
    assert not (await limiter.hit("send:r", limit=2, window_s=0.4)).allowed
    await asyncio.sleep(0.25)  # > one token's refill time (0.2 s)
    assert (await limiter.hit("send:r", limit=2, window_s=0.4)).allowed


def test_sync_entry_point_shares_the_bucket(limiter):
    assert limiter.hit_sync("send:s", limit=1, window_s=10).allowed
    assert not limiter.hit_sync("send:s", limit=1, window_s=10).allowed


def test_memory_buckets_refill_by_the_injected_clock_and_prune():
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    assert limiter.hit_sync("k", limit=1, window_s=10).allowed
    assert not limiter.hit_sync("k", limit=1, window_s=10).allowed
    clock.now += 10
    assert limiter.hit_sync("k", limit=1, window_s=10).allowed
    clock.now += 100
    limiter.prune(idle_s=50)
    assert limiter._buckets == {}


def test_redis_buckets_are_shared_between_limiter_instances():
    first, second = RedisRateLimiter(), RedisRateLimiter()
    assert first.hit_sync("send:shared", limit=1, window_s=10).allowed
    assert not second.hit_sync("send:shared", limit=1, window_s=10).allowed
