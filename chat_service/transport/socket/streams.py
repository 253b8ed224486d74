"""What one socket has shown of one thread: an ordered, gapless, duplicate-free stream.

``cursor`` is the last seq the socket was shown. A live event is shown only as
cursor + 1; one at or below the cursor is dropped; a jump is filled from PostgreSQL first.
So each socket sees each thread as one stream, whatever the broker drops, repeats or
reorders, and a socket that reconnects asks for everything after its last seq.

Two paths write to the stream:
* the broker's reader (``offer``), for every live event, and
* the socket's own work, which *holds* the stream (``held``): a join (the reply carries
  the first events), a catch-up, the socket's own message from before its write to its
  reply (the reply carries the event and is the stream's element for it: no thread.event
  follows, and since a repair waits for the hold, nothing shows the event from
  PostgreSQL first), the supervisor's sync.

While the stream is held, live events wait in a bounded list (``capacity``); past it they
are dropped and the stream reads PostgreSQL from its cursor instead, as it would for any
gap. When the holder is done, the stream delivers what waited, filling gaps from
PostgreSQL, before it lets live events through again. A live event that shows a gap
while nobody holds the stream starts a repair (a hold of its own) in a task, so the
broker's reader never waits for the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)

# read(after_seq, until_seq or None, limit) -> events (wire form), oldest first
Reader = Callable[[int, int | None, int], Awaitable[list[dict[str, Any]]]]
Sender = Callable[[str], Awaitable[None]]
Encoder = Callable[[dict[str, Any]], str]

PAGE = 200


class ThreadStream:
    __slots__ = (
        "_holders",
        "_lock",
        "_overflow",
        "_pending",
        "_read",
        "_send",
        "_encode",
        "_tasks",
        "capacity",
        "cursor",
        "order_id",
    )

    def __init__(self, order_id: str, *, send: Sender, read: Reader, encode: Encoder, capacity: int) -> None:
        self.order_id = order_id
        self.cursor = 0
        self.capacity = capacity
        self._send = send
        self._read = read
        self._encode = encode
        self._lock = asyncio.Lock()
        self._holders = 0
        self._pending: list[tuple[int, str]] = []
        self._overflow = False
        self._tasks: set[asyncio.Task[None]] = set()

    # --- live events -------------------------------------------------------------------------
    async def offer(self, seq: int, text: str) -> None:
        """A live event of the thread (its thread.event frame, encoded by the publisher)."""
        if self._holders:
            if len(self._pending) < self.capacity:
                self._pending.append((seq, text))
            else:
                self._overflow = True
            return
        if seq <= self.cursor:
            return
        if seq == self.cursor + 1:
            await self._send(text)
            self.cursor = seq
            return
        self._pending.append((seq, text))
        self._holders += 1  # from now on live events wait for the repair
        self._spawn(self._repair())

    async def _repair(self) -> None:
        try:
            async with self._lock:
                await self._drain()
        except Exception:  # noqa: BLE001 - the supervisor's sync retries what this missed
            log.exception("filling a gap failed order=%s", self.order_id)
        finally:
            self._holders -= 1

    # --- the socket's own work ---------------------------------------------------------------
    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the stream: live events wait; on exit they are delivered, gaps filled."""
        self._holders += 1
        try:
            async with self._lock:
                try:
                    yield
                except BaseException:
                    # What waited is not shown on the failed holder's behalf (a join
                    # refused for a stranger must show nothing); a repair shows it if
                    # the stream is kept.
                    self._repair_later()
                    raise
                await self._drain()
        finally:
            self._holders -= 1

    def _repair_later(self) -> None:
        if self._pending or self._overflow:
            self._holders += 1
            self._spawn(self._repair())

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def catch_up(self, until_seq: int | None = None) -> None:
        """Show everything after the cursor (up to ``until_seq``) from PostgreSQL.
        The caller holds the stream."""
        while until_seq is None or self.cursor < until_seq:
            events = await self._read(self.cursor, until_seq, PAGE)
            for event in events:
                if event["seq"] != self.cursor + 1:
                    log.warning(
                        "catch-up found seq %s after cursor %s order=%s", event["seq"], self.cursor, self.order_id
                    )
                    return
                await self._send(self._encode(event))
                self.cursor = event["seq"]
            if len(events) < PAGE:
                return

    async def own(self, seq: int, reply: str) -> None:
        """Answer the socket's own event with ``reply`` (which carries it): after every
        earlier event, in place of its thread.event. The caller held the stream since
        before the event was written."""
        if seq > self.cursor + 1:
            await self.catch_up(seq - 1)
        await self._send(reply)
        if seq == self.cursor + 1:
            self.cursor = seq

    async def _drain(self) -> None:
        while self._overflow or self._pending:
            if self._overflow:
                self._overflow = False
                self._pending.clear()
                await self.catch_up()
                continue
            waiting, self._pending = sorted(self._pending), []
            for seq, text in waiting:
                if seq <= self.cursor:
                    continue
                if seq > self.cursor + 1:
                    await self.catch_up(seq - 1)
                if seq == self.cursor + 1:
                    await self._send(text)
                    self.cursor = seq

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
