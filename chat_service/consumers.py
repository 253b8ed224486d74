"""The WebSocket endpoint ``/ws/``: one ChatConsumer per socket.

Transport only: parse a frame, call one service or selector, frame the answer. The
consumer never dies of a bad frame or of a bug in a handler: errors become reply/error
frames and the socket stays open.

Delivery invariant (see docs/architecture.md): for every joined thread the socket keeps
``joined[order_id]`` = the last seq it delivered. An event is delivered only as cursor+1;
a jump is filled from PostgreSQL first and anything at or below the cursor is dropped.
So each socket sees each thread as one gapless, duplicate-free, ordered stream, whatever
the channel layer drops or reorders.

Presence invariant: ``presence_versions[seller_id]`` = the version of the seller's state
this socket last showed (snapshot or push); it holds exactly the visible sellers the
socket is subscribed to, each in the group ``presence.<seller_id>``. A presence.changed
is forwarded only when newer, so a repeated or reordered push never shows a stale state.

Notification invariant: a ``notification.created`` message (sent to ``user.<id>`` by
``event_append``'s hook) becomes a ``notification`` frame only on sockets that have not
joined its thread (those get the ``thread.event``) and only if the thread is not in
``muted``: loaded at connect after joining the user group, and kept current by the
``notifications.mute_updated`` pushes that every mute change sends to that group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from chat_service import fanout, protocol, selectors, services
from chat_service.closecodes import CloseCode
from chat_service.db import db_call
from chat_service.errors import BadRequest, ChatError, Internal, RateLimited
from chat_service.identity import Identity
from chat_service.notifications import services as notifications
from chat_service.ratelimit import get_rate_limiter
from chat_service.supervisor import get_supervisor
from orders_bridge import commands as commerce
from presence import services as presence

log = logging.getLogger(__name__)

CATCH_UP_PAGE = 200


def _connected(*, user_id: str, email: str | None) -> tuple[set[str], int]:
    """The database side of a connect, in one trip to the database pool: record the
    connection (notifications), read the user's mutes and unread total."""
    muted = notifications.notification_profile_connected(user_id=user_id, email=email)
    return muted, selectors.unread_total_for_user(user_id=user_id)


