"""The Redis pub/sub channel layer, with two changes measured by bench/ (docs/performance.md).

channels-redis' core layer costs a Redis round trip per message *received*: each process
pops its sockets' messages one BZPOPMIN at a time, so a process delivered at most a few
hundred messages a second however idle its CPU was (S1: p99 4.6 s at 100 msg/s). The
pub/sub layer reads every message of the process from one subscribed connection, as
fast as they come. Upstream it still has two limits that this module removes:

* **Publishes wait for each other.** Every publish of a process takes the same lock as
  subscribe and unsubscribe, so one slow round trip held up every socket's fan-out.
  Here publishes go straight to the connection pool (redis-py's pool is safe for
  concurrent commands); the lock still orders subscribes. Publishes of one coroutine
  are awaited in turn, so they stay in order.
* **Unbounded queues.** A socket whose consumer falls behind (a slow client, a stalled
  handler) queued without limit. Here each channel holds at most ``capacity`` messages
  and drops what exceeds it, as the core layer does: the socket's cursor sees the gap
  and backfills from PostgreSQL, and the supervisor's periodic sync repairs a dropped
  tail (docs/architecture.md, "Nothing lost").

What the pub/sub layer gives up (documented in docs/operations.md): messages published
while Redis restarts are lost (the log and since_seq recover them), and there is no
cross-process ``send`` to a channel that is not subscribed yet. Group membership lives
in each process's memory and in Redis' subscriptions: a killed process leaves nothing
behind in Redis.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
    _wrap_close,
)
from channels_redis.utils import decode_hosts

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1000


class _Shard(RedisSingleShardConnection):
    async def publish(self, channel: str, message: bytes) -> None:
        self._ensure_redis()
        await self._redis.publish(channel, message)

    def _receive_message(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        layer: _LoopLayer = self.channel_layer
        if name in layer.channels:
            layer.put(name, message["data"])
        else:
            for channel in layer.groups.get(name, ()):
                layer.put(channel, message["data"])


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, hosts: Any = None, capacity: int = DEFAULT_CAPACITY, **kwargs: Any) -> None:
        super().__init__(hosts, **kwargs)
        self.capacity = capacity
        self.dropped = 0
        self._shards = [_Shard(host, self) for host in decode_hosts(hosts)]

    def put(self, channel: str, data: bytes) -> None:
        queue: asyncio.Queue[bytes] | None = self.channels.get(channel)
        if queue is None:
            return
        if queue.qsize() >= self.capacity:
            self.dropped += 1
            log.info("channel %s over capacity (%d): message dropped", channel, self.capacity)
            return
        queue.put_nowait(data)


class ChatPubSubLayer(RedisPubSubChannelLayer):
    """``channels_redis.pubsub.RedisPubSubChannelLayer`` with concurrent publishes and
    bounded per-channel queues (CONFIG ``capacity``, default 1,000 messages)."""

    def _get_layer(self) -> _LoopLayer:
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer
