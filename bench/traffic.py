"""Traffic: many real WebSocket peers in one asyncio loop, and what they saw.

The load generator (bench/loadgen.py) and the resilience suite (tests/resilience/) drive
the service with these peers; they speak the wire protocol of docs/protocol.md directly
on ``websockets`` (the project's ``ChatClient`` queues every frame for a reader, which is
right for tests of single exchanges and too slow for thousands of sockets per process).

A ``ServicePeer`` is one user's socket joined to one order's thread. It behaves as the
chat widget does: heartbeat pings, reconnect with jitter when the socket drops, rejoin
with ``since_seq`` = the last seq it saw, and a ``message.send`` resent with the same
``client_msg_id`` until acknowledged. It records every seq it is shown (join replay, the
replies to its own messages (protocol 2: the sender's element of the stream) and
pushes, in arrival order), so that ``StreamAudit`` can say, against the stored log, what
was lost, duplicated or out of order.

A ``BaselinePeer`` is a socket of the baseline (bench/baseline/, the Channels tutorial's
chat), a ``FloorPeer`` one of the floor (bench/floor/, a bare broadcast on Daphne); both
speak ``{"message": "<user_id>:<id>"}`` frames: no seq, no ack, no replay; they record
the message ids they receive and send.

Latency is measured from the moment a sender hands a message to its socket to the moment
the other party's socket receives it; both ends live in the same process, so one clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import websockets

OPEN_TIMEOUT_S = 20.0
ACK_TIMEOUT_S = 30.0
RECONNECT_BACKOFF_MAX_S = 5.0
now = time.perf_counter


@dataclass(frozen=True, slots=True)
class Party:
    user_id: str
    token: str


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    order_id: str
    buyer: Party
    seller: Party

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThreadPlan:
        return cls(data["order_id"], Party(**data["buyer"]), Party(**data["seller"]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "buyer": {"user_id": self.buyer.user_id, "token": self.buyer.token},
            "seller": {"user_id": self.seller.user_id, "token": self.seller.token},
        }


@dataclass(slots=True)
class Counters:
    """What went wrong at the socket level, across all peers of a run."""

    handshake_errors: int = 0
    handshake_error_kinds: dict[str, int] = field(default_factory=dict)
    drops: int = 0  # sockets closed by the server or the network (not by us)
    close_codes: dict[str, int] = field(default_factory=dict)
    error_replies: dict[str, int] = field(default_factory=dict)
    resends: int = 0

    def handshake_error(self, exc: BaseException) -> None:
        self.handshake_errors += 1
        kind = type(exc).__name__
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is not None:
            kind = f"{kind}:{status}"
        self.handshake_error_kinds[kind] = self.handshake_error_kinds.get(kind, 0) + 1

    def closed(self, code: int | None) -> None:
        self.drops += 1
        self.close_codes[str(code)] = self.close_codes.get(str(code), 0) + 1

    def error_reply(self, code: str) -> None:
        self.error_replies[code] = self.error_replies.get(code, 0) + 1


class Latencies:
    """Send-to-receipt latencies of one measurement window, in seconds."""

    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}
        self.samples: list[float] = []
        self.recording = True

    def sent(self, message_id: str) -> None:
        self.sent_at[message_id] = now()

    def received(self, message_id: str | None) -> None:
        started = self.sent_at.pop(message_id, None) if message_id is not None else None
        if started is not None and self.recording:
            self.samples.append(now() - started)

    def take(self) -> list[float]:
        samples, self.samples = self.samples, []
        return samples


def with_token(url: str, token: str | None) -> str:
    if token is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'token': token})}"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


class _Peer:
    """What every kind of peer shares: a reconnecting task, stop, and a network-style drop.
    Subclasses set the attributes below in __init__ and implement ``_run``."""

    _socket: Any
    _task: asyncio.Task[None] | None
    _stopping: bool
    synced_at: float | None
    jitter_s: float

    def start(self, *, immediately: bool = True) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(immediately))

    async def _run(self, immediately: bool) -> None:
        raise NotImplementedError

    async def _backoff(self, attempt: int) -> None:
        # Full jitter, growing with failures: a storm spreads out instead of hammering the
        # servers in lockstep.
        await asyncio.sleep(random.uniform(0, min(RECONNECT_BACKOFF_MAX_S, self.jitter_s * 2**attempt)))

    async def stop(self) -> None:
        self._stopping = True
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._socket.close(), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def drop(self) -> None:
        """Cut the TCP connection without a closing handshake, as a network failure does."""
        if self._socket is not None and self._socket.transport is not None:
            self.synced_at = None
            self._socket.transport.abort()

    @property
    def synced(self) -> bool:
        return self.synced_at is not None


class ServicePeer(_Peer):
    """One user's socket on one thread, with the widget's reconnect/rejoin/resend behaviour."""

    def __init__(
        self,
        urls: list[str],
        party: Party,
        order_id: str,
        *,
        counters: Counters,
        latencies: Latencies,
        jitter_s: float = 1.0,
        heartbeat: bool = True,
    ) -> None:
        self.urls = urls
        self.party = party
        self.order_id = order_id
        self.counters = counters
        self.latencies = latencies
        self.jitter_s = jitter_s
        self.heartbeat = heartbeat
        self.seen: list[int] = []  # every seq shown to this peer, in arrival order
        self.last_seq = 0  # the highest seq seen (what since_seq rejoins from)
        self.acked: dict[str, int] = {}  # client_msg_id -> seq, for messages this peer sent
        self.connected = asyncio.Event()
        self.synced_at: float | None = None  # when the last (re)join's replay completed
        self.connects = 0
        self._socket: Any = None
        self._refs = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._sends: set[str] = set()  # refs of message.send in flight on this socket
        self._sync_target = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self, immediately: bool) -> None:
        attempt = 0
        first = immediately
        while not self._stopping:
            if not first:
                await self._backoff(attempt)
            first = False
            url = self.urls[(self.connects + attempt) % len(self.urls)]
            try:
                socket = await websockets.connect(
                    with_token(url, self.party.token),
                    origin=origin_of(url),
                    open_timeout=OPEN_TIMEOUT_S,
                    max_size=2**20,
                    ping_interval=None,
                    compression=None,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every handshake failure is counted
                self.counters.handshake_error(exc)
                attempt += 1
                continue
            attempt = 0
            self.connects += 1
            self._socket = socket
            try:
                await self._session(socket)
            except (websockets.ConnectionClosed, OSError):
                pass
            finally:
                self.connected.clear()
                self.synced_at = None
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("socket closed"))
                self._pending.clear()
                self._sends.clear()
                if not self._stopping:
                    self.counters.closed(socket.close_code)

    async def _session(self, socket: Any) -> None:
        beat = None
        self._hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        reader = asyncio.get_running_loop().create_task(self._read(socket))
        try:
            hello = await self._first_frame(reader)
            if self.heartbeat:
                beat = asyncio.get_running_loop().create_task(self._beat(socket, hello["heartbeat_s"] * 0.8))
            join = await self._request(socket, "thread.join", order_id=self.order_id, since_seq=self.last_seq)
            if not join["ok"]:
                self.counters.error_reply(join["error"]["code"])
                raise ConnectionError(f"join refused: {join['error']}")
            for event in join["data"]["events"]:
                self._event(event)
            self._sync_target = join["data"]["last_seq"]
            if self.last_seq >= self._sync_target:
                self.synced_at = now()
            self.connected.set()
            await reader
        finally:
            if beat is not None:
                beat.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if not self._stopping and socket.transport is not None:
                socket.transport.abort()

    async def _first_frame(self, reader: asyncio.Task[None]) -> dict[str, Any]:
        done, _ = await asyncio.wait({self._hello, reader}, timeout=OPEN_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if self._hello not in done:
            raise ConnectionError("no hello")
        return self._hello.result()

    async def _read(self, socket: Any) -> None:
        async for raw in socket:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "thread.event":
                if frame.get("order_id") == self.order_id:
                    self._event(frame["event"])
            elif kind == "reply":
                ref = frame.get("ref")
                # Protocol 2: the reply to this socket's own message is its element of the
                # thread's stream (no thread.event follows for it), in this position.
                if ref in self._sends and frame.get("ok") and not frame["data"].get("duplicate"):
                    self._event(frame["data"]["event"])
                self._sends.discard(ref)
                future = self._pending.pop(ref, None)
                if future is not None and not future.done():
                    future.set_result(frame)
            elif kind == "hello":
                if not self._hello.done():
                    self._hello.set_result(frame)
            elif kind == "error":
                self.counters.error_reply(frame["error"]["code"])

    def _event(self, event: dict[str, Any]) -> None:
        seq = event["seq"]
        self.seen.append(seq)
        if seq > self.last_seq:
            self.last_seq = seq
        if self.synced_at is None and self._sync_target and self.last_seq >= self._sync_target:
            self.synced_at = now()
        if event.get("author_id") != self.party.user_id:
            self.latencies.received(event.get("client_msg_id"))

    async def _beat(self, socket: Any, every: float) -> None:
        while True:
            await asyncio.sleep(every * random.uniform(0.9, 1.0))
            await socket.send('{"type":"ping"}')

    async def _request(self, socket: Any, frame_type: str, **fields: Any) -> dict[str, Any]:
        ref = f"r{next(self._refs)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        if frame_type == "message.send":
            self._sends.add(ref)
        await socket.send(json.dumps({"type": frame_type, "ref": ref, **fields}))
        return await asyncio.wait_for(future, ACK_TIMEOUT_S)

    # --- sending -------------------------------------------------------------------------
    async def send(
        self, body: str = "", *, client_msg_id: str | None = None, give_up_after_s: float = 120.0
    ) -> int | None:
        """Send one message; resend (same client_msg_id) across reconnects until it is
        acknowledged. Returns its seq, or None if not acknowledged within the bound."""
        message_id = client_msg_id or uuid.uuid4().hex
        self.latencies.sent(message_id)
        deadline = now() + give_up_after_s
        tries = 0
        while now() < deadline:
            if not self.connected.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.connected.wait(), max(0.1, deadline - now()))
                continue
            if tries:
                self.counters.resends += 1
            tries += 1
            try:
                reply = await self._request(
                    self._socket,
                    "message.send",
                    order_id=self.order_id,
                    body=body or message_id,
                    client_msg_id=message_id,
                )
            except (TimeoutError, ConnectionError, websockets.ConnectionClosed, OSError):
                await asyncio.sleep(0.05)
                continue
            if reply["ok"]:
                seq = reply["data"]["event"]["seq"]
                self.acked[message_id] = seq
                return seq
            code = reply["error"]["code"]
            self.counters.error_reply(code)
            if code != "rate_limited":
                return None
            await asyncio.sleep(reply["error"].get("retry_after_s") or 0.5)
        return None


class _RoomPeer(_Peer):
    """A socket of a room chat that relays ``{"message": "<user_id>:<id>"}`` frames (the
    baseline and the floor speak the same): no seq, no ack, no replay; it records the
    message ids it receives and sends. Subclasses choose the URL."""

    def __init__(
        self, url: str, user_id: str, *, counters: Counters, latencies: Latencies, jitter_s: float = 1.0
    ) -> None:
        self.url = url
        self.user_id = user_id
        self.counters = counters
        self.latencies = latencies
        self.jitter_s = jitter_s
        self.received: list[str] = []
        self.sent: list[str] = []
        self.connected = asyncio.Event()
        self.synced_at: float | None = None
        self.connects = 0
        self._socket: Any = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self, immediately: bool) -> None:
        attempt = 0
        first = immediately
        while not self._stopping:
            if not first:
                await self._backoff(attempt)
            first = False
            try:
                socket = await websockets.connect(
                    self.url,
                    origin=origin_of(self.url),
                    open_timeout=OPEN_TIMEOUT_S,
                    max_size=2**20,
                    ping_interval=None,
                    compression=None,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.counters.handshake_error(exc)
                attempt += 1
                continue
            attempt = 0
            self.connects += 1
            self._socket = socket
            self.synced_at = now()  # a room has nothing to resync: joined = accepted
            self.connected.set()
            try:
                async for raw in socket:
                    message_id = json.loads(raw)["message"]
                    self.received.append(message_id)
                    if not message_id.startswith(self.user_id + ":"):
                        self.latencies.received(message_id)
            except (websockets.ConnectionClosed, OSError):
                pass
            finally:
                self.connected.clear()
                self.synced_at = None
                if not self._stopping:
                    self.counters.closed(socket.close_code)

    async def send(self, body: str = "", *, client_msg_id: str | None = None, give_up_after_s: float = 0) -> int | None:
        """Fire and forget (no ack exists)."""
        message_id = f"{self.user_id}:{client_msg_id or uuid.uuid4().hex}"
        if not self.connected.is_set():
            return None
        self.latencies.sent(message_id)
        try:
            await self._socket.send(json.dumps({"message": message_id}))
        except (websockets.ConnectionClosed, OSError):
            return None
        self.sent.append(message_id)
        return 0


class BaselinePeer(_RoomPeer):
    """A socket of the tutorial chat in room ``room``, on the server at ``base_url``."""

    def __init__(
        self, base_url: str, room: str, user_id: str, *, counters: Counters, latencies: Latencies, jitter_s: float = 1.0
    ) -> None:
        super().__init__(f"{base_url}chat/{room}/", user_id, counters=counters, latencies=latencies, jitter_s=jitter_s)


class FloorPeer(_RoomPeer):
    """A socket of the floor (bench/floor/, a bare broadcast on Daphne) in room ``room``.

    The floor's rooms are process-local, so every socket of a room must reach the same
    server: the server is ``base_urls[crc32(room) % len(base_urls)]``, the same for every
    peer and every run given the same list."""

    def __init__(
        self,
        base_urls: list[str],
        room: str,
        user_id: str,
        *,
        counters: Counters,
        latencies: Latencies,
        jitter_s: float = 1.0,
    ) -> None:
        base_url = base_urls[zlib.crc32(room.encode()) % len(base_urls)]
        super().__init__(f"{base_url}{room}/", user_id, counters=counters, latencies=latencies, jitter_s=jitter_s)


# --- audit -------------------------------------------------------------------------------
@dataclass(slots=True)
class StreamAudit:
    """One receiving socket's stream against the stored log of its thread."""

    expected: int = 0  # events stored (1..last_seq)
    lost: int = 0  # stored, never shown to the socket
    duplicated: int = 0  # shown more than once
    out_of_order: int = 0  # shown after a higher seq

    def add(self, other: StreamAudit) -> None:
        self.expected += other.expected
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.out_of_order += other.out_of_order

    def as_dict(self) -> dict[str, int]:
        return {
            "expected": self.expected,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "out_of_order": self.out_of_order,
        }


