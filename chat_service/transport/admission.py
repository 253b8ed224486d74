"""May this user send a chat message now? The send limit, for both transports, and what a
socket's message costs in Redis before it is stored: one round trip.

The limit: ``SEND_RATE_COUNT`` messages per ``SEND_RATE_WINDOW_S`` per user, whichever
transport they come by (``send_budget``). HTTP asks only that (``message_admission_sync``).

Two questions, asked in one pipeline: may the sender send now (the per-user token bucket
of chat_service.machinery.ratelimit, shared by every process), and which of the thread's other
parties have a live connection (the presence registry)? Those see the message live, so
no notification row is written for them: the worker would only compose it and drop it
(docs/notifications.md).

The sender's socket knows the other party once it joined the thread or sent to it; until
then the second question is not asked and the row is written (the worker drops it if
the recipient turns out to have been online).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import NoScriptError

from chat_service.machinery.presence_store import get_presence_store
from chat_service.machinery.presence_store.redis_store import RedisPresenceStore
from chat_service.machinery.ratelimit import Decision, get_rate_limiter
from chat_service.machinery.ratelimit.redis_store import RedisRateLimiter
from chat_service.machinery.redis_client import get_async_redis


@dataclass(frozen=True, slots=True)
class Admission:
    decision: Decision
    online: frozenset[str]


def send_budget(user_id: str) -> tuple[str, int, float]:
    """The bucket, its size and its window: one definition of the send limit."""
    chat = settings.CHAT
    return f"send:{user_id}", chat["SEND_RATE_COUNT"], chat["SEND_RATE_WINDOW_S"]


def message_admission_sync(*, user_id: str) -> Decision:
    """The send limit alone (HTTP: no socket, so no live peer to ask about)."""
    bucket, limit, window_s = send_budget(user_id)
    return get_rate_limiter().hit_sync(bucket, limit=limit, window_s=window_s)


async def message_admission(*, user_id: str, peers: Sequence[str]) -> Admission:
    bucket, limit, window_s = send_budget(user_id)
    limiter, store = get_rate_limiter(), get_presence_store()
    if not isinstance(limiter, RedisRateLimiter) or not isinstance(store, RedisPresenceStore):
        decision = await limiter.hit(bucket, limit=limit, window_s=window_s)
        return Admission(decision, frozenset(await store.connected(peers)) if decision.allowed else frozenset())
    for attempt in (1, 2):
        async with get_async_redis().pipeline(transaction=False) as pipe:
            limiter.queue(pipe, bucket, limit=limit, window_s=window_s)
            store.queue_connected(pipe, peers)
            try:
                results = await pipe.execute()
            except NoScriptError:  # Redis restarted and forgot the script: load it, once
                if attempt == 2:
                    raise
                await get_async_redis().script_load(limiter.script)
                continue
        return Admission(limiter.decision(results[0]), frozenset(store.connected_of(peers, results[1:])))
    raise AssertionError("unreachable")
