"""The WebSocket endpoint ``/ws/``: one ChatConsumer per socket, a plain ASGI application.

Transport only: parse a frame, call one service or selector, frame the answer. The
consumer never dies of a bad frame or of a bug in a handler: errors become reply/error
frames and the socket stays open.

It reads its frames itself (one at a time, in order) and is handed its pushes by the
process's hub (chat_service.machinery.broadcast), which calls ``deliver`` with envelopes whose
frame text was encoded once by the publisher: no channel layer, queue or task per
socket (docs/architecture.md, "How one message flows").

Delivery invariant: every joined thread is a ``ThreadStream`` (chat_service.transport.socket.streams):
the socket shows it as one gapless, duplicate-free, ordered stream, and the reply to
the socket's own message.send is that stream's element for its event.

Presence invariant: ``presence_versions[seller_id]`` = the version of the seller's state
this socket last showed (snapshot or push), for exactly the visible sellers it follows;
a presence push is shown only when newer.

Counts (protocol 2, docs/protocol.md): a socket joined to a thread derives its unread
changes from the thread's events and gets no unread.updated for them; any other socket
of the user gets one frame per event: ``notification`` (which carries the counts) or,
for a muted thread, ``unread.updated``. ``muted`` is loaded at connect, after the user's
topic was subscribed, and kept current by the mute pushes.
"""

from __future__ import annotations

import logging
import time
import uuid
from functools import partial
from typing import Any

import orjson
from django.conf import settings
from django.utils import timezone

from chat_service import fanout
from chat_service.machinery.broadcast import Envelope, existing_hub, get_hub, presence_topic, thread_topic, user_topic
from chat_service.machinery.db import db_call
from chat_service.protocol import frames
from chat_service.protocol.closecodes import CloseCode
from chat_service.protocol.commerce import order_summary
from chat_service.protocol.errors import BadRequest, ChatError, Internal, RateLimited
from chat_service.threads import selectors, services
from chat_service.threads.notifications import services as notifications
from chat_service.transport.admission import message_admission
from chat_service.transport.identity import Identity
from chat_service.transport.socket import commerce
from chat_service.transport.socket.streams import ThreadStream
from chat_service.transport.socket.supervisor import get_supervisor
from presence import services as presence

log = logging.getLogger(__name__)

ANSWERED = object()  # a handler that sent its reply itself
# Names this process in its sockets' ids (``<process>!<socket>``): a connection entry in
# the presence registry says which process holds it (logs, and the kill -9 tests).
PROCESS_ID = uuid.uuid4().hex[:12]
# Room left in a join reply for what the size estimate does not see (the has_more and
# last_seq values growing by a few digits).
REPLY_MARGIN_BYTES = 64