def audit_stream(seen: list[int], last_seq: int, *, first_seq: int = 1) -> StreamAudit:
    """Compare the seqs a socket was shown with the stored first_seq..last_seq."""
    audit = StreamAudit(expected=max(0, last_seq - first_seq + 1))
    shown: set[int] = set()
    high = 0
    for seq in seen:
        if seq in shown:
            audit.duplicated += 1
            continue
        shown.add(seq)
        if seq < high:
            audit.out_of_order += 1
        high = max(high, seq)
    audit.lost = sum(1 for seq in range(first_seq, last_seq + 1) if seq not in shown)
    return audit


def audit_baseline(
    sent: dict[str, list[str]], received: dict[str, list[str]], audience: Callable[[str], list[str]]
) -> StreamAudit:
    """Baseline peers: every message a peer sent should reach each peer of ``audience``."""
    audit = StreamAudit()
    for sender, message_ids in sent.items():
        wanted = set(message_ids)
        for receiver in audience(sender):
            got = received.get(receiver, [])
            counts: dict[str, int] = {}
            for message_id in got:
                counts[message_id] = counts.get(message_id, 0) + 1
            audit.expected += len(message_ids)
            audit.lost += sum(1 for m in message_ids if m not in counts)
            audit.duplicated += sum(c - 1 for m, c in counts.items() if m in wanted and c > 1)
    return audit


def percentiles(samples: list[float]) -> dict[str, float | int | None]:
    """p50/p99/max in milliseconds (None when there are no samples)."""
    if not samples:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"n": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2)}
