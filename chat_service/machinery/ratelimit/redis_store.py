"""Token buckets in Redis, shared by every process (one Lua script, one round trip).

The script is called by its SHA (EVALSHA) and loaded again when Redis forgot it (a
restart). ``queue`` puts a hit into a caller's pipeline, so that the socket's send costs
one round trip with its other Redis work (chat_service.transport.admission).
"""

from __future__ import annotations

from typing import Any

from chat_service.machinery.ratelimit import Decision
from chat_service.machinery.redis_client import key, run_script, run_script_sync, script_sha

# KEYS[1] bucket; ARGV: limit, window_ms. Uses the server's clock so processes agree.
_SCRIPT = """
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local rate = limit / window_ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or limit
local ts = tonumber(state[2]) or now
tokens = math.min(limit, tokens + (now - ts) * rate)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], window_ms * 2)
return {allowed, retry_ms}
"""


class RedisRateLimiter:
    script = _SCRIPT

    def queue(self, pipe: Any, bucket: str, *, limit: int, window_s: float) -> None:
        """Add a hit to ``pipe``; ``decision`` reads its result."""
        pipe.evalsha(script_sha(_SCRIPT), 1, key("rl", bucket), limit, int(window_s * 1000))

    @staticmethod
    def decision(result: Any) -> Decision:
        allowed, retry_ms = result
        return Decision(bool(allowed), int(retry_ms) / 1000.0)

    async def hit(self, bucket: str, *, limit: int, window_s: float) -> Decision:
        return self.decision(await run_script(_SCRIPT, 1, key("rl", bucket), limit, int(window_s * 1000)))

    def hit_sync(self, bucket: str, *, limit: int, window_s: float) -> Decision:
        return self.decision(run_script_sync(_SCRIPT, 1, key("rl", bucket), limit, int(window_s * 1000)))
