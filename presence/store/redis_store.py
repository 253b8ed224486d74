"""The connection registry in Redis, shared by every process.

One sorted set per user, ``<prefix>:conn:<user_id>``: member = connection id, score = the
time (ms, Redis' clock) at which the entry expires. The key itself expires with its
newest entry, so nothing is left behind once every connection of a user is gone.
"""

from __future__ import annotations

from collections.abc import Iterable

from chat_service.redis_client import get_async_redis, key

# KEYS[1] set; ARGV: conn_id, ttl_ms, mode ("add" | "remove" | "count").
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local mode = ARGV[3]
if mode == 'add' then
  local ttl = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], math.max(tonumber(newest[2]), now + ttl))
elseif mode == 'remove' then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: sets; ARGV: ttl_ms, then one conn_id per key. Touches only registered entries.
_TOUCH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  if redis.call('ZSCORE', k, ARGV[i + 1]) then
    redis.call('ZADD', k, 'XX', expires, ARGV[i + 1])
    redis.call('PEXPIREAT', k, expires)
  end
end
return #KEYS
"""

_TOUCH_BATCH = 500


def _set_key(user_id: str) -> str:
    return key("conn", user_id)


class RedisPresenceStore:
    async def _run(self, user_id: str, conn_id: str, ttl_s: float, mode: str) -> int:
        client = get_async_redis()
        return int(await client.eval(_SCRIPT, 1, _set_key(user_id), conn_id, int(ttl_s * 1000), mode))

    async def connection_add(self, user_id: str, conn_id: str, *, ttl_s: float) -> int:
        return await self._run(user_id, conn_id, ttl_s, "add")

    async def connection_remove(self, user_id: str, conn_id: str) -> int:
        return await self._run(user_id, conn_id, 0, "remove")

    async def connection_count(self, user_id: str) -> int:
        return await self._run(user_id, "", 0, "count")

    async def connections_touch(self, entries: Iterable[tuple[str, str]], *, ttl_s: float) -> None:
        client = get_async_redis()
        batch = list(entries)
        for start in range(0, len(batch), _TOUCH_BATCH):
            chunk = batch[start : start + _TOUCH_BATCH]
            await client.eval(
                _TOUCH, len(chunk), *(_set_key(u) for u, _ in chunk), int(ttl_s * 1000), *(c for _, c in chunk)
            )