class ChatConsumer:
    @classmethod
    def as_asgi(cls) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await cls(scope, send).serve(receive)

        return app

    def __init__(self, scope: dict[str, Any], send: Any) -> None:
        chat = settings.CHAT
        self.scope = scope
        self._send = send
        self.limits = frames.Limits(chat["MAX_FRAME_BYTES"], chat["MAX_BODY_CHARS"])
        self.conn_id = f"{PROCESS_ID}!{uuid.uuid4().hex}"
        self.user_id = ""  # set at connect; frames are served only after it
        self.streams: dict[str, ThreadStream] = {}
        self.roles: dict[str, str] = {}  # order_id -> this user's role, once known
        self.peers: dict[str, tuple[str, ...]] = {}  # order_id -> the other parties, once known
        self.typing_sent: dict[str, float] = {}
        self.presence_versions: dict[str, int] = {}
        self.muted: set[str] = set()
        self.topics: set[str] = set()  # what this socket is subscribed to in the hub
        self.registered = False
        self.supervised = False
        self.ready = False  # frames are served once the connect completed
        self.closed = False
        self.released = False
        self.last_received = time.monotonic()
        self.token_expires_at: float | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    async def serve(self, receive: Any) -> None:
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    self.last_received = time.monotonic()
                    if self.ready:
                        await self.on_frame(message.get("text"), message.get("bytes"))
                elif kind == "websocket.connect":
                    await self.on_connect()
                elif kind == "websocket.disconnect":
                    return
        finally:
            await self._release()

    async def on_connect(self) -> None:
        identity: Identity | None = self.scope.get("identity")
        await self._send({"type": "websocket.accept"})
        if identity is None:
            expired = self.scope.get("identity_error") == "expired"
            await self.close_with(CloseCode.TOKEN_EXPIRED if expired else CloseCode.UNAUTHORIZED)
            return
        self.identity = identity
        self.user_id = identity.id
        self.token_expires_at = identity.expires_at
        try:
            await self._open()
        except Exception:  # noqa: BLE001 - Redis or the database failed: let the client retry
            log.exception("connection setup failed user=%s", self.user_id)
            await self.close_with(CloseCode.UNAVAILABLE)

    async def _open(self) -> None:
        """Register the connection, subscribe the user's topic, say hello."""
        chat = settings.CHAT
        assert self.user_id
        count = await presence.presence_connection_open(user_id=self.user_id, conn_id=self.conn_id)
        self.registered = True
        if count > chat["MAX_CONNECTIONS_PER_USER"]:
            log.info("connection cap reached user=%s count=%d", self.user_id, count)
            await self.close_with(CloseCode.TOO_MANY_CONNECTIONS)
            return
        await self._subscribe(user_topic(self.user_id))
        # After subscribing: a mute or count that changes meanwhile arrives afterwards.
        connected = await notifications.aconnection_opened(user_id=self.user_id, email=self.identity.email)
        self.muted = connected.muted
        get_supervisor().register(self)
        self.supervised = True
        self.ready = True
        await self.send_frame(
            frames.hello(
                user=self.identity.as_dict(),
                unread_total=connected.unread_total,
                heartbeat_s=chat["HEARTBEAT_S"],
                server_time=timezone.now(),
                max_frame_bytes=chat["MAX_FRAME_BYTES"],
                max_body_chars=chat["MAX_BODY_CHARS"],
            )
        )

    async def _release(self) -> None:
        """Clean up everything the socket registered; each step on its own. Once."""
        if self.released:
            return
        self.released = True
        self.ready = False
        if self.supervised:
            get_supervisor().unregister(self)
        for stream in self.streams.values():
            stream.close()
        hub = existing_hub()
        if hub is not None:
            for topic in list(self.topics):
                await hub.unsubscribe(topic, self)
        self.topics.clear()
        user_id = self.user_id
        if self.registered and user_id:
            try:
                closed = await presence.presence_connection_close(user_id=user_id, conn_id=self.conn_id)
                if closed.offline_due_in_s is not None:
                    get_supervisor().schedule_offline_check(user_id, closed.offline_due_in_s)
            except Exception:  # noqa: BLE001 - the entry expires and the sweep goes on
                log.warning("connection close failed user=%s", user_id, exc_info=True)
            try:
                await notifications.aconnection_closed(user_id=user_id)
            except Exception:  # noqa: BLE001 - at worst one push too many
                log.warning("recording the disconnect failed user=%s", user_id, exc_info=True)

    async def close_with(self, code: CloseCode) -> None:
        log.info("closing socket user=%s code=%s", self.user_id, code.name)
        self.ready = False
        if not self.closed:
            self.closed = True
            # A plain int: autobahn (under Daphne) refuses an IntEnum as a close code.
            await self._send({"type": "websocket.close", "code": int(code)})

    async def _subscribe(self, topic: str) -> None:
        self.topics.add(topic)
        await get_hub().subscribe(topic, self)

    async def _unsubscribe(self, topic: str) -> None:
        self.topics.discard(topic)
        await get_hub().unsubscribe(topic, self)

    # --- inbound frames -----------------------------------------------------------------------
    async def on_frame(self, text: str | None, data: bytes | None) -> None:
        try:
            command = frames.parse_frame(text, data, self.limits)
        except frames.FrameError as exc:
            await self.send_frame(frames.reply_error(exc.ref, exc.error))
            return
        ref = command.ref
        try:
            result = await self._handlers[type(command)](self, command)
        except ChatError as exc:
            await self.send_frame(frames.reply_error(ref, exc))
            return
        except Exception:  # noqa: BLE001 - a bug must not kill the socket
            log.exception("command %s failed user=%s", type(command).__name__, self.user_id)
            await self.send_frame(frames.reply_error(ref, Internal()))
            return
        if ref is not None and result is not ANSWERED:
            await self.send_frame(frames.reply_ok(ref, result))

    async def on_ping(self, command: frames.Ping) -> dict[str, Any]:
        await self.send_text('{"type":"pong"}')
        return {}

    async def on_thread_join(self, command: frames.ThreadJoin) -> object:
        order_id = command.order_id
        stream = self.streams.get(order_id)
        new = stream is None
        if stream is None:
            stream = self.streams[order_id] = ThreadStream(
                order_id,
                send=self.send_text,
                read=partial(self._read_events, order_id),
                encode=partial(_encode_event, order_id),
                capacity=settings.CHAT["STREAM_QUEUE"],
            )
        try:
            async with stream.held():
                if new:
                    # Subscribe before reading: an event committed after the read is
                    # published after it, so it arrives (and waits until the reply).
                    await self._subscribe(thread_topic(order_id))
                snapshot = await selectors.athread_join_snapshot(
                    order_id=order_id,
                    user_id=self.user_id,
                    since_seq=command.since_seq,
                    limit=settings.CHAT["JOIN_MAX_EVENTS"],
                )
                self.roles[order_id] = snapshot.role.value
                self.peers[order_id] = tuple(p for p in snapshot.parties if p != self.user_id)
                await self._join_reply(stream, command, snapshot)
        except BaseException:
            if new:
                stream.close()
                self.streams.pop(order_id, None)
                await self._unsubscribe(thread_topic(order_id))
            raise
        return ANSWERED

    async def _join_reply(
        self, stream: ThreadStream, command: frames.ThreadJoin, snapshot: selectors.JoinSnapshot
    ) -> None:
        """Answer the join within one frame's bytes (the cap Daphne applies to what it
        sends too), then stream what did not fit as thread.event frames."""
        since_seq, ref = command.since_seq, command.ref
        data: dict[str, Any] = {
            "order": order_summary(snapshot.order),
            "role": snapshot.role.value,
            "last_seq": snapshot.last_seq,
            "read_seq": snapshot.read_seq,
            "unread": snapshot.unread,
            "events": [],
            "has_more": True,
        }
        kept: list[bytes] = []
        cut = False
        if ref is not None:
            overhead = len(frames.encode(frames.reply_ok(ref, data)).encode()) + REPLY_MARGIN_BYTES
            encoded = [orjson.dumps(event) for event in snapshot.events]
            kept, cut = frames.fit_events(
                encoded, self.limits.max_frame_bytes - overhead, keep_newest=since_seq is None
            )
        elif since_seq is not None:
            cut = bool(snapshot.events)  # no reply to carry them: all are streamed
        seqs = [event["seq"] for event in snapshot.events]
        shown = seqs[len(seqs) - len(kept) :] if since_seq is None else seqs[: len(kept)]
        more_after = since_seq is not None and (snapshot.has_more or cut)
        if since_seq is None:
            cursor = max(shown[-1] if shown else 0, snapshot.last_seq)
        elif more_after:
            cursor = shown[-1] if shown else min(since_seq, snapshot.last_seq)
        else:
            cursor = max(shown[-1] if shown else 0, min(since_seq, snapshot.last_seq))
        stream.cursor = cursor
        if ref is not None:
            data["events"] = [orjson.Fragment(item) for item in kept]
            data["has_more"] = snapshot.has_more or cut
            data["last_seq"] = max(cursor, snapshot.last_seq)
            await self.send_frame(frames.reply_ok(ref, data))
        if more_after:
            await stream.catch_up()

    async def on_thread_leave(self, command: frames.ThreadLeave) -> dict[str, Any]:
        stream = self.streams.pop(command.order_id, None)
        if stream is not None:
            stream.close()
            await self._unsubscribe(thread_topic(command.order_id))
        return {}

    async def on_message_send(self, command: frames.MessageSend) -> object:
        stream = self.streams.get(command.order_id) if command.ref is not None else None
        if stream is None:
            outcome = await self._message_store(command)
            if command.ref is not None:
                await self.send_frame(frames.reply_ok(command.ref, _sent(outcome)))
        else:
            # Held from before the write until the reply: the reply is this socket's element
            # of the thread's stream for the event (after every earlier one), and nothing
            # can show the event from PostgreSQL before it (a repair waits for the hold).
            async with stream.held():
                outcome = await self._message_store(command)
                reply = frames.encode(frames.reply_ok(command.ref, _sent(outcome)))
                if outcome.created:
                    await stream.own(outcome.event.seq, reply)
                else:
                    await self.send_text(reply)
        await fanout.publish(outcome.publications)
        return ANSWERED

    async def _message_store(self, command: frames.MessageSend) -> services.SendOutcome:
        order_id = command.order_id
        admission = await message_admission(user_id=self.user_id, peers=self.peers.get(order_id, ()))
        if not admission.decision.allowed:
            raise RateLimited(retry_after_s=round(admission.decision.retry_after_s, 3))
        outcome = await services.amessage_send(
            user_id=self.user_id,
            order_id=order_id,
            client_msg_id=command.client_msg_id,
            body=command.body,
            online=admission.online,
        )
        if outcome.peers:
            self.peers[order_id] = outcome.peers
        return outcome

    async def on_thread_read(self, command: frames.ThreadRead) -> dict[str, Any]:
        outcome = await db_call(
            services.thread_read, user_id=self.user_id, order_id=command.order_id, seq=command.seq, origin=self.conn_id
        )
        return {"read_seq": outcome.read_seq, "unread": outcome.unread, "unread_total": outcome.unread_total}

    async def on_typing_start(self, command: frames.TypingStart) -> dict[str, Any]:
        order_id = command.order_id
        if order_id not in self.roles:
            buyer_id, _ = await selectors.athread_parties(order_id=order_id, user_id=self.user_id)
            self.roles[order_id] = "buyer" if buyer_id == self.user_id else "seller"
        now = time.monotonic()
        if now - self.typing_sent.get(order_id, float("-inf")) < settings.CHAT["TYPING_THROTTLE_S"]:
            return {"throttled": True}
        self.typing_sent[order_id] = now
        await fanout.publish(fanout.typing(order_id=order_id, user_id=self.user_id))
        return {"throttled": False}

    async def on_presence_subscribe(self, command: frames.PresenceSubscribe) -> dict[str, Any]:
        limit = settings.CHAT["PRESENCE_MAX_SUBSCRIPTIONS"]
        new = [s for s in command.seller_ids if s not in self.presence_versions]
        if len(self.presence_versions) + len(new) > limit:
            raise BadRequest(
                f"A socket can follow at most {limit} sellers; unsubscribe a page first.", field="seller_ids"
            )
        visible = await presence.presence_visible(seller_ids=command.seller_ids)
        # Subscribe before reading the states: a change meanwhile arrives afterwards and
        # the version check drops it if the snapshot already has it.
        for seller_id in new:
            if seller_id in visible:
                self.presence_versions[seller_id] = -1
                await self._subscribe(presence_topic(seller_id))
        snapshot = await presence.presence_snapshot(seller_ids=command.seller_ids, visible=visible)
        for entry in snapshot:
            if entry.visible and entry.seller_id in self.presence_versions:
                self.presence_versions[entry.seller_id] = max(
                    self.presence_versions[entry.seller_id], entry.state.version
                )
        return frames.presence_snapshot(snapshot)

    async def on_presence_unsubscribe(self, command: frames.PresenceUnsubscribe) -> dict[str, Any]:
        for seller_id in command.seller_ids:
            if self.presence_versions.pop(seller_id, None) is not None:
                await self._unsubscribe(presence_topic(seller_id))
        return {}

    async def on_commerce(self, command: frames.CommerceCommand) -> dict[str, Any]:
        kwargs = commerce.arguments(command.type, command.payload)
        result: dict[str, Any] = await db_call(
            commerce.perform, frame_type=command.type, user_id=self.user_id, kwargs=kwargs
        )
        return result

    async def on_notifications_mute(self, command: frames.NotificationsMute) -> dict[str, Any]:
        muted = await db_call(
            notifications.thread_mute_set, user_id=self.user_id, order_id=command.order_id, muted=command.muted
        )
        # The push to the user's topic updates every socket; this one knows it already.
        (self.muted.add if muted else self.muted.discard)(command.order_id)
        return {"order_id": command.order_id, "muted": muted}

    async def on_notifications_preferences(self, command: frames.NotificationsPreferences) -> dict[str, Any]:
        preferences: dict[str, Any] = await db_call(
            notifications.notification_preferences_update, user_id=self.user_id, email=command.email, push=command.push
        )
        return preferences

    _handlers: dict[type, Any] = {
        frames.Ping: on_ping,
        frames.ThreadJoin: on_thread_join,
        frames.ThreadLeave: on_thread_leave,
        frames.MessageSend: on_message_send,
        frames.ThreadRead: on_thread_read,
        frames.TypingStart: on_typing_start,
        frames.PresenceSubscribe: on_presence_subscribe,
        frames.PresenceUnsubscribe: on_presence_unsubscribe,
        frames.CommerceCommand: on_commerce,
        frames.NotificationsMute: on_notifications_mute,
        frames.NotificationsPreferences: on_notifications_preferences,
    }

    # --- pushes (called by the hub) -------------------------------------------------------------
    async def deliver(self, envelope: Envelope) -> None:
        """One published envelope for this socket (chat_service.fanout lists the kinds)."""
        if not self.ready:
            return
        kind = envelope["k"]
        if kind == "event":
            stream = self.streams.get(envelope["o"])
            if stream is not None:
                await stream.offer(envelope["s"], envelope["f"])
        elif kind == "unread":
            order_id = envelope["o"]
            if envelope.get("x") == self.conn_id or (envelope["d"] and order_id in self.streams):
                return
            note = envelope["n"]
            shown = note if note is not None and order_id not in self.muted else envelope["f"]
            await self.send_text(shown)
        elif kind == "read":
            if envelope["o"] in self.streams and envelope.get("x") != self.conn_id:
                await self.send_text(envelope["f"])
        elif kind == "typing":
            if envelope["o"] in self.streams and envelope["u"] != self.user_id:
                await self.send_text(envelope["f"])
        elif kind == "presence":
            await self._presence_changed(envelope)
        elif kind == "mute":
            (self.muted.add if envelope["m"] else self.muted.discard)(envelope["o"])
            await self.send_text(envelope["f"])

    async def _presence_changed(self, envelope: Envelope) -> None:
        seller_id = envelope["p"]
        shown = self.presence_versions.get(seller_id)
        if shown is None or envelope["v"] <= shown:
            return  # not followed (any more), or not newer than what the socket showed
        self.presence_versions[seller_id] = envelope["v"]
        await self.send_text(envelope["f"])

    async def sync_thread(self, order_id: str) -> None:
        """The supervisor saw newer events in a joined thread than this socket showed
        (the broker dropped the tail of a burst): show them from PostgreSQL."""
        stream = self.streams.get(order_id)
        if stream is not None:
            async with stream.held():
                await stream.catch_up()

    # --- sending --------------------------------------------------------------------------------
    async def send_text(self, text: str) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "text": text})

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send_text(frames.encode(frame))

    async def _read_events(
        self, order_id: str, after_seq: int, until_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        return await selectors.aevents_after_seq(
            order_id=order_id, after_seq=after_seq, until_seq=until_seq, limit=limit
        )


def _sent(outcome: services.SendOutcome) -> dict[str, Any]:
    return {"event": frames.event_wire(outcome.event), "duplicate": not outcome.created}


def _encode_event(order_id: str, event: dict[str, Any]) -> str:
    return frames.encode(frames.thread_event(order_id, event))
