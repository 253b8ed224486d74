"""The broker of a real deployment: Redis pub/sub, one subscribed connection per shard.

Topics are spread over the configured Redis hosts the way channels-redis spreads its
layer's groups (``channels_redis.utils``: the same host list format, the same
consistent hash), so adding a host moves a share of the topics to it. Per host and
process: one connection subscribed to this process's topics (read by one task), and a
small pool for publishes. Publishes of one call go to each host in one pipeline.

The reader keeps a FIFO of waiters per topic: ``subscribe`` returns when Redis confirmed
the subscription, so a caller that reads PostgreSQL afterwards cannot miss a publish.
After a connection error redis-py reconnects and subscribes again on the next read;
whatever was published meanwhile is lost, so the hub's reset listeners run (the
supervisor then compares every joined thread with PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio as aioredis
from channels_redis.utils import _consistent_hash, create_pool, decode_hosts
from django.conf import settings

from chat_service.machinery.broadcast import Hub, Publication

log = logging.getLogger(__name__)

SUBSCRIBE_CONFIRM_TIMEOUT_S = 5.0
RECONNECT_PAUSE_S = 0.5


def _channel(topic: str) -> str:
    return f"{settings.REDIS_PREFIX}:{topic}"


def _shard_index(channel: str, count: int) -> int:
    return _consistent_hash(channel, count)


class _Shard:
    def __init__(self, host: dict[str, Any], hub: Hub) -> None:
        self.hub = hub
        self.client = aioredis.Redis(connection_pool=create_pool(host))
        self.pubsub = self.client.pubsub()
        self.waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self.reader: asyncio.Task[None] | None = None
        # redis-py's PubSub takes its connection on its first command: concurrent first
        # subscribes would each take one, and only the last would be read. Commands are
        # sent one at a time (not their confirmations: those are awaited outside).
        self.sending = asyncio.Lock()
        self.prefix_length = len(settings.REDIS_PREFIX) + 1

    async def subscribe(self, channel: str) -> None:
        confirmed = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(channel, deque()).append(confirmed)
        try:
            async with self.sending:
                await self.pubsub.subscribe(channel)
        except BaseException:
            self._forget(channel, confirmed)
            raise
        if self.reader is None or self.reader.done():
            self.reader = asyncio.get_running_loop().create_task(self._read(), name="broadcast-reader")
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_CONFIRM_TIMEOUT_S)
        except TimeoutError:
            # Sent, not confirmed yet: delivery starts when Redis gets to it; the
            # supervisor's sync covers anything published before.
            log.warning("subscription to %s not confirmed within %ss", channel, SUBSCRIBE_CONFIRM_TIMEOUT_S)
            self._forget(channel, confirmed)

    def _forget(self, channel: str, confirmed: asyncio.Future[None]) -> None:
        waiters = self.waiting.get(channel)
        if waiters is not None and confirmed in waiters:
            waiters.remove(confirmed)
            if not waiters:
                del self.waiting[channel]

    async def unsubscribe(self, channel: str) -> None:
        async with self.sending:
            await self.pubsub.unsubscribe(channel)

    async def publish(self, publications: list[Publication]) -> None:
        if len(publications) == 1:
            await self.client.publish(*publications[0])
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for channel, data in publications:
                pipe.publish(channel, data)
            await pipe.execute()

    async def _read(self) -> None:
        lost = False
        while True:
            try:
                message = await self.pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis went away: redis-py reconnects on the next read
                if not lost:
                    log.warning("broadcast connection lost; reconnecting", exc_info=True)
                lost = True
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
            if lost:
                lost = False
                log.warning("broadcast connection back; syncing joined threads")
                self.hub.reset()
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            if kind == "message":
                await self.hub.dispatch(channel[self.prefix_length :], message["data"])
            elif kind == "subscribe":
                waiters = self.waiting.get(channel)
                if waiters:
                    waiter = waiters.popleft()
                    if not waiters:
                        del self.waiting[channel]
                    if not waiter.done():
                        waiter.set_result(None)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            try:
                await self.reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await self.pubsub.aclose()
        await self.client.aclose(close_connection_pool=True)


class RedisBroker:
    def __init__(self, hub: Hub) -> None:
        self.shards = [_Shard(host, hub) for host in decode_hosts(settings.BROADCAST["HOSTS"])]

    def _shard(self, channel: str) -> _Shard:
        return self.shards[_shard_index(channel, len(self.shards))]

    async def subscribe(self, topic: str) -> None:
        channel = _channel(topic)
        await self._shard(channel).subscribe(channel)

    async def unsubscribe(self, topic: str) -> None:
        channel = _channel(topic)
        await self._shard(channel).unsubscribe(channel)

    async def publish(self, publications: list[Publication]) -> None:
        by_shard: dict[int, list[Publication]] = {}
        for topic, data in publications:
            channel = _channel(topic)
            by_shard.setdefault(_shard_index(channel, len(self.shards)), []).append((channel, data))
        for index, batch in by_shard.items():
            try:
                await self.shards[index].publish(batch)
            except Exception:  # noqa: BLE001 - committed already; cursors and the sync recover it
                log.exception("publish failed (%d messages)", len(batch))

    async def close(self) -> None:
        for shard in self.shards:
            await shard.close()


# --- publishing from synchronous code ------------------------------------------------------------
_sync_clients: list[redis.Redis] | None = None


def _sync_shards() -> list[redis.Redis]:
    global _sync_clients
    if _sync_clients is None:
        clients = []
        for host in decode_hosts(settings.BROADCAST["HOSTS"]):
            options = dict(host)
            address = options.pop("address", None)
            options["max_connections"] = min(64, options.get("max_connections") or 64)
            if address is not None:
                clients.append(redis.Redis(connection_pool=redis.ConnectionPool.from_url(address, **options)))
            else:
                clients.append(redis.Redis(connection_pool=redis.ConnectionPool(**options)))
        _sync_clients = clients
    return _sync_clients


def publish_sync(publications: Iterable[Publication]) -> None:
    shards = _sync_shards()
    by_shard: dict[int, list[Publication]] = {}
    for topic, data in publications:
        channel = _channel(topic)
        by_shard.setdefault(_shard_index(channel, len(shards)), []).append((channel, data))
    for index, batch in by_shard.items():
        try:
            pipe = shards[index].pipeline(transaction=False)
            for channel, data in batch:
                pipe.publish(channel, data)
            pipe.execute()
        except Exception:  # noqa: BLE001 - see RedisBroker.publish
            log.exception("publish failed (%d messages)", len(batch))