class ChatConsumer(AsyncWebsocketConsumer):
    # --- lifecycle ----------------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route a message to its handler.

        Unlike Channels' dispatch this does not close old database connections on every
        message (a hop through the database thread per delivered event); every database
        call goes through db.db_call, which does that itself. And a failing
        handler is logged instead of killing the socket (channels#1068).
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            log.warning("no handler for %s", message.get("type"))
            return
        try:
            await handler(message)
        except StopConsumer:
            raise
        except Exception:  # noqa: BLE001
            log.exception("handler %s failed user=%s", message.get("type"), getattr(self, "user_id", None))

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        chat = settings.CHAT
        self.limits = protocol.Limits(chat["MAX_FRAME_BYTES"], chat["MAX_BODY_CHARS"])
        self.joined: dict[str, int] = {}
        self.roles: dict[str, str] = {}
        self.typing_sent: dict[str, float] = {}
        self.presence_versions: dict[str, int] = {}
        self.muted: set[str] = set()  # threads whose notification frames this user muted
        self.registered = False
        self.supervised = False
        self.last_received = time.monotonic()
        self.conn_id = self.channel_name
        self.ready = False  # frames are served once the setup below completed
        # Serializes what this socket delivers (commands and their replies, pushed events)
        # with the supervisor's periodic thread sync, which runs outside this consumer's
        # one-message-at-a-time dispatch.
        self.delivery_lock = asyncio.Lock()
        identity: Identity | None = self.scope.get("identity")
        await self.accept()
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
        """Register the connection, join the user's group and say hello."""
        chat = settings.CHAT
        count = await presence.presence_connection_open(user_id=self.user_id, conn_id=self.conn_id)
        self.registered = True
        if count > chat["MAX_CONNECTIONS_PER_USER"]:
            log.info("connection cap reached user=%s count=%d", self.user_id, count)
            await self.close_with(CloseCode.TOO_MANY_CONNECTIONS)
            return
        await self.channel_layer.group_add(fanout.user_group(self.user_id), self.channel_name)
        # After joining the user group: a mute changed meanwhile arrives afterwards.
        self.muted, unread_total = await db_call(_connected, user_id=self.user_id, email=self.identity.email)
        get_supervisor().register(self)
        self.supervised = True
        self.ready = True
        await self.send_frame(
            protocol.hello(
                user=self.identity.as_dict(),
                unread_total=unread_total,
                heartbeat_s=chat["HEARTBEAT_S"],
                server_time=timezone.now(),
                max_frame_bytes=chat["MAX_FRAME_BYTES"],
                max_body_chars=chat["MAX_BODY_CHARS"],
            )
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # The application also ends without websocket_disconnect: when the channel
            # layer's receive raises (a Redis restart), the exception ends it and Daphne
            # closes the socket with 1011 (channels#1466). Without this the supervisor
            # kept the dead socket, renewed its connection entry and re-added its groups
            # (stale members; tests/resilience/test_faults_redis.py).
            await self._release()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self._release()
        raise StopConsumer()

    async def _release(self) -> None:
        """Clean up everything the socket registered; each step on its own. Once."""
        if getattr(self, "released", False):
            return
        self.released = True
        if getattr(self, "supervised", False):
            get_supervisor().unregister(self)
        user_id = getattr(self, "user_id", None)
        groups = [fanout.thread_group(o) for o in getattr(self, "joined", {})]
        groups += [presence.presence_group(s) for s in getattr(self, "presence_versions", {})]
        if user_id is not None:
            groups.append(fanout.user_group(user_id))
        for group in groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # noqa: BLE001 - expiry removes what we could not
                log.warning("group_discard failed group=%s", group, exc_info=True)
        if getattr(self, "registered", False) and user_id is not None:
            try:
                closed = await presence.presence_connection_close(user_id=user_id, conn_id=self.conn_id)
                if closed.offline_due_in_s is not None:
                    get_supervisor().schedule_offline_check(user_id, closed.offline_due_in_s)
            except Exception:  # noqa: BLE001 - the entry expires and the sweep goes on
                log.warning("connection close failed user=%s", user_id, exc_info=True)
            try:
                await db_call(notifications.notification_profile_disconnected, user_id=user_id)
            except Exception:  # noqa: BLE001 - at worst one push too many
                log.warning("recording the disconnect failed user=%s", user_id, exc_info=True)

    # --- supervisor hooks ---------------------------------------------------------------

    async def close_with(self, code: CloseCode) -> None:
        log.info("closing socket user=%s code=%s", getattr(self, "user_id", None), code.name)
        # A plain int: autobahn (under Daphne) refuses an IntEnum as a close code.
        await self.close(code=int(code))

    async def refresh_groups(self) -> None:
        for group in [
            fanout.user_group(self.user_id),
            *map(fanout.thread_group, self.joined),
            *map(presence.presence_group, self.presence_versions),
        ]:
            await self.channel_layer.group_add(group, self.channel_name)

    # --- inbound frames -----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.last_received = time.monotonic()
        if not self.ready:
            return  # closing: the handshake was refused or the setup failed
        try:
            command = protocol.parse_frame(text_data, bytes_data, self.limits)
        except protocol.FrameError as exc:
            await self.send_frame(protocol.reply_error(exc.ref, exc.error))
            return
        async with self.delivery_lock:
            await self._handle(command)

    async def _handle(self, command: protocol.Command) -> None:
        ref = command.ref
        try:
            data = await self._handlers[type(command)](self, command)
        except ChatError as exc:
            await self.send_frame(protocol.reply_error(ref, exc))
            return
        except Exception:  # noqa: BLE001 - a bug must not kill the socket
            log.exception("command %s failed user=%s", type(command).__name__, self.user_id)
            await self.send_frame(protocol.reply_error(ref, Internal()))
            return
        if ref is not None:
            await self.send_frame(protocol.reply_ok(ref, data))
        if isinstance(command, protocol.ThreadJoin) and data.get("has_more"):
            await self.catch_up(command.order_id)

    async def on_ping(self, command: protocol.Ping) -> dict[str, Any]:
        await self.send_frame({"type": "pong"})
        return {}

    async def on_thread_join(self, command: protocol.ThreadJoin) -> dict[str, Any]:
        order_id = command.order_id
        group = fanout.thread_group(order_id)
        # Subscribe before reading the backlog: events committed while we read arrive
        # through the group afterwards and the cursor drops those already in the reply.
        await self.channel_layer.group_add(group, self.channel_name)
        try:
            snapshot = await db_call(
                selectors.thread_join_snapshot,
                order_id=order_id,
                user_id=self.user_id,
                since_seq=command.since_seq,
                limit=settings.CHAT["JOIN_MAX_EVENTS"],
            )
        except BaseException:
            if order_id not in self.joined:
                await self.channel_layer.group_discard(group, self.channel_name)
            raise
        last_seen = snapshot.events[-1].seq if snapshot.events else 0
        if command.since_seq is not None and snapshot.has_more:
            cursor = last_seen
        elif command.since_seq is not None:
            cursor = max(last_seen, min(command.since_seq, snapshot.thread.last_seq))
        else:
            cursor = max(last_seen, snapshot.thread.last_seq)
        self.joined[order_id] = cursor
        self.roles[order_id] = snapshot.role.value
        data = snapshot.as_wire()
        data["last_seq"] = max(cursor, snapshot.thread.last_seq)
        return data

    async def on_thread_leave(self, command: protocol.ThreadLeave) -> dict[str, Any]:
        if self.joined.pop(command.order_id, None) is not None:
            await self.channel_layer.group_discard(fanout.thread_group(command.order_id), self.channel_name)
        return {}

    async def on_message_send(self, command: protocol.MessageSend) -> dict[str, Any]:
        chat = settings.CHAT
        decision = await get_rate_limiter().hit(
            f"send:{self.user_id}", limit=chat["SEND_RATE_COUNT"], window_s=chat["SEND_RATE_WINDOW_S"]
        )
        if not decision.allowed:
            raise RateLimited(retry_after_s=round(decision.retry_after_s, 3))
        outcome = await fanout.call_service(
            services.message_send,
            user_id=self.user_id,
            order_id=command.order_id,
            client_msg_id=command.client_msg_id,
            body=command.body,
        )
        return {"event": protocol.event_wire(outcome.event), "duplicate": not outcome.created}

    async def on_thread_read(self, command: protocol.ThreadRead) -> dict[str, Any]:
        outcome = await fanout.call_service(
            services.thread_read, user_id=self.user_id, order_id=command.order_id, seq=command.seq
        )
        return {"read_seq": outcome.read_seq, "unread": outcome.unread, "unread_total": outcome.unread_total}

    async def on_typing_start(self, command: protocol.TypingStart) -> dict[str, Any]:
        order_id = command.order_id
        if order_id not in self.roles:
            _, role = await db_call(selectors.thread_for_participant, order_id=order_id, user_id=self.user_id)
            self.roles[order_id] = role.value
        now = time.monotonic()
        if now - self.typing_sent.get(order_id, float("-inf")) < settings.CHAT["TYPING_THROTTLE_S"]:
            return {"throttled": True}
        self.typing_sent[order_id] = now
        await fanout.publish_now(
            fanout.thread_group(order_id),
            {"type": "typing.started", "order_id": order_id, "user_id": self.user_id},
        )
        return {"throttled": False}

    async def on_presence_subscribe(self, command: protocol.PresenceSubscribe) -> dict[str, Any]:
        limit = settings.CHAT["PRESENCE_MAX_SUBSCRIPTIONS"]
        new = [s for s in command.seller_ids if s not in self.presence_versions]
        if len(self.presence_versions) + len(new) > limit:
            raise BadRequest(
                f"A socket can follow at most {limit} sellers; unsubscribe a page first.", field="seller_ids"
            )
        visible = await presence.presence_visible(seller_ids=command.seller_ids)
        # Join the groups before reading the states: a change committed meanwhile arrives
        # afterwards and the version check drops it if the snapshot already has it.
        for seller_id in new:
            if seller_id in visible:
                await self.channel_layer.group_add(presence.presence_group(seller_id), self.channel_name)
                self.presence_versions[seller_id] = -1
        snapshot = await presence.presence_snapshot(seller_ids=command.seller_ids, visible=visible)
        for entry in snapshot:
            if entry.visible:
                self.presence_versions[entry.seller_id] = max(
                    self.presence_versions.get(entry.seller_id, -1), entry.state.version
                )
        return {"sellers": {entry.seller_id: entry.as_wire() for entry in snapshot}}

    async def on_presence_unsubscribe(self, command: protocol.PresenceUnsubscribe) -> dict[str, Any]:
        for seller_id in command.seller_ids:
            if self.presence_versions.pop(seller_id, None) is not None:
                await self.channel_layer.group_discard(presence.presence_group(seller_id), self.channel_name)
        return {}

    async def on_commerce(self, command: protocol.CommerceCommand) -> dict[str, Any]:
        kwargs = commerce.arguments(command.type, command.payload)
        return await fanout.call_service(commerce.perform, frame_type=command.type, user_id=self.user_id,
                                         kwargs=kwargs)

    async def on_notifications_mute(self, command: protocol.NotificationsMute) -> dict[str, Any]:
        muted = await fanout.call_service(
            notifications.thread_mute_set, user_id=self.user_id, order_id=command.order_id, muted=command.muted
        )
        # The push to the user group updates every socket; this one knows it already.
        (self.muted.add if muted else self.muted.discard)(command.order_id)
        return {"order_id": command.order_id, "muted": muted}

    async def on_notifications_preferences(self, command: protocol.NotificationsPreferences) -> dict[str, Any]:
        return await db_call(
            notifications.notification_preferences_update, user_id=self.user_id, email=command.email, push=command.push
        )

    _handlers: dict[type, Any] = {
        protocol.Ping: on_ping,
        protocol.ThreadJoin: on_thread_join,
        protocol.ThreadLeave: on_thread_leave,
        protocol.MessageSend: on_message_send,
        protocol.ThreadRead: on_thread_read,
        protocol.TypingStart: on_typing_start,
        protocol.PresenceSubscribe: on_presence_subscribe,
        protocol.PresenceUnsubscribe: on_presence_unsubscribe,
        protocol.CommerceCommand: on_commerce,
        protocol.NotificationsMute: on_notifications_mute,
        protocol.NotificationsPreferences: on_notifications_preferences,
    }

    # --- channel-layer messages ---------------------------------------------------------

    async def thread_event(self, message: dict[str, Any]) -> None:
        async with self.delivery_lock:
            await self._thread_event(message)

    async def _thread_event(self, message: dict[str, Any]) -> None:
        order_id = message["order_id"]
        cursor = self.joined.get(order_id)
        if cursor is None:
            return
        seq = message["event"]["seq"]
        if seq <= cursor:
            return  # already delivered (replay overlap, or the layer repeated it)
        if seq > cursor + 1:
            await self.catch_up(order_id, until_seq=seq - 1)
        if self.joined.get(order_id) == seq - 1:
            await self.send_frame({"type": "thread.event", "order_id": order_id, "event": message["event"]})
            self.joined[order_id] = seq

    async def sync_thread(self, order_id: str) -> None:
        """The supervisor saw newer events in a joined thread than this socket delivered
        (the layer dropped the tail of a burst): deliver them from PostgreSQL."""
        async with self.delivery_lock:
            await self.catch_up(order_id)

    async def catch_up(self, order_id: str, until_seq: int | None = None) -> None:
        """Deliver from PostgreSQL every event after the cursor (up to ``until_seq``).
        The caller holds ``delivery_lock``."""
        while order_id in self.joined:
            cursor = self.joined[order_id]
            if until_seq is not None and cursor >= until_seq:
                return
            events = await db_call(
                selectors.events_after_seq, thread_id=order_id, after_seq=cursor, limit=CATCH_UP_PAGE
            )
            for event in events:
                if until_seq is not None and event.seq > until_seq:
                    return
                if event.seq != self.joined.get(order_id, -1) + 1:
                    return  # left the thread meanwhile
                await self.send_frame(
                    {"type": "thread.event", "order_id": order_id, "event": protocol.event_wire(event)}
                )
                self.joined[order_id] = event.seq
            if len(events) < CATCH_UP_PAGE:
                return

    async def thread_read_updated(self, message: dict[str, Any]) -> None:
        if message["order_id"] in self.joined:
            await self.send_frame(_forward(message, "order_id", "user_id", "seq"))

    async def typing_started(self, message: dict[str, Any]) -> None:
        if message["order_id"] in self.joined and message["user_id"] != self.user_id:
            await self.send_frame(_forward(message, "order_id", "user_id"))

    async def presence_changed(self, message: dict[str, Any]) -> None:
        seller_id = message["seller_id"]
        shown = self.presence_versions.get(seller_id)
        if shown is None or message["version"] <= shown:
            return  # not subscribed (any more), or not newer than what the socket showed
        self.presence_versions[seller_id] = message["version"]
        await self.send_frame(_forward(message, "seller_id", "status", "color", "last_seen", "typical_reply_s"))

    async def unread_updated(self, message: dict[str, Any]) -> None:
        await self.send_frame(_forward(message, "order_id", "unread", "unread_total"))

    async def notification_created(self, message: dict[str, Any]) -> None:
        """Shown only where the thread is not open (not joined) and not muted."""
        order_id = message["order_id"]
        if order_id in self.joined or order_id in self.muted:
            return
        frame = _forward(message, "kind", "order_id", "title", "body", "event_seq")
        frame["type"] = "notification"
        await self.send_frame(frame)

    async def notifications_mute_updated(self, message: dict[str, Any]) -> None:
        (self.muted.add if message["muted"] else self.muted.discard)(message["order_id"])
        await self.send_frame(_forward(message, "order_id", "muted"))

    # --- helpers ------------------------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=protocol.encode(frame))


def _forward(message: dict[str, Any], *fields: str) -> dict[str, Any]:
    """A channel-layer message as a wire frame: its type and the named fields only."""
    return {"type": message["type"], **{name: message[name] for name in fields}}
