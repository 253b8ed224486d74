"""The connection registry in process memory (embedded default, one process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class MemoryPresenceStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._connections: dict[str, dict[str, float]] = {}  # user -> conn -> expires_at

    def _live(self, user_id: str) -> dict[str, float]:
        now = self._clock()
        entries = self._connections.get(user_id, {})
        for conn_id in [c for c, expires in entries.items() if expires <= now]:
            del entries[conn_id]
        if not entries:
            self._connections.pop(user_id, None)
        return entries

    async def connection_add(self, user_id: str, conn_id: str, *, ttl_s: float) -> int:
        entries = self._live(user_id)
        entries[conn_id] = self._clock() + ttl_s
        self._connections[user_id] = entries
        return len(entries)

    async def connection_remove(self, user_id: str, conn_id: str) -> int:
        entries = self._live(user_id)
        entries.pop(conn_id, None)
        if not entries:
            self._connections.pop(user_id, None)
        return len(entries)

    async def connections_touch(self, entries: Iterable[tuple[str, str]], *, ttl_s: float) -> None:
        expires = self._clock() + ttl_s
        for user_id, conn_id in entries:
            live = self._connections.get(user_id)
            if live is not None and conn_id in live:
                live[conn_id] = expires

    async def connection_count(self, user_id: str) -> int:
        return len(self._live(user_id))
