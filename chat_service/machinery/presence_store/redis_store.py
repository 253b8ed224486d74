"""The presence store in Redis, shared by every process (see the package docstring).

Keys (all under ``REDIS_PREFIX``):

* ``conn:<user_id>``: sorted set, member = connection id, score = the time (ms, Redis'
  clock) at which the entry expires. The key itself expires with its newest entry.
* ``presence:<user_id>``: hash ``{on: "1"|"0", v: version, seen: ms}``; ``seen`` is the
  last moment a connection of the user was known alive (connect, touch, close); ``v`` is
  the time of the last transition (ms), at least the previous ``v`` + 1, so versions
  keep growing even after the hash was lost (a Redis restart, the TTL). No TTL
  while online; once offline it expires after ``last_seen_ttl_s`` (last_seen is kept
  that long, then the user reads as never seen).
* ``presence-due``: sorted set of the users that are online, score = the earliest time
  (ms) at which they may turn offline: the expiry of their newest connection entry, or
  the end of the grace period after their last connection was closed. The sweep reads
  it; it never holds an offline user.

Every operation that reads and writes these keys is one Lua script, so each runs
atomically with respect to every other process: that is what makes ``offline_claim`` a
compare-and-set (the caller that sees ``on == "1"`` and flips it is the only one).
Times come from Redis' TIME, so the clocks of the web processes do not matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from chat_service.machinery.presence_store import Claim, Closed, Opened, PresenceState
from chat_service.machinery.redis_client import get_async_redis, key, run_script

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function _next_version(hash, now)
  return math.max(now, tonumber(redis.call('HGET', hash, 'v') or 0) + 1)
end
"""

# KEYS: conn set, presence hash, due index; ARGV: conn_id, ttl_ms, user_id.
# Returns {count, came_online (0|1), version}.
_OPEN = (
    _NOW
    + """
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
local newest = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIREAT', KEYS[1], newest)
local came = 0
if redis.call('HGET', KEYS[2], 'on') ~= '1' then
  redis.call('HSET', KEYS[2], 'on', '1', 'v', _next_version(KEYS[2], now))
  came = 1
end
redis.call('HSET', KEYS[2], 'seen', now)
redis.call('PERSIST', KEYS[2])
-- GT also adds a missing member; it never moves a due time earlier.
redis.call('ZADD', KEYS[3], 'GT', newest, ARGV[3])
return {redis.call('ZCARD', KEYS[1]), came, tonumber(redis.call('HGET', KEYS[2], 'v'))}
"""
)

# KEYS: conn set, presence hash, due index; ARGV: conn_id, grace_ms, user_id.
# Returns {count, grace_started (0|1)}.
_CLOSE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREM', KEYS[1], ARGV[1])
local count = redis.call('ZCARD', KEYS[1])
if count > 0 or redis.call('HGET', KEYS[2], 'on') ~= '1' then
  return {count, 0}
end
redis.call('HSET', KEYS[2], 'seen', now)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[3])
return {0, 1}
"""
)

# KEYS: due index, then (conn set, presence hash) per entry; ARGV: ttl_ms, then
# (conn_id, user_id) per entry. Touches only registered entries: a closed (or already
# expired and claimed) connection is never brought back. Returns the (1-based) indexes
# of the entries that were not registered.
_TOUCH = (
    _NOW
    + """
