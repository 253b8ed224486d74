"""Writes of the notification feature: the hook in ``event_append``, preferences and mutes,
composing due notifications into digests, and queueing the reminders other domains schedule.

Validation: these services expect validated fields (``protocol`` / the views parse them);
those that take a caller's ``user_id`` and an ``order_id`` authorize (participants only).

When is something pushed to an offline user (docs/notifications.md)?

* Every thread event queues, in its own statement (chat_service.threads.services.event_append),
  a pending row per recipient who had no live connection when it was written (one who
  had sees it live: the worker would only drop the row), and after commit it tells each
  recipient's sockets (chat_service.fanout.appended: each socket decides whether to
  show a ``notification``: not for a joined or muted thread).
* A row is due at once when it is urgent (offers, order status, disputes), after
  ``DIGEST_DELAY_S`` when it is an ordinary message. ``notifications_compose_due`` takes
  a (user, thread) as soon as one of its rows is due and composes *all* its pending rows
  into one digest, dropping each row that
    - was read on any device meanwhile (the thread's read marker ≥ its seq): ``read``;
    - belongs to a muted thread: ``muted``;
    - the user could have seen live: a connection is registered now (the presence
      registry, shared by every process) or ``last_online_at`` (written at every
      connect and disconnect, in PostgreSQL) is at or after the event: ``online``.
      Both are needed: the registry alone misses a user who came and went within the
      delay; ``last_online_at`` alone misses a user connected since before the event.
  Reminders are not dropped for being online (a tab in the background is not
  attention, and a reminder comes once); they are dropped when the deadline passed or
  the party already acted (``resolved``).
* The digest is written as one ``NotificationDelivery`` per enabled channel (push: the
  user's ``push`` preference and NOTIFY_WEBHOOK_URL set; e-mail: the ``email``
  preference and a known address) in the same transaction that marks the rows ``sent``.
  With no channel left the rows are dropped (``no_channel``).

Composition is serialized per user by a row lock on the user's profile taken with
SKIP LOCKED: several workers never split one thread's rows into two digests, and a
worker never waits for another.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from chat_service import fanout
from chat_service.machinery import pgpool
from chat_service.machinery.db import db_call
from chat_service.machinery.delivery.leased import retry_failed
from chat_service.protocol import frames
from chat_service.threads.models import Event, Role, Thread
from chat_service.threads.notifications import selectors, statements, texts
from chat_service.threads.notifications.config import notify_config
from chat_service.threads.notifications.models import (
    Notification,
    NotificationDelivery,
    NotificationProfile,
    NotificationStatus,
    ThreadMute,
)
from chat_service.threads.selectors import thread_for_participant, unread_total_for_user

if TYPE_CHECKING:
    from chat_service.commerce.models import Order

log = logging.getLogger(__name__)

MAX_EMAIL_CHARS = 254


def order_facts(order: Order) -> texts.OrderFacts:
    return texts.OrderFacts(order_id=order.pk, item_title=order.item_title, supplier_name=order.supplier_name)


# --- profiles, preferences, mutes -----------------------------------------------------------


def notification_profile_connected(*, user_id: str, email: str | None, now: datetime | None = None) -> set[str]:
    """A socket of the user connected: record it (``last_online_at``) and the e-mail
    address the token carried, if any. Returns the user's muted order ids (the socket
    keeps them to filter notification frames). Does not validate."""
    _profile_upsert(user_id=user_id, last_online_at=now or timezone.now(), email=email)
    return selectors.muted_order_ids(user_id=user_id)


def notification_profile_disconnected(*, user_id: str, now: datetime | None = None) -> None:
    """A socket of the user closed: it was live until now. Does not validate."""
    _profile_upsert(user_id=user_id, last_online_at=now or timezone.now(), email=None)


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    muted: set[str]  # the user's muted order ids (the socket filters notification frames)
    unread_total: int


async def aconnection_opened(*, user_id: str, email: str | None) -> ConnectionOpened:
    """A socket connected: ``notification_profile_connected`` and the user's unread total,
    in one statement on the event loop (PostgreSQL). Does not validate."""
    if not pgpool.enabled():
        return await db_call(_connection_opened, user_id=user_id, email=email)
    params = {"user_id": user_id, "email": email[:MAX_EMAIL_CHARS] if email else None, "now": timezone.now()}

    async def record(conn: psycopg.AsyncConnection[Any]) -> ConnectionOpened:
        cursor = await conn.execute(statements.CONNECT, params)
        row = await cursor.fetchone()
        assert row is not None  # the statement always returns one row
        muted, total, _ = row
        return ConnectionOpened(set(muted), int(total))

    return await pgpool.run(record)


def _connection_opened(*, user_id: str, email: str | None) -> ConnectionOpened:
    muted = notification_profile_connected(user_id=user_id, email=email)
    return ConnectionOpened(muted, unread_total_for_user(user_id=user_id))


async def aconnection_closed(*, user_id: str) -> None:
    """A socket closed: ``notification_profile_disconnected`` on the event loop."""
    if not pgpool.enabled():
        await db_call(notification_profile_disconnected, user_id=user_id)
        return
    params = {"user_id": user_id, "now": timezone.now()}

    async def record(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(statements.DISCONNECT, params)

    await pgpool.run(record)


def _profile_upsert(*, user_id: str, last_online_at: datetime, email: str | None) -> None:
    # One statement (INSERT … ON CONFLICT DO UPDATE): it runs on every connect and
    # disconnect, so a reconnect burst costs one round trip each.
    fields = ["last_online_at"] + (["email"] if email else [])
    NotificationProfile.objects.bulk_create(
        [NotificationProfile(user_id=user_id, last_online_at=last_online_at, email=(email or "")[:MAX_EMAIL_CHARS])],
        update_conflicts=True,
        unique_fields=["user_id"],
        update_fields=fields,
    )


def notification_preferences_update(
    *, user_id: str, email: bool | None = None, push: bool | None = None
) -> dict[str, Any]:
    """Turn the e-mail or push channel on or off (None: unchanged); returns the
    preferences. Any user may (it concerns only themselves); expects validated booleans."""
    changes: dict[str, Any] = {}
    if email is not None:
        changes["email_enabled"] = email
    if push is not None:
        changes["push_enabled"] = push
    if changes:
        NotificationProfile.objects.update_or_create(pk=user_id, defaults=changes)
    return selectors.notification_preferences(user_id=user_id)


def thread_mute_set(*, user_id: str, order_id: str, muted: bool) -> bool:
    """Mute or unmute a thread for its participant. Authorizes (NotFound for anyone
    else); expects a validated order id. Every socket of the user
    hears of it (``notifications.mute_updated``) after commit."""
    with transaction.atomic():
        thread, _ = thread_for_participant(order_id=order_id, user_id=user_id)
        if muted:
            ThreadMute.objects.get_or_create(user_id=user_id, thread=thread)
        else:
            ThreadMute.objects.filter(user_id=user_id, thread=thread).delete()
        fanout.publish_on_commit(fanout.mute_changed(user_id=user_id, order_id=order_id, muted=muted))
    return muted


# --- composing due notifications ------------------------------------------------------------


@dataclass(slots=True)
class ComposeCounts:
    groups: int = 0  # (user, thread) groups looked at
    digests: int = 0
    sent: int = 0  # rows composed into a digest
    dropped: int = 0
    skipped: int = 0  # another worker is composing for that user


Connected = Callable[[list[str]], set[str]]


def _registry_connected(user_ids: list[str]) -> set[str]:
    return selectors.users_connected(user_ids=user_ids)


def notifications_compose_due(
    *, now: datetime | None = None, limit: int = 200, connected: Connected = _registry_connected
) -> ComposeCounts:
    """Compose every (user, thread) with a due pending row into one digest (see the module
    docstring). ``now`` fixes the clock (tests); ``connected`` answers which users have a
    live connection (default: the presence registry). Safe in any number of workers."""
    now = now or timezone.now()
    config = notify_config()
    counts = ComposeCounts()
    groups = list(
        Notification.objects.filter(status=NotificationStatus.PENDING, due_at__lte=now)
        .values("user_id", "thread_id")
        .annotate(first_due=Min("due_at"))
        .order_by("first_due")[:limit]
    )
    if not groups:
        return counts
    online = connected(sorted({g["user_id"] for g in groups}))
    for group in groups:
        counts.groups += 1
        _compose_group(
            user_id=group["user_id"],
            order_id=group["thread_id"],
            now=now,
            online_now=group["user_id"] in online,
            config_webhook=bool(config.webhook_url),
            counts=counts,
        )
    return counts


def _compose_group(
    *, user_id: str, order_id: str, now: datetime, online_now: bool, config_webhook: bool, counts: ComposeCounts
) -> None:
    NotificationProfile.objects.bulk_create([NotificationProfile(user_id=user_id)], ignore_conflicts=True)
    with transaction.atomic():
        profile = NotificationProfile.objects.select_for_update(skip_locked=True).filter(pk=user_id).first()
        if profile is None:
            counts.skipped += 1
            return
        rows = list(
            Notification.objects.select_for_update()
            .filter(user_id=user_id, thread_id=order_id, status=NotificationStatus.PENDING)
            .order_by("created_at", "pk")
        )
        if not any(row.due_at <= now for row in rows):
            return  # composed by another worker meanwhile
        thread = Thread.objects.select_related("order").get(pk=order_id)
        role = thread.role_of(user_id)
        read_seq = thread.buyer_read_seq if role == Role.BUYER else thread.seller_read_seq
        muted = ThreadMute.objects.filter(user_id=user_id, thread_id=order_id).exists()
        events = {
            e.seq: e
            for e in Event.objects.filter(thread_id=order_id, seq__in=[r.event_seq for r in rows if r.event_seq])
        }
        kept: list[tuple[Notification, texts.Note]] = []
        dropped: dict[str, list[int]] = {}
        for row in rows:
            reason = _drop_reason(
                row,
                muted=muted,
                read_seq=read_seq,
                online_now=online_now,
                last_online_at=profile.last_online_at,
                now=now,
            )
            if reason is None:
                note = _note_of(row, events, thread, now=now)
                if note is None:
                    reason = "gone"
                else:
                    kept.append((row, note))
            if reason is not None:
                dropped.setdefault(reason, []).append(row.pk)
        channels = []
        if profile.push_enabled and config_webhook:
            channels.append("webhook")
        if profile.email_enabled and profile.email:
            channels.append("email")
        if kept and not channels:
            dropped.setdefault("no_channel", []).extend(row.pk for row, _ in kept)
            kept = []
        for reason, ids in dropped.items():
            Notification.objects.filter(pk__in=ids).update(status=NotificationStatus.DROPPED, reason=reason)
            counts.dropped += len(ids)
        if not kept:
            return
        digest_key = hashlib.sha256(f"{user_id}\0{order_id}\0{kept[0][0].pk}".encode()).hexdigest()[:40]
        note = texts.digest([n for _, n in kept])
        NotificationDelivery.objects.bulk_create(
            [
                _delivery(
                    channel,
                    digest_key=digest_key,
                    note=note,
                    rows=[r for r, _ in kept],
                    profile=profile,
                    order_id=order_id,
                    now=now,
                )
                for channel in channels
            ]
        )
        Notification.objects.filter(pk__in=[r.pk for r, _ in kept]).update(
            status=NotificationStatus.SENT, digest_key=digest_key
        )
        counts.digests += 1
        counts.sent += len(kept)


def _drop_reason(
    row: Notification, *, muted: bool, read_seq: int, online_now: bool, last_online_at: datetime | None, now: datetime
) -> str | None:
    if muted:
        return "muted"
    if row.event_seq is None:  # a reminder: its subject is checked in _note_of
        return None
    if row.event_seq <= read_seq:
        return "read"
    if online_now or (last_online_at is not None and last_online_at >= row.created_at):
        return "online"
    return None


def _note_of(row: Notification, events: dict[int, Event], thread: Thread, *, now: datetime) -> texts.Note | None:
    """The row's note, or None when there is nothing to say any more."""
    facts = order_facts(thread.order)
    if row.event_seq is not None:
        event = events.get(row.event_seq)
        if event is None:
            return None
        return texts.for_event(
            event_kind=event.kind, author_role=event.author_role, body=event.body, data=event.data, order=facts
        )
    describe = _reminder_kinds.get(row.kind)
    return None if describe is None else describe(row.data, facts, now)


