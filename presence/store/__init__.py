"""The connection registry: one interface, a Redis and a memory implementation.

Each live WebSocket is an entry ``(user_id, conn_id)`` that expires ``ttl_s`` after it
was last touched. The supervisor of each process touches its sockets' entries well
inside the TTL, so a process that dies without running its disconnect handlers
(kill -9) loses its entries within ``ttl_s``. Counting live entries gives the per-user
connection cap and, for sellers, the online indicator.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Protocol


class PresenceStore(Protocol):
    async def connection_add(self, user_id: str, conn_id: str, *, ttl_s: float) -> int:
        """Register a connection; return the user's live connection count including it."""

    async def connection_remove(self, user_id: str, conn_id: str) -> int:
        """Forget a connection; return the user's remaining live connection count."""

    async def connections_touch(self, entries: Iterable[tuple[str, str]], *, ttl_s: float) -> None:
        """Extend the life of live connections (only those still registered)."""

    async def connection_count(self, user_id: str) -> int:
        """The user's live (unexpired) connection count."""


@lru_cache(maxsize=1)
def get_presence_store() -> PresenceStore:
    from chat_service.redis_client import redis_enabled

    if redis_enabled():
        from presence.store.redis_store import RedisPresenceStore

        return RedisPresenceStore()
    from presence.store.memory import MemoryPresenceStore

    return MemoryPresenceStore()
