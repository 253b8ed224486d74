"""Writes to threads. Each service is one transaction and schedules its pushes on commit.

Services validate authorization themselves (the caller's id decides the role); field
formats are validated by ``protocol`` before a service is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat_service import fanout, protocol, sql
from chat_service.errors import NotFound
from chat_service.models import Event, EventKind, Role, Thread
from chat_service.notifications.services import notifications_enqueue_for_event
from chat_service.notifications.texts import OrderFacts
from chat_service.selectors import NO_THREAD, thread_for_participant, unread_of, unread_total_for_user, unread_totals
from orders_bridge.models import Order

# What event_append reads and writes of the thread row.
THREAD_LOCK_FIELDS = (
    "order", "buyer_id", "seller_id", "last_seq", "buyer_read_seq", "seller_read_seq", "buyer_unread", "seller_unread",
)
THREAD_APPEND_FIELDS = (
    "last_seq", "last_event_at", "buyer_read_seq", "buyer_unread", "seller_read_seq", "seller_unread",
)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    event: Event
    created: bool


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    read_seq: int
    unread: int
    unread_total: int
    changed: bool


def thread_open(*, order: Order) -> Thread:
    """The thread of ``order``, created with it if missing. Does not validate."""
    thread, _ = Thread.objects.get_or_create(
        order=order, defaults={"buyer_id": order.buyer_id, "seller_id": order.seller_id}
    )
    return thread


def event_append(
    *,
    thread: Thread,
    kind: EventKind,
    author_id: str | None,
    author_role: Role,
    body: str = "",
    data: dict[str, Any] | None = None,
    client_msg_id: str | None = None,
    order: OrderFacts | None = None,
) -> Event:
    """Append an event to ``thread``. Does not validate.

    ``thread`` must have been read with ``select_for_update`` in the current transaction:
    that row lock, held until COMMIT, is what makes seqs gapless and visible in order.
    Every kind of thread event (message, order, offer, dispute) goes through here, so that
    seq allocation, unread counters, read markers and pushes are the same for all of them.
    """
    assert transaction.get_connection().in_atomic_block, "event_append needs a transaction"
    now = timezone.now()
    seq = thread.last_seq + 1
    before = {Role.BUYER: thread.buyer_unread, Role.SELLER: thread.seller_unread}
    # The author has seen everything up to their own event; everyone else has one more unread.
    if author_role == Role.BUYER:
        thread.buyer_read_seq, thread.buyer_unread = seq, 0
    else:
        thread.buyer_unread += 1
    if author_role == Role.SELLER:
        thread.seller_read_seq, thread.seller_unread = seq, 0
    else:
        thread.seller_unread += 1
    thread.last_seq, thread.last_event_at = seq, now
    sql.update(thread, THREAD_APPEND_FIELDS)
    event = Event(
        thread_id=thread.pk,
        seq=seq,
        kind=kind,
        author_id=author_id,
        author_role=author_role,
        body=body,
        data=data or {},
        client_msg_id=client_msg_id,
        created_at=now,
    )
    event.id = sql.insert(Event, event.__dict__)
    event._state.adding, event._state.db = False, connection.alias
    order_id = thread.pk
    fanout.publish_on_commit(
        fanout.thread_group(order_id),
        {"type": "thread.event", "order_id": order_id, "event": protocol.event_wire(event)},
    )
    # Every party whose unread count changed hears about it on all their sockets: the
    # recipients (+1), and an author who had unread events (writing marks them read).
    changed = [
        (role, user_id)
        for role, user_id in ((Role.BUYER, thread.buyer_id), (Role.SELLER, thread.seller_id))
        if not (role == author_role and before[role] == 0)
    ]
    totals = unread_totals(user_ids=[user_id for _, user_id in changed])
    for role, user_id in changed:
        fanout.publish_on_commit(
            fanout.user_group(user_id),
            {
                "type": "unread.updated",
                "order_id": order_id,
                "unread": unread_of(thread, role),
                "unread_total": totals[user_id],
            },
        )
        if role == author_role:
            fanout.publish_on_commit(
                fanout.thread_group(order_id),
                {"type": "thread.read_updated", "order_id": order_id, "user_id": user_id, "seq": seq},
            )
    notifications_enqueue_for_event(thread=thread, event=event, order=order)
    return event


def message_send(*, user_id: str, order_id: str, client_msg_id: str, body: str) -> SendOutcome:
    """Store a chat message from a participant. Authorizes; expects validated fields.

    Idempotent on (thread, author, client_msg_id): a repeat returns the stored event and
    writes nothing, also when the original is still committing concurrently.
    """
    try:
        with transaction.atomic():
            thread, role, order = _thread_locked_for_message(order_id=order_id, user_id=user_id)
            event = event_append(
                thread=thread,
                kind=EventKind.MESSAGE,
                author_id=user_id,
                author_role=role,
                body=body,
                client_msg_id=client_msg_id,
                order=order,
            )
    except IntegrityError:
        # The unique (thread, author, client_msg_id) index refused a repeat; the whole
        # transaction, its seq included, rolled back.
        original = Event.objects.filter(
            thread_id=order_id, author_id=user_id, client_msg_id=client_msg_id
        ).first()
        if original is None:
            raise
        return SendOutcome(event=original, created=False)
    return SendOutcome(event=event, created=True)


def _thread_locked_for_message(*, order_id: str, user_id: str) -> tuple[Thread, Role, OrderFacts]:
    """``thread_for_participant(lock=True)`` plus the order's facts for the notification,
    in one hand-written statement (see chat_service/sql.py for why)."""
    q = connection.ops.quote_name
    columns = ", ".join(f"t.{q(Thread._meta.get_field(name).column)}" for name in THREAD_LOCK_FIELDS)
    pk = q(Thread._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns}, o.{q('item_title')}, o.{q('supplier_name')}"  # noqa: S608 - names only
            f" FROM {q(Thread._meta.db_table)} t"
            f" JOIN {q(Order._meta.db_table)} o ON o.{q(Order._meta.pk.column)} = t.{pk}"
            f" WHERE t.{pk} = %s AND (t.{q('buyer_id')} = %s OR t.{q('seller_id')} = %s){sql.for_update_of('t')}",
            [order_id, user_id, user_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise NotFound(NO_THREAD)
    thread = Thread.from_db(connection.alias, [Thread._meta.get_field(n).attname for n in THREAD_LOCK_FIELDS],
                            row[: len(THREAD_LOCK_FIELDS)])
    item_title, supplier_name = row[len(THREAD_LOCK_FIELDS):]
    role = thread.role_of(user_id)
    assert role is not None
    return thread, role, OrderFacts(order_id=thread.pk, item_title=item_title, supplier_name=supplier_name)


def thread_read(*, user_id: str, order_id: str, seq: int) -> ReadOutcome:
    """Move the caller's read marker forward to ``seq`` (never back, never past the end).

    Authorizes. Pushes thread.read_updated to the thread and unread.updated to every
    socket of the reader, only when the marker moved.
    """
    with transaction.atomic():
        thread, role = thread_for_participant(order_id=order_id, user_id=user_id, lock=True)
        read_field = "buyer_read_seq" if role == Role.BUYER else "seller_read_seq"
        unread_field = "buyer_unread" if role == Role.BUYER else "seller_unread"
        old_read = getattr(thread, read_field)
        new_read = max(old_read, min(seq, thread.last_seq))
        if new_read == old_read:
            unread = unread_of(thread, role)
            return ReadOutcome(old_read, unread, unread_total_for_user(user_id=user_id), changed=False)
        unread = (
            Event.objects.filter(thread_id=thread.pk, seq__gt=new_read).exclude(author_id=user_id).count()
        )
        Thread.objects.filter(pk=thread.pk).update(**{read_field: new_read, unread_field: unread})
        total = unread_total_for_user(user_id=user_id)
        fanout.publish_on_commit(
            fanout.thread_group(order_id),
            {"type": "thread.read_updated", "order_id": order_id, "user_id": user_id, "seq": new_read},
        )
        fanout.publish_on_commit(
            fanout.user_group(user_id),
            {"type": "unread.updated", "order_id": order_id, "unread": unread, "unread_total": total},
        )
    return ReadOutcome(new_read, unread, total, changed=True)
