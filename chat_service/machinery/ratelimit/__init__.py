"""Per-user rate limits: one interface, a memory and a Redis implementation.

A token bucket per key: ``limit`` tokens, refilled at ``limit / window_s`` per second.
The Redis form is shared by every process; the memory form serves the embedded default.
Both have an async and a sync entry point (the socket is async, HTTP views are sync).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: float


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window_s: float) -> Decision: ...

    def hit_sync(self, key: str, *, limit: int, window_s: float) -> Decision: ...


@lru_cache(maxsize=1)
def get_rate_limiter() -> RateLimiter:
    from chat_service.machinery.redis_client import redis_enabled

    if redis_enabled():
        from chat_service.machinery.ratelimit.redis_store import RedisRateLimiter

        return RedisRateLimiter()
    from chat_service.machinery.ratelimit.memory_store import MemoryRateLimiter

    return MemoryRateLimiter()
