"""The per-process supervisor of live sockets.

One asyncio task per process (per event loop) instead of one timer per socket. Each tick
it closes sockets that went silent for 2 × heartbeat_s (4002) or whose token expired
(4001), and on slower cadences it renews the sockets' connection-registry entries and
re-adds their channel-layer groups, so that live sockets never expire from either while
entries of a killed process do.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Protocol

from django.conf import settings

from chat_service.closecodes import CloseCode
from presence.store import get_presence_store

log = logging.getLogger(__name__)


class Supervised(Protocol):
    user_id: str
    conn_id: str
    last_received: float  # time.monotonic()
    token_expires_at: float | None  # time.time()

    async def close_with(self, code: CloseCode) -> None: ...

    async def refresh_groups(self) -> None: ...


class Supervisor:
    def __init__(self) -> None:
        self._sockets: set[Supervised] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_touch = time.monotonic()
        self._last_refresh = time.monotonic()

    def register(self, socket: Supervised) -> None:
        self._sockets.add(socket)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="chat-supervisor")

    def unregister(self, socket: Supervised) -> None:
        self._sockets.discard(socket)

    def __len__(self) -> int:
        return len(self._sockets)

    async def _run(self) -> None:
        tick = settings.CHAT["SUPERVISOR_TICK_S"]
        while self._sockets:
            await asyncio.sleep(tick)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the supervisor must outlive any one failure
                log.exception("supervisor tick failed")

    async def tick(self) -> None:
        chat = settings.CHAT
        now_mono, now_wall = time.monotonic(), time.time()
        silent_limit = 2 * chat["HEARTBEAT_S"]
        for socket in list(self._sockets):
            if socket.token_expires_at is not None and socket.token_expires_at <= now_wall:
                await self._close(socket, CloseCode.TOKEN_EXPIRED)
            elif now_mono - socket.last_received > silent_limit:
                await self._close(socket, CloseCode.HEARTBEAT_TIMEOUT)
        ttl = chat["CONNECTION_TTL_S"]
        if now_mono - self._last_touch >= ttl / 3:
            self._last_touch = now_mono
            await get_presence_store().connections_touch(
                [(s.user_id, s.conn_id) for s in self._sockets], ttl_s=ttl
            )
        if now_mono - self._last_refresh >= chat["GROUP_REFRESH_S"]:
            self._last_refresh = now_mono
            for socket in list(self._sockets):
                await socket.refresh_groups()

    async def _close(self, socket: Supervised, code: CloseCode) -> None:
        self._sockets.discard(socket)
        try:
            await socket.close_with(code)
        except Exception:  # noqa: BLE001
            log.exception("closing a socket failed user=%s", socket.user_id)


_supervisors: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Supervisor]" = weakref.WeakKeyDictionary()


def get_supervisor() -> Supervisor:
    loop = asyncio.get_running_loop()
    supervisor = _supervisors.get(loop)
    if supervisor is None:
        supervisor = _supervisors[loop] = Supervisor()
    return supervisor
