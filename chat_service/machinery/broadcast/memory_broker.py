"""The broker of the embedded default: one process, so a publish is a dispatch.

Every hub of the process (one per event loop; in practice daphne's) hears every publish
of a topic it subscribed to. Async publishes dispatch on the caller's loop after the
current step, as a remote broker would; sync publishes (views and jobs in threads) are
handed to each hub's loop thread-safely.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref

from chat_service.machinery.broadcast import Hub, Publication

log = logging.getLogger(__name__)

_brokers: weakref.WeakSet[MemoryBroker] = weakref.WeakSet()
_lock = threading.Lock()


class MemoryBroker:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.loop = asyncio.get_running_loop()
        self.topics: set[str] = set()
        with _lock:
            _brokers.add(self)

    async def subscribe(self, topic: str) -> None:
        self.topics.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self.topics.discard(topic)

    async def publish(self, publications: list[Publication]) -> None:
        _fan_out(publications)

    async def close(self) -> None:
        self.topics.clear()

    def receive(self, publications: list[Publication]) -> None:
        wanted = [(topic, data) for topic, data in publications if topic in self.topics]
        if wanted:
            self.loop.create_task(self._dispatch(wanted))

    async def _dispatch(self, publications: list[Publication]) -> None:
        for topic, data in publications:
            await self.hub.dispatch(topic, data)


def _fan_out(publications: list[Publication]) -> None:
    with _lock:
        brokers = list(_brokers)
    for broker in brokers:
        if broker.loop.is_closed():
            continue
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is broker.loop:
            broker.receive(publications)
        else:
            broker.loop.call_soon_threadsafe(broker.receive, publications)


def publish_sync(publications: list[Publication]) -> None:
    _fan_out(publications)
