"""The wire protocol: parse inbound frames into typed commands, build outbound frames.

Pure functions only (no I/O, no database). ``parse_frame`` either returns a ``Command`` or
raises a ``ChatError`` that carries the frame's ``ref`` when one could be read, so the
consumer can always answer a bad frame with exactly one reply. See docs/protocol.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from chat_service.protocol.errors import BadRequest, ChatError, TooLarge, UnknownType

# The version of this wire protocol (docs/protocol.md, "Versions"); sent in ``hello``.
PROTOCOL_VERSION = 2

# Ids on the wire (users, orders): the one definition; OpenAPI and every parser use these.
ID_MAX_CHARS = 64
ID_PATTERN = rf"[A-Za-z0-9_.\-]{{1,{ID_MAX_CHARS}}}"
CLIENT_MSG_ID_PATTERN = r"[\x21-\x7e]{1,64}"  # printable ASCII, no spaces
NUMERIC_ID_PATTERN = r"[0-9]{1,18}"  # offers and disputes (bigint keys)
ID_RE = re.compile(rf"^{ID_PATTERN}\Z")  # \Z: "$" would accept a trailing newline
CLIENT_MSG_ID_RE = re.compile(rf"^{CLIENT_MSG_ID_PATTERN}\Z")
NUMERIC_ID_RE = re.compile(rf"^{NUMERIC_ID_PATTERN}\Z")
MAX_REF_LENGTH = 128
MAX_SEQ = 2**62
MAX_SELLER_IDS = 200


class FrameError(ChatError):
    """Wraps a ChatError with the ref of the frame that caused it (None if unknown)."""

    def __init__(self, error: ChatError, ref: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.ref = ref


# --- Field readers --------------------------------------------------------------------------


def _id(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None:
        raise BadRequest(f"{name} is required.", field=name)
    if not isinstance(value, str) or not ID_RE.match(value):
        raise BadRequest(f"{name} must be 1-64 letters, digits, '-', '_' or '.'.", field=name)
    return value


def _seq(payload: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required.", field=name)
        return None
    # bool is an int subclass in Python; JSON true is not a sequence number.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise BadRequest(f"{name} must be a whole number from 0.", field=name)
    return value


def message_fields(payload: dict[str, Any], *, max_body_chars: int) -> tuple[str, str]:
    """Validate client_msg_id and body of a send (shared by the socket and HTTP)."""
    client_msg_id = payload.get("client_msg_id")
    if client_msg_id is None:
        raise BadRequest("client_msg_id is required.", field="client_msg_id")
    if not isinstance(client_msg_id, str) or not CLIENT_MSG_ID_RE.match(client_msg_id):
        raise BadRequest("client_msg_id must be 1-64 printable ASCII characters.", field="client_msg_id")
    body = payload.get("body")
    if body is None:
        raise BadRequest("body is required.", field="body")
    if not isinstance(body, str):
        raise BadRequest("body must be a string.", field="body")
    if len(body) > max_body_chars:
        raise TooLarge(f"A message can be at most {max_body_chars} characters.", field="body")
    if "\x00" in body:
        raise BadRequest("body must not contain NUL characters.", field="body")
    if not body.strip():
        raise BadRequest("body must not be empty.", field="body")
    return client_msg_id, body


def seller_ids_field(value: Any) -> list[str]:
    """Validate a list of seller ids (socket and HTTP): at most MAX_SELLER_IDS, each an id.
    Repeats are dropped, the order is kept."""
    if value is None:
        raise BadRequest("seller_ids is required.", field="seller_ids")
    if not isinstance(value, list):
        raise BadRequest("seller_ids must be a list of ids.", field="seller_ids")
    if len(value) > MAX_SELLER_IDS:
        raise BadRequest(f"seller_ids can hold at most {MAX_SELLER_IDS} ids.", field="seller_ids")
    for item in value:
        if not isinstance(item, str) or not ID_RE.match(item):
            raise BadRequest("Each seller id must be 1-64 letters, digits, '-', '_' or '.'.", field="seller_ids")
    return list(dict.fromkeys(value))


def has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a lone surrogate (U+D800-U+DFFF) in any string or key.

    JSON's ``\\u`` escapes can spell one (``"\\ud800"``), but such text has no UTF-8 form:
    PostgreSQL could not store it and Daphne could not send it back (a reply echoes its
    ``ref``), so it must be refused as ``bad_request`` before anything else sees it.
    Iterative, so any depth json.loads accepted is walked without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_seq_field(payload: dict[str, Any]) -> int:
    seq = _seq(payload, "seq", required=True)
    assert seq is not None
    return seq


# --- Commands -----------------------------------------------------------------------------
# Each command reads itself from the frame's payload and raises ChatError when it cannot.


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int
    max_body_chars: int


@dataclass(frozen=True, slots=True)
class Ping:
    ref: str | None

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> Ping:
        return cls(ref)


@dataclass(frozen=True, slots=True)
class ThreadJoin:
    ref: str | None
    order_id: str
    since_seq: int | None

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> ThreadJoin:
        return cls(ref, _id(payload, "order_id"), _seq(payload, "since_seq", required=False))


@dataclass(frozen=True, slots=True)
class ThreadLeave:
    ref: str | None
    order_id: str

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> ThreadLeave:
        return cls(ref, _id(payload, "order_id"))


@dataclass(frozen=True, slots=True)
class MessageSend:
    ref: str | None
    order_id: str
    client_msg_id: str
    body: str

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> MessageSend:
        order_id = _id(payload, "order_id")
        client_msg_id, body = message_fields(payload, max_body_chars=limits.max_body_chars)
        return cls(ref, order_id, client_msg_id, body)


@dataclass(frozen=True, slots=True)
class ThreadRead:
    ref: str | None
    order_id: str
    seq: int

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> ThreadRead:
        return cls(ref, _id(payload, "order_id"), read_seq_field(payload))


@dataclass(frozen=True, slots=True)
class TypingStart:
    ref: str | None
    order_id: str

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> TypingStart:
        return cls(ref, _id(payload, "order_id"))


@dataclass(frozen=True, slots=True)
class PresenceSubscribe:
    ref: str | None
    seller_ids: list[str]

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> PresenceSubscribe:
        return cls(ref, seller_ids_field(payload.get("seller_ids")))


@dataclass(frozen=True, slots=True)
class PresenceUnsubscribe:
    ref: str | None
    seller_ids: list[str]

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> PresenceUnsubscribe:
        return cls(ref, seller_ids_field(payload.get("seller_ids")))


@dataclass(frozen=True, slots=True)
class CommerceCommand:
    """An offer.*, dispute.* or order.* command. Its fields are read by the command table
    of chat_service.transport.socket.commerce, next to the service each one calls."""

    ref: str | None
    type: str
    payload: dict[str, Any]

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> CommerceCommand:
        return cls(ref, payload["type"], payload)


def bool_field(payload: dict[str, Any], name: str, *, required: bool) -> bool | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required.", field=name)
        return None
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false.", field=name)
    return value


@dataclass(frozen=True, slots=True)
class NotificationsMute:
    ref: str | None
    order_id: str
    muted: bool

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> NotificationsMute:
        muted = bool_field(payload, "muted", required=True)
        assert muted is not None
        return cls(ref, _id(payload, "order_id"), muted)


@dataclass(frozen=True, slots=True)
class NotificationsPreferences:
    """Change the channels (``email``, ``push``: true/false, absent: unchanged); with
    neither field it only reads them."""

    ref: str | None
    email: bool | None
    push: bool | None

    @classmethod
    def parse(cls, ref: str | None, payload: dict[str, Any], limits: Limits) -> NotificationsPreferences:
        return cls(ref, bool_field(payload, "email", required=False), bool_field(payload, "push", required=False))


# The contract's commerce commands, plus dispute.add_return_tracking / confirm_return.
COMMERCE_TYPES = (
    "offer.request",
    "offer.make",
    "offer.accept",
    "offer.decline",
    "offer.withdraw",
    "dispute.open",
    "dispute.respond",
    "dispute.accept_counter",
    "dispute.escalate",
    "dispute.cancel",
    "dispute.add_return_tracking",
    "dispute.confirm_return",
    "order.cancel",
    "order.confirm_receipt",
    "order.leave_feedback",
)

Command = (
    Ping
    | ThreadJoin
    | ThreadLeave
    | MessageSend
    | ThreadRead
    | TypingStart
    | PresenceSubscribe
    | PresenceUnsubscribe
    | CommerceCommand
    | NotificationsMute
    | NotificationsPreferences
)

COMMANDS: dict[str, type[Command]] = {
    "ping": Ping,
    "thread.join": ThreadJoin,
    "thread.leave": ThreadLeave,
    "message.send": MessageSend,
    "thread.read": ThreadRead,
    "typing.start": TypingStart,
    "presence.subscribe": PresenceSubscribe,
    "presence.unsubscribe": PresenceUnsubscribe,
    "notifications.mute": NotificationsMute,
    "notifications.preferences": NotificationsPreferences,
    **{name: CommerceCommand for name in COMMERCE_TYPES},
}


def parse_frame(text: str | None, data: bytes | None, limits: Limits) -> Command:
    """Turn one WebSocket frame into a command, or raise FrameError."""
    if text is None:
        raise FrameError(BadRequest("Frames must be JSON text, not binary."), None)
    if len(text) > limits.max_frame_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_frame_bytes:
        raise FrameError(TooLarge(f"Frames can be at most {limits.max_frame_bytes} bytes."), None)
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson is stricter than JSON as Python reads it (NaN, lone surrogates as escapes,
        # nesting past 1,024): read such a frame the lenient way, so its ref is answered
        # and its fields are judged like any other's.
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            raise FrameError(BadRequest("The frame is not valid JSON."), None) from None
    if not isinstance(frame, dict):
        raise FrameError(BadRequest("A frame must be a JSON object."), None)
    ref = frame.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_REF_LENGTH or has_lone_surrogate(ref)):
        raise FrameError(BadRequest(f"ref must be a string of at most {MAX_REF_LENGTH} characters."), None)
    if "\\u" in text and has_lone_surrogate(frame):  # only an escape can spell one
        raise FrameError(BadRequest("Text must be valid Unicode: a \\u escape spells a lone surrogate."), ref)
    frame_type = frame.get("type")
    if not isinstance(frame_type, str):
        raise FrameError(BadRequest("type is required and must be a string."), ref)
    ctor = COMMANDS.get(frame_type)
    if ctor is None:
        raise FrameError(UnknownType(f"Unknown frame type {frame_type[:64]!r}."), ref)
    try:
        return ctor.parse(ref, frame, limits)
    except ChatError as exc:
        raise FrameError(exc, ref) from None


# --- Outbound frames --------------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    """A frame's JSON text (orjson; compact, UTF-8, values already in wire form)."""
    return orjson.dumps(frame).decode()


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a Z, the one timestamp format of the wire."""
    if moment is None:
        return None
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reply_ok(ref: str | None, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "reply", "ref": ref, "ok": True, "data": data}


def reply_error(ref: str | None, error: ChatError) -> dict[str, Any]:
    if ref is None:
        return {"type": "error", "error": error.as_dict()}
    return {"type": "reply", "ref": ref, "ok": False, "error": error.as_dict()}


def hello(
    *,
    user: dict[str, str],
    unread_total: int,
    heartbeat_s: int,
    server_time: datetime,
    max_frame_bytes: int,
    max_body_chars: int,
) -> dict[str, Any]:
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "user": user,
        "unread_total": unread_total,
        "heartbeat_s": heartbeat_s,
        "server_time": iso(server_time),
        "limits": {"max_frame_bytes": max_frame_bytes, "max_body_chars": max_body_chars},
    }


def presence_wire(*, online: bool, last_seen: datetime | None) -> dict[str, Any]:
    """A seller's indicator as presence.changed carries it (a snapshot entry adds
    ``typical_reply_s``)."""
    return {
        "status": "online" if online else "offline",
        "color": "orange" if online else "grey",
        "last_seen": None if online else iso(last_seen),
    }


def page(name: str, page: Any) -> dict[str, Any]:
    """One page of a keyset-paged list (orders, disputes): its items under ``name`` and the
    cursors to the older (``next``) and newer (``prev``) pages, None at either end."""
    return {name: page.items, "next": page.next, "prev": page.prev}


def presence_snapshot(entries: Iterable[Any]) -> dict[str, Any]:
    """The sellers' indicators as a presence.subscribe reply and GET /api/presence/ show
    them: each with ``typical_reply_s`` (entries: presence.services.SellerPresence)."""
    return {
        "sellers": {
            entry.seller_id: {
                **presence_wire(online=entry.state.online, last_seen=entry.last_seen),
                "typical_reply_s": entry.typical_reply_s,
            }
            for entry in entries
        }
    }


def event_wire(event: Any) -> dict[str, Any]:
    """An Event row as the contract's ``event`` object."""
    return event_wire_of(
        event.id,
        event.seq,
        event.kind,
        event.author_id,
        event.author_role,
        event.body,
        event.data,
        event.client_msg_id,
        event.created_at,
    )