def _delivery(
    channel: str,
    *,
    digest_key: str,
    note: texts.Note,
    rows: list[Notification],
    profile: NotificationProfile,
    order_id: str,
    now: datetime,
) -> NotificationDelivery:
    key = f"ntf-{channel}-{digest_key}"
    payload: dict[str, Any] = {
        "type": "notification",
        "idempotency_key": key,
        "user_id": profile.user_id,
        "order_id": order_id,
        "kind": note.kind,
        "title": note.title,
        "body": note.body,
        "count": len(rows),
        "event_seqs": [r.event_seq for r in rows if r.event_seq is not None],
        "created_at": frames.iso(now),
    }
    if channel == "email":
        payload["to"] = profile.email
    return NotificationDelivery(
        user_id=profile.user_id,
        order_id=order_id,
        channel=channel,
        payload=payload,
        idempotency_key=key,
        next_attempt_at=now,
    )


# --- deadline reminders ---------------------------------------------------------------------
#
# A reminder is about another domain's deadline (commerce: an offer about to expire, a
# dispute answer about to be due). That domain scans for due deadlines and queues one
# with ``notification_remind``, and registers how to describe each of its kinds at
# compose time: the describer answers None once the subject needs no reminder any more
# (answered, withdrawn, expired), and the row is dropped as ``resolved``.