local expires = now + tonumber(ARGV[1])
local missing = {}
for i = 1, (#KEYS - 1) / 2 do
  local set, hash = KEYS[2 * i], KEYS[2 * i + 1]
  local conn, user = ARGV[2 * i], ARGV[2 * i + 1]
  if redis.call('ZSCORE', set, conn) then
    redis.call('ZADD', set, 'XX', expires, conn)
    redis.call('PEXPIREAT', set, expires)
    if redis.call('HGET', hash, 'on') == '1' then
      redis.call('HSET', hash, 'seen', now)
      redis.call('ZADD', KEYS[1], 'XX', 'GT', expires, user)
    end
  else
    missing[#missing + 1] = i
  end
end
return missing
"""
)

# KEYS: due index, then one presence hash per user; ARGV: user ids.
# Returns per user {on (0|1), version, seen, claim_due (0|1)}.
_GET = (
    _NOW
    + """
local out = {}
for i = 2, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'on', 'v', 'seen')
  local on = h[1] == '1' and 1 or 0
  local due = 0
  if on == 1 then
    local at = redis.call('ZSCORE', KEYS[1], ARGV[i - 1])
    if (not at) or tonumber(at) <= now then due = 1 end
  end
  out[#out + 1] = {on, tonumber(h[2] or 0), tonumber(h[3] or -1), due}
end
return out
"""
)

# KEYS: conn set, presence hash, due index; ARGV: user_id, last_seen_ttl_ms.
# Returns {flipped (0|1), version, last_seen, retry_in_ms (-1 = none)}.
_CLAIM = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('HGET', KEYS[2], 'on') ~= '1' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {0, 0, 0, -1}
end
if redis.call('ZCARD', KEYS[1]) > 0 then
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
  redis.call('ZADD', KEYS[3], newest, ARGV[1])
  return {0, 0, 0, -1}
end
local due = redis.call('ZSCORE', KEYS[3], ARGV[1])
if due and tonumber(due) > now then
  return {0, 0, 0, tonumber(due) - now}
end
local seen = tonumber(redis.call('HGET', KEYS[2], 'seen') or now)
local v = _next_version(KEYS[2], now)
redis.call('HSET', KEYS[2], 'on', '0', 'seen', seen, 'v', v)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('ZREM', KEYS[3], ARGV[1])
return {1, v, seen, -1}
"""
)

_DUE = (
    _NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

# Bounded so that one script never holds Redis for long.
_BATCH = 500


def _conn_key(user_id: str) -> str:
    return key("conn", user_id)


def _state_key(user_id: str) -> str:
    return key("presence", user_id)


def _due_key() -> str:
    return key("presence-due")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisPresenceStore:
    async def connection_open(self, user_id: str, conn_id: str, *, ttl_s: float) -> Opened:
        count, came, version = await run_script(
            _OPEN, 3, _conn_key(user_id), _state_key(user_id), _due_key(), conn_id, _ms(ttl_s), user_id
        )
        state = PresenceState(online=True, last_seen_ms=None, version=int(version)) if came else None
        return Opened(count=int(count), came_online=state)

    async def connection_close(self, user_id: str, conn_id: str, *, grace_s: float) -> Closed:
        count, started = await run_script(
            _CLOSE, 3, _conn_key(user_id), _state_key(user_id), _due_key(), conn_id, _ms(grace_s), user_id
        )
        return Closed(count=int(count), offline_due_in_s=grace_s if started else None)

    async def connections_touch(self, entries: Iterable[tuple[str, str]], *, ttl_s: float) -> list[tuple[str, str]]:
        batch = list(entries)
        missing: list[tuple[str, str]] = []
        for start in range(0, len(batch), _BATCH):
            chunk = batch[start : start + _BATCH]
            keys = [_due_key()]
            args: list[str | int] = [_ms(ttl_s)]
            for user_id, conn_id in chunk:
                keys += [_conn_key(user_id), _state_key(user_id)]
                args += [conn_id, user_id]
            indexes = await run_script(_TOUCH, len(keys), *keys, *args)
            missing += [chunk[int(i) - 1] for i in indexes]
        return missing

    def queue_connected(self, pipe: Any, user_ids: Sequence[str]) -> None:
        """Add to ``pipe`` whether each user has a live connection (``connected_of`` reads
        the results): its set exists while its newest entry has not expired."""
        for user_id in user_ids:
            pipe.exists(_conn_key(user_id))

    @staticmethod
    def connected_of(user_ids: Sequence[str], results: Sequence[Any]) -> set[str]:
        return {user_id for user_id, exists in zip(user_ids, results, strict=True) if exists}

    async def connected(self, user_ids: Sequence[str]) -> set[str]:
        if not user_ids:
            return set()
        async with get_async_redis().pipeline(transaction=False) as pipe:
            self.queue_connected(pipe, user_ids)
            return self.connected_of(user_ids, await pipe.execute())

    async def connection_count(self, user_id: str) -> int:
        # A read-only script: purge-free, counts entries that have not expired yet.
        script = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"
        return int(await run_script(script, 1, _conn_key(user_id)))

    async def presence_get(self, user_ids: Sequence[str]) -> dict[str, tuple[PresenceState, bool]]:
        result: dict[str, tuple[PresenceState, bool]] = {}
        ids = list(dict.fromkeys(user_ids))
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            rows = await run_script(_GET, len(chunk) + 1, _due_key(), *map(_state_key, chunk), *chunk)
            for user_id, (on, version, seen, due) in zip(chunk, rows, strict=True):
                online = bool(on)
                last_seen = None if online or int(seen) < 0 else int(seen)
                result[user_id] = (PresenceState(online, last_seen, int(version)), bool(due))
        return result

    async def offline_claim(self, user_id: str, *, last_seen_ttl_s: float) -> Claim:
        flipped, version, seen, retry_ms = await run_script(
            _CLAIM, 3, _conn_key(user_id), _state_key(user_id), _due_key(), user_id, _ms(last_seen_ttl_s)
        )
        if flipped:
            return Claim(PresenceState(online=False, last_seen_ms=int(seen), version=int(version)), None)
        return Claim(None, int(retry_ms) / 1000 if int(retry_ms) >= 0 else None)

    async def offline_due(self, *, limit: int) -> list[str]:
        rows = await run_script(_DUE, 1, _due_key(), limit)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in rows]