def event_wire_of(
    id: int,
    seq: int,
    kind: str,
    author_id: str | None,
    author_role: str,
    body: str,  # noqa: A002
    data: dict[str, Any],
    client_msg_id: str | None,
    created_at: datetime | str,
) -> dict[str, Any]:
    """The contract's ``event`` object from its columns, in the order of
    chat_service.threads.statements.EVENT_COLUMNS (``created_at`` as a datetime, or as the ISO
    text PostgreSQL's JSON gives it)."""
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at)
    return {
        "seq": seq,
        "id": str(id),
        "kind": kind,
        "author_id": author_id,
        "author_role": author_role,
        "body": body,
        "data": data,
        "client_msg_id": client_msg_id,
        "created_at": iso(created_at),
    }


# --- Server pushes (their shapes; chat_service.fanout encodes each once) -----------------------


def thread_event(order_id: str, event: dict[str, Any] | orjson.Fragment) -> dict[str, Any]:
    return {"type": "thread.event", "order_id": order_id, "event": event}


def unread_updated(order_id: str, unread: int, unread_total: int) -> dict[str, Any]:
    return {"type": "unread.updated", "order_id": order_id, "unread": unread, "unread_total": unread_total}


def notification(
    *, kind: str, order_id: str, title: str, body: str, event_seq: int, unread: int, unread_total: int
) -> dict[str, Any]:
    """A notification for a thread the socket has not open; in protocol 2 it carries the
    counts too, so that it is the socket's one frame for the event."""
    return {
        "type": "notification",
        "kind": kind,
        "order_id": order_id,
        "title": title,
        "body": body,
        "event_seq": event_seq,
        "unread": unread,
        "unread_total": unread_total,
    }