ReminderDescriber = Callable[[dict[str, Any], texts.OrderFacts, datetime], texts.Note | None]
_reminder_kinds: dict[str, ReminderDescriber] = {}


def reminder_kind_register(kind: str, describe: ReminderDescriber) -> None:
    """Declare a reminder kind and how to describe it (at app start, once per kind)."""
    if _reminder_kinds.get(kind, describe) is not describe:
        raise ValueError(f"reminder kind {kind!r} is already registered")
    _reminder_kinds[kind] = describe


def notification_remind(
    *, user_id: str, order_id: str, kind: str, dedupe_key: str, data: dict[str, Any], now: datetime
) -> int:
    """Queue one urgent reminder for ``user_id`` in the thread ``order_id``, once per
    ``dedupe_key``. Returns 1 when it was queued, 0 when it existed or there is no thread."""
    if not Thread.objects.filter(pk=order_id).exists():
        return 0
    created = Notification.objects.bulk_create(
        [
            Notification(
                user_id=user_id,
                thread_id=order_id,
                event_seq=None,
                kind=kind,
                urgent=True,
                created_at=now,
                due_at=now,
                dedupe_key=dedupe_key,
                data=data,
            )
        ],
        ignore_conflicts=True,
    )
    # With ignore_conflicts PostgreSQL does not say whether the row was inserted.
    return len(created)


def notifications_retry_failed(*, ids: list[int], now: datetime | None = None) -> int:
    """Put failed deliveries back to pending with a fresh attempt budget (the admin's
    "Retry delivery"); the key and payload stay. Returns how many were reset."""
    return retry_failed(NotificationDelivery.objects.all(), ids=ids, now=now)
