"""The per-process supervisor of live sockets.

One asyncio task per process (per event loop) instead of one timer per socket. Each tick
it closes sockets that went silent for 2 × heartbeat_s (4002) or whose token expired
(4001), and on a slower cadence it renews the sockets' connection-registry entries, so
that live sockets never expire from it while entries of a killed process do.

Nothing lost at the tail: every SYNC_S, and at once when the broker reconnected (the
hub's reset), it compares the cursor of every joined thread of the process with the
thread's last seq in PostgreSQL (one statement) and lets lagging sockets catch up.

Presence: every PRESENCE_SWEEP_S the supervisor sweeps sellers whose connection entries
expired (a killed process, any process) and turns them offline; and it runs the offline
check at the end of a grace period that a closing socket asked for
(``schedule_offline_check``). Both only *ask* the store, whose claim is atomic, so any
number of processes doing this at once push each transition once. A check lost with
this process (killed during a grace) is done by another process's sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Protocol

from django.conf import settings

from chat_service.machinery.broadcast import get_hub
from chat_service.machinery.presence_store import get_presence_store
from chat_service.protocol.closecodes import CloseCode
from chat_service.threads import selectors
from chat_service.transport.socket.streams import ThreadStream
from presence import services as presence

log = logging.getLogger(__name__)


class Supervised(Protocol):
    user_id: str
    conn_id: str
    last_received: float  # time.monotonic()
    token_expires_at: float | None  # time.time()

    streams: dict[str, ThreadStream]  # joined threads, each with its cursor

    async def close_with(self, code: CloseCode) -> None: ...

    async def sync_thread(self, order_id: str) -> None: ...


class Supervisor:
    def __init__(self) -> None:
        self._sockets: set[Supervised] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_touch = time.monotonic()
        self._last_sweep = time.monotonic()
        self._last_sync = time.monotonic()
        self._offline_checks: dict[str, asyncio.TimerHandle] = {}
        self._check_tasks: set[asyncio.Task[None]] = set()

    def register(self, socket: Supervised) -> None:
        self._sockets.add(socket)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="chat-supervisor")

    def sync_soon(self) -> None:
        """The broker may have lost messages: compare every joined thread now."""
        task = asyncio.get_running_loop().create_task(self._sync_now(), name="chat-sync")
        self._check_tasks.add(task)  # a strong reference until it ends
        task.add_done_callback(self._check_tasks.discard)

    async def _sync_now(self) -> None:
        try:
            await self._sync_threads()
        except Exception:  # noqa: BLE001 - the next tick tries again
            log.exception("sync after a broker reset failed")

    def unregister(self, socket: Supervised) -> None:
        self._sockets.discard(socket)

    def __len__(self) -> int:
        return len(self._sockets)

    def schedule_offline_check(self, user_id: str, delay_s: float) -> None:
        """Run the user's offline check in ``delay_s`` (replacing one already pending).

        Independent of the tick loop, which stops when the last socket goes: the last
        socket of a process closing is exactly when this is needed.
        """
        pending = self._offline_checks.pop(user_id, None)
        if pending is not None:
            pending.cancel()
        # A few ms late rather than early: Redis' clock decides when the grace is over.
        self._offline_checks[user_id] = asyncio.get_running_loop().call_later(
            delay_s + 0.02, self._start_offline_check, user_id
        )

    def _start_offline_check(self, user_id: str) -> None:
        self._offline_checks.pop(user_id, None)
        task = asyncio.get_running_loop().create_task(self._offline_check(user_id), name="presence-offline-check")
        self._check_tasks.add(task)  # a strong reference until it ends
        task.add_done_callback(self._check_tasks.discard)

    async def _offline_check(self, user_id: str) -> None:
        try:
            retry_in_s = await presence.presence_offline_check(user_id=user_id)
        except Exception:  # noqa: BLE001 - the sweep catches what this misses
            log.exception("presence offline check failed user=%s", user_id)
            return
        if retry_in_s is not None and user_id not in self._offline_checks:
            self.schedule_offline_check(user_id, retry_in_s)

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
            missing = await get_presence_store().connections_touch(
                [(s.user_id, s.conn_id) for s in self._sockets], ttl_s=ttl
            )
            await self._reregister(missing)
        if now_mono - self._last_sweep >= chat["PRESENCE_SWEEP_S"]:
            self._last_sweep = now_mono
            await presence.presence_sweep()
        if now_mono - self._last_sync >= chat["SYNC_S"]:
            self._last_sync = now_mono
            await self._sync_threads()

    async def _sync_threads(self) -> None:
        """Catch up sockets that are behind their threads.

        Pub/sub is at most once: a socket fills a gap when a later event of the
        thread arrives, but if the *last* events of a burst were dropped no later event
        comes. So every SYNC_S one query reads the last seq of every thread joined in this
        process, and each socket behind it reads the missing events from PostgreSQL.
        """
        self._last_sync = time.monotonic()
        cursors = [
            (s, order_id, stream.cursor) for s in list(self._sockets) for order_id, stream in list(s.streams.items())
        ]
        if not cursors:
            return
        last = await selectors.athreads_last_seq(order_ids=sorted({order_id for _, order_id, _ in cursors}))
        for socket, order_id, cursor in cursors:
            if last.get(order_id, 0) > cursor and socket in self._sockets:
                log.info("socket behind its thread, syncing user=%s order=%s", socket.user_id, order_id)
                await socket.sync_thread(order_id)

    async def _reregister(self, missing: list[tuple[str, str]]) -> None:
        """Register again the entries of sockets that are still alive here but whose
        entries are gone (Redis restarted, or this loop stalled past the TTL and a sweep
        turned the user grey): a live connection must count, and show its seller orange.

        A socket that closed meanwhile has left ``_sockets`` before its entry was removed
        (see ChatConsumer.websocket_disconnect), so it is skipped here; if it closes
        during the re-open itself, its entry lives on for at most one TTL.
        """
        if not missing:
            return
        alive = {(s.user_id, s.conn_id) for s in self._sockets}
        for user_id, conn_id in missing:
            if (user_id, conn_id) in alive:
                log.warning("connection entry was gone, registering it again user=%s", user_id)
                await presence.presence_connection_open(user_id=user_id, conn_id=conn_id)

    async def _close(self, socket: Supervised, code: CloseCode) -> None:
        self._sockets.discard(socket)
        try:
            await socket.close_with(code)
        except Exception:  # noqa: BLE001
            log.exception("closing a socket failed user=%s", socket.user_id)


_supervisors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Supervisor] = weakref.WeakKeyDictionary()


def get_supervisor() -> Supervisor:
    loop = asyncio.get_running_loop()
    supervisor = _supervisors.get(loop)
    if supervisor is None:
        supervisor = _supervisors[loop] = Supervisor()
        get_hub().on_reset(supervisor.sync_soon)
    return supervisor