def read_updated(order_id: str, user_id: str, seq: int) -> dict[str, Any]:
    return {"type": "thread.read_updated", "order_id": order_id, "user_id": user_id, "seq": seq}


def typing_started(order_id: str, user_id: str) -> dict[str, Any]:
    return {"type": "typing.started", "order_id": order_id, "user_id": user_id}


def presence_changed(seller_id: str, wire: dict[str, Any]) -> dict[str, Any]:
    return {"type": "presence.changed", "seller_id": seller_id, **wire}


def mute_updated(order_id: str, muted: bool) -> dict[str, Any]:
    return {"type": "notifications.mute_updated", "order_id": order_id, "muted": muted}


def fit_events(encoded: list[bytes], budget: int, *, keep_newest: bool) -> tuple[list[bytes], bool]:
    """The events (encoded, oldest first) that fit in ``budget`` bytes of a frame, and
    whether any was left out. ``keep_newest`` keeps the end of the list (a fresh open
    shows the newest page), else the start (a rejoin streams the rest afterwards)."""
    order = reversed(encoded) if keep_newest else iter(encoded)
    kept: list[bytes] = []
    used = 0
    for item in order:
        size = len(item) + 1  # and its comma
        if used + size > budget:
            break
        kept.append(item)
        used += size
    cut = len(kept) < len(encoded)
    return (kept[::-1] if keep_newest else kept), cut
