"""The presence store in process memory (embedded default, one process).

Same semantics as the Redis store (see the package docstring). Every method runs
without an ``await`` between its reads and writes, so on one event loop each is atomic,
which is all the compare-and-set of ``offline_claim`` needs in a single process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from chat_service.machinery.presence_store import Claim, Closed, Opened, PresenceState


@dataclass(slots=True)
class _Status:
    online: bool
    version: int
    seen_ms: int
    due_ms: int | None  # set while online: the earliest time a claim may turn them offline
    expires_ms: int | None  # set while offline: when last_seen is forgotten


class MemoryPresenceStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._connections: dict[str, dict[str, int]] = {}  # user -> conn -> expires_at (ms)
        self._status: dict[str, _Status] = {}

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _live(self, user_id: str, now: int) -> dict[str, int]:
        entries = self._connections.get(user_id, {})
        for conn_id in [c for c, expires in entries.items() if expires <= now]:
            del entries[conn_id]
        if not entries:
            self._connections.pop(user_id, None)
        return entries

    def _state_of(self, user_id: str, now: int) -> _Status | None:
        status = self._status.get(user_id)
        if status is not None and status.expires_ms is not None and status.expires_ms <= now:
            del self._status[user_id]
            return None
        return status

    async def connection_open(self, user_id: str, conn_id: str, *, ttl_s: float) -> Opened:
        now = self._now()
        entries = self._live(user_id, now)
        entries[conn_id] = now + int(ttl_s * 1000)
        self._connections[user_id] = entries
        newest = max(entries.values())
        status = self._state_of(user_id, now)
        came_online = None
        if status is None or not status.online:
            version = max(now, (status.version if status else 0) + 1)
            status = self._status[user_id] = _Status(True, version, now, newest, None)
            came_online = PresenceState(online=True, last_seen_ms=None, version=version)
        status.seen_ms = now
        status.due_ms = max(status.due_ms or newest, newest)
        return Opened(count=len(entries), came_online=came_online)

    async def connection_close(self, user_id: str, conn_id: str, *, grace_s: float) -> Closed:
        now = self._now()
        entries = self._live(user_id, now)
        entries.pop(conn_id, None)
        if not entries:
            self._connections.pop(user_id, None)
        status = self._state_of(user_id, now)
        if entries or status is None or not status.online:
            return Closed(count=len(entries), offline_due_in_s=None)
        status.seen_ms = now
        status.due_ms = now + int(grace_s * 1000)
        return Closed(count=0, offline_due_in_s=grace_s)

    async def connections_touch(self, entries: Iterable[tuple[str, str]], *, ttl_s: float) -> list[tuple[str, str]]:
        now = self._now()
        expires = now + int(ttl_s * 1000)
        missing = []
        for user_id, conn_id in entries:
            live = self._connections.get(user_id)
            if live is None or live.get(conn_id, 0) <= now:
                missing.append((user_id, conn_id))
                continue  # closed, or expired and possibly claimed: never brought back
            live[conn_id] = expires
            status = self._status.get(user_id)
            if status is not None and status.online:
                status.seen_ms = now
                status.due_ms = max(status.due_ms or expires, expires)
        return missing

    async def connected(self, user_ids: Sequence[str]) -> set[str]:
        now = self._now()
        return {user_id for user_id in user_ids if self._live(user_id, now)}

    async def connection_count(self, user_id: str) -> int:
        return len(self._live(user_id, self._now()))

    async def presence_get(self, user_ids: Sequence[str]) -> dict[str, tuple[PresenceState, bool]]:
        now = self._now()
        result: dict[str, tuple[PresenceState, bool]] = {}
        for user_id in user_ids:
            status = self._state_of(user_id, now)
            if status is None:
                result[user_id] = (PresenceState(online=False, last_seen_ms=None, version=0), False)
                continue
            due = status.online and (status.due_ms is None or status.due_ms <= now)
            last_seen = None if status.online else status.seen_ms
            result[user_id] = (PresenceState(status.online, last_seen, status.version), due)
        return result

    async def offline_claim(self, user_id: str, *, last_seen_ttl_s: float) -> Claim:
        now = self._now()
        entries = self._live(user_id, now)
        status = self._state_of(user_id, now)
        if status is None or not status.online:
            return Claim(None, None)
        if entries:
            status.due_ms = max(entries.values())
            return Claim(None, None)
        if status.due_ms is not None and status.due_ms > now:
            return Claim(None, (status.due_ms - now) / 1000)
        status.online = False
        status.version = max(now, status.version + 1)
        status.due_ms = None
        status.expires_ms = now + int(last_seen_ttl_s * 1000)
        return Claim(PresenceState(online=False, last_seen_ms=status.seen_ms, version=status.version), None)

    async def offline_due(self, *, limit: int) -> list[str]:
        now = self._now()
        # The sweep's cadence is also when forgotten offline users leave memory.
        for user_id in [u for u, s in self._status.items() if s.expires_ms is not None and s.expires_ms <= now]:
            del self._status[user_id]
        due = [
            user_id
            for user_id, status in self._status.items()
            if status.online and status.due_ms is not None and status.due_ms <= now
        ]
        return due[:limit]
