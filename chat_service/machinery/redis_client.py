"""Redis clients for the service's own keys (presence, rate limits).

redis-py's asyncio connections belong to the event loop that opened them, so the async
client is cached per running loop. ``None`` when REDIS_URL is unset (embedded default).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from functools import cache
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import NoScriptError

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync_client: redis.Redis | None = None
_lock = threading.Lock()

_CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 5,  # our own commands never block server-side
    "socket_connect_timeout": 5,
    "health_check_interval": 30,
    # A pooled connection that died with a Redis restart fails its next command; retry it
    # once on a new connection (the broadcast hosts in settings do the same).
    "retry_on_error": [redis.exceptions.ConnectionError],
}


@cache
def script_sha(script: str) -> str:
    """The SHA-1 Redis names a Lua script by (EVALSHA)."""
    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis' own naming


async def run_script(script: str, numkeys: int, *args: Any) -> Any:
    """Run a Lua script by its SHA (the text crosses the wire only when Redis does not
    know it yet: first use, or after a restart)."""
    client = get_async_redis()
    try:
        return await client.evalsha(script_sha(script), numkeys, *args)
    except NoScriptError:
        return await client.eval(script, numkeys, *args)


def run_script_sync(script: str, numkeys: int, *args: Any) -> Any:
    client = get_sync_redis()
    try:
        return client.evalsha(script_sha(script), numkeys, *args)
    except NoScriptError:
        return client.eval(script, numkeys, *args)


def redis_enabled() -> bool:
    return bool(settings.REDIS_URL)


def key(*parts: str) -> str:
    return ":".join((settings.REDIS_PREFIX, *parts))


def _url() -> str:
    url: str | None = settings.REDIS_URL
    if not url:
        raise RuntimeError("REDIS_URL is not set: Redis is not in use (redis_enabled() is False)")
    return url


def get_async_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(_url(), max_connections=settings.REDIS_MAX_CONNECTIONS, **_CLIENT_OPTIONS)
        _async_clients[loop] = client
    return client


def get_sync_redis() -> redis.Redis:
    global _sync_client
    with _lock:
        if _sync_client is None:
            _sync_client = redis.Redis.from_url(_url(), max_connections=64, **_CLIENT_OPTIONS)
        return _sync_client
