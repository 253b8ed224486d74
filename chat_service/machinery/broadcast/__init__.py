"""Process-local fan-out: one subscription per topic and process, frames handed straight to sockets.

A *topic* is a thread (``t.<order_id>``), a user (``u.<user_id>``) or a seller's
indicator (``p.<seller_id>``). A process subscribes to a topic once, when its first
socket needs it, and drops it with its last; what arrives is decoded once per process
and handed to each of its sockets (``Subscriber.deliver``), which send the frame text
that the publisher encoded once (chat_service.fanout). No per-socket queue, task or
channel sits in between (docs/architecture.md).

Two brokers carry the topics between processes, behind one small interface with one
file each: ``redis_broker`` (Redis pub/sub, sharded over the hosts as channels-redis
shards its layer) and ``memory_broker`` (the embedded default: one process).

Invariants:
* ``subscribe`` returns once the broker delivers the topic to this process: a caller
  that subscribes, then reads PostgreSQL, misses nothing published after its read
  (everything is published after its commit).
* Delivery is at most once, like any pub/sub: a publish during a Redis restart is
  lost. PostgreSQL and each socket's cursor make it whole: a socket that sees a gap
  reads it, and after a broker reconnect every reset listener runs (the supervisor
  then syncs every joined thread with PostgreSQL).
* A publish never raises: what failed is logged and counted; the event is committed.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson
from django.conf import settings

log = logging.getLogger(__name__)

Envelope = dict[str, Any]
Publication = tuple[str, bytes]  # (topic, encoded envelope)


class Subscriber(Protocol):
    async def deliver(self, envelope: Envelope) -> None: ...


class Broker(Protocol):
    async def subscribe(self, topic: str) -> None: ...

    async def unsubscribe(self, topic: str) -> None: ...

    async def publish(self, publications: list[Publication]) -> None: ...

    async def close(self) -> None: ...


def thread_topic(order_id: str) -> str:
    return f"t.{order_id}"


def user_topic(user_id: str) -> str:
    return f"u.{user_id}"


def presence_topic(seller_id: str) -> str:
    return f"p.{seller_id}"


class Hub:
    """This event loop's subscriptions and their subscribers (one per process)."""

    def __init__(self, broker_factory: Callable[[Hub], Broker]) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._reset_listeners: list[Callable[[], None]] = []
        self.broker = broker_factory(self)

    # --- subscriptions ------------------------------------------------------------------------
    async def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.add(subscriber)
            ready = self._ready.get(topic)
            if ready is not None:
                await asyncio.shield(ready)
            return
        self._subscribers[topic] = {subscriber}
        ready = self._ready[topic] = asyncio.get_running_loop().create_future()
        try:
            await self.broker.subscribe(topic)
        finally:
            if not ready.done():
                ready.set_result(None)
            if self._ready.get(topic) is ready:
                del self._ready[topic]

    async def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is None or subscriber not in subscribers:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[topic]
            try:
                await self.broker.unsubscribe(topic)
            except Exception:  # noqa: BLE001 - a stale subscription costs a few ignored messages
                log.warning("unsubscribe failed topic=%s", topic, exc_info=True)

    def topics(self) -> list[str]:
        return list(self._subscribers)

    def subscribers(self, topic: str) -> set[Subscriber]:
        return self._subscribers.get(topic, set())

    # --- delivery --------------------------------------------------------------------------------
    async def dispatch(self, topic: str, data: bytes) -> None:
        """Hand one published envelope to every subscriber of ``topic`` in this process."""
        subscribers = self._subscribers.get(topic)
        if not subscribers:
            return
        try:
            envelope = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.error("undecodable envelope on topic=%s", topic)
            return
        for subscriber in tuple(subscribers):
            try:
                await subscriber.deliver(envelope)
            except Exception:  # noqa: BLE001 - one socket's failure must not starve the others
                log.exception("delivery failed topic=%s", topic)

    def on_reset(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the broker may have lost messages (a reconnect)."""
        self._reset_listeners.append(listener)

    def reset(self) -> None:
        for listener in list(self._reset_listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001
                log.exception("reset listener failed")

    async def publish(self, publications: Iterable[Publication]) -> None:
        batch = list(publications)
        if batch:
            await self.broker.publish(batch)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def existing_hub() -> Hub | None:
    """This event loop's hub if it has one (a loop with sockets), else None."""
    return _hubs.get(asyncio.get_running_loop())


def get_hub() -> Hub:
    """This event loop's hub (created on first use)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub(_broker_factory())
    return hub


async def hub_close() -> None:
    """Close this loop's hub and its broker connections (tests, shutdown)."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.broker.close()


def _broker_factory() -> Callable[[Hub], Broker]:
    if settings.REDIS_URL:
        from chat_service.machinery.broadcast.redis_broker import RedisBroker

        return RedisBroker
    from chat_service.machinery.broadcast.memory_broker import MemoryBroker

    return MemoryBroker


def publish_sync(publications: Iterable[Publication]) -> None:
    """Publish from synchronous code (HTTP views, the worker, the bridge): after commit."""
    batch = list(publications)
    if not batch:
        return
    if settings.REDIS_URL:
        from chat_service.machinery.broadcast.redis_broker import publish_sync as redis_publish

        redis_publish(batch)
    else:
        from chat_service.machinery.broadcast.memory_broker import publish_sync as memory_publish

        memory_publish(batch)
