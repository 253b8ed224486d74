"""Redis clients for the service's own keys (presence, rate limits).

redis-py's asyncio connections belong to the event loop that opened them, so the async
client is cached per running loop. ``None`` when REDIS_URL is unset (embedded default).
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync_client: redis.Redis | None = None
_lock = threading.Lock()

_CLIENT_OPTIONS = {
    "socket_timeout": 5,  # our own commands never block server-side
    "socket_connect_timeout": 5,
    "health_check_interval": 30,
    # A pooled connection that died with a Redis restart fails its next command; retry it
    # once on a new connection (see the channel layer's hosts in settings).
    "retry_on_error": [redis.exceptions.ConnectionError],
}


def redis_enabled() -> bool:
    return bool(settings.REDIS_URL)


def key(*parts: str) -> str:
    return ":".join((settings.REDIS_PREFIX, *parts))


def get_async_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL, max_connections=settings.REDIS_MAX_CONNECTIONS, **_CLIENT_OPTIONS
        )
        _async_clients[loop] = client
    return client


def get_sync_redis() -> redis.Redis:
    global _sync_client
    with _lock:
        if _sync_client is None:
            _sync_client = redis.Redis.from_url(settings.REDIS_URL, max_connections=64, **_CLIENT_OPTIONS)
        return _sync_client
