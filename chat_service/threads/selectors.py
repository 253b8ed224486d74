"""Reads of threads and events. No writes, no pushes.

Every selector that takes a ``user_id`` authorizes: a thread is visible only to its
order's buyer and seller. To anyone else it does not exist (``NotFound``), so order ids
cannot be probed (see docs/protocol.md, "Authorization").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from channels.db import database_sync_to_async
from django.db import connection
from django.db.models import F, Q

from chat_service.machinery import pgpool
from chat_service.protocol import frames
from chat_service.protocol.commerce import order_summary
from chat_service.protocol.errors import NotFound
from chat_service.protocol.frames import MAX_SEQ
from chat_service.threads import statements
from chat_service.threads.models import Event, Role, Thread

if TYPE_CHECKING:
    from chat_service.commerce.models import Order

NO_THREAD = "There is no order thread with that id for you."


def thread_for_participant(
    *, order_id: str, user_id: str, with_order: bool = False, lock: bool = False
) -> tuple[Thread, Role]:
    """The thread and the caller's role in it; NotFound for anyone but its two parties.

    ``lock`` takes the row lock (inside a transaction) that writers of a thread share.
    """
    queryset = Thread.objects.select_related("order") if with_order else Thread.objects.all()
    if lock:
        queryset = queryset.select_for_update(of=("self",)) if with_order else queryset.select_for_update()
    thread = queryset.filter(pk=order_id).filter(Q(buyer_id=user_id) | Q(seller_id=user_id)).first()
    if thread is None:
        raise NotFound(NO_THREAD)
    role = thread.role_of(user_id)
    assert role is not None
    return thread, role


def events_after_seq(*, thread_id: str, after_seq: int, limit: int) -> list[Event]:
    """Events with seq > after_seq, oldest first."""
    return list(Event.objects.filter(thread_id=thread_id, seq__gt=after_seq).order_by("seq")[:limit])


def events_before_seq(*, thread_id: str, before_seq: int | None, limit: int) -> list[Event]:
    """The ``limit`` newest events with seq < before_seq (all when None), oldest first."""
    queryset = Event.objects.filter(thread_id=thread_id)
    if before_seq is not None:
        queryset = queryset.filter(seq__lt=before_seq)
    return list(reversed(queryset.order_by("-seq")[:limit]))


def threads_last_seq(*, order_ids: list[str], chunk: int = 1000) -> dict[str, int]:
    """The last seq of each of these threads (the supervisor's periodic sync)."""
    last: dict[str, int] = {}
    for start in range(0, len(order_ids), chunk):
        rows = Thread.objects.filter(pk__in=order_ids[start : start + chunk]).values_list("pk", "last_seq")
        last.update(rows)
    return last


def unread_total_for_user(*, user_id: str) -> int:
    return unread_totals(user_ids=[user_id])[user_id]


def unread_totals(*, user_ids: list[str]) -> dict[str, int]:
    """Each user's unread events over all their threads (as buyer and as seller).

    One statement for all of them: event_append runs it for both parties of every event,
    and the ORM's two aggregates per user were a third of a message's cost (bench S1).
    """
    wanted = list(dict.fromkeys(user_ids))
    totals = dict.fromkeys(wanted, 0)
    if not wanted:
        return totals
    table = connection.ops.quote_name(Thread._meta.db_table)
    marks = ", ".join(["%s"] * len(wanted))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT u, SUM(n) FROM ("  # noqa: S608 - only placeholders and the model's table name
            f" SELECT buyer_id AS u, buyer_unread AS n FROM {table} WHERE buyer_id IN ({marks}) AND buyer_unread > 0"
            f" UNION ALL SELECT seller_id, seller_unread FROM {table} WHERE seller_id IN ({marks})"
            f" AND seller_unread > 0"
            f") AS parts GROUP BY u",
            [*wanted, *wanted],
        )
        for user_id, total in cursor.fetchall():
            totals[user_id] = int(total or 0)
    return totals


def unread_of(thread: Thread, role: Role) -> int:
    return thread.buyer_unread if role == Role.BUYER else thread.seller_unread


def read_markers(thread: Thread) -> dict[str, int]:
    return {"buyer": thread.buyer_read_seq, "seller": thread.seller_read_seq}


@dataclass(frozen=True, slots=True)
class JoinSnapshot:
    """What thread.join answers: the thread as the caller sees it, and the events to show
    (wire form, oldest first)."""

    order: Order
    role: Role
    last_seq: int
    read_seq: dict[str, int]
    unread: int
    events: list[dict[str, Any]]
    has_more: bool

    @property
    def parties(self) -> tuple[str, str]:
        return self.order.buyer_id, self.order.seller_id


def thread_join_snapshot(*, order_id: str, user_id: str, since_seq: int | None, limit: int) -> JoinSnapshot:
    """What thread.join answers (the ORM form; ``athread_join_snapshot`` on PostgreSQL).

    With ``since_seq``: the events after it, oldest first, at most ``limit``; ``has_more``
    says more missed events follow (the socket streams them right after the reply).
    Without: the newest ``limit`` events, oldest first; ``has_more`` says older history
    exists (page it with GET .../events/?before_seq=).
    """
    thread, role = thread_for_participant(order_id=order_id, user_id=user_id, with_order=True)
    if since_seq is None:
        events = events_before_seq(thread_id=thread.pk, before_seq=None, limit=limit)
    else:
        events = events_after_seq(thread_id=thread.pk, after_seq=since_seq, limit=limit)
    return _snapshot(
        thread.order,
        role,
        thread.last_seq,
        read_markers(thread),
        unread_of(thread, role),
        [frames.event_wire(e) for e in events],
        since_seq,
    )


def _snapshot(
    order: Order,
    role: Role,
    last_seq: int,
    read_seq: dict[str, int],
    unread: int,
    events: list[dict[str, Any]],
    since_seq: int | None,
) -> JoinSnapshot:
    if since_seq is None:
        has_more = bool(events) and events[0]["seq"] > 1
    else:
        has_more = bool(events) and events[-1]["seq"] < last_seq
    return JoinSnapshot(order, role, last_seq, read_seq, unread, events, has_more)


async def athread_join_snapshot(*, order_id: str, user_id: str, since_seq: int | None, limit: int) -> JoinSnapshot:
    """``thread_join_snapshot`` in one statement on the event loop (PostgreSQL)."""
    if not pgpool.enabled():
        return await database_sync_to_async(thread_join_snapshot)(
            order_id=order_id, user_id=user_id, since_seq=since_seq, limit=limit
        )
    statement = statements.JOIN_NEWEST if since_seq is None else statements.JOIN_AFTER
    params = {"order_id": order_id, "user_id": user_id, "since_seq": since_seq, "limit": limit}

    async def read(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...] | None:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchone()

    row = await pgpool.run(read)
    if row is None:
        raise NotFound(NO_THREAD)
    buyer_id, seller_id, last_seq, buyer_read, seller_read, buyer_unread, seller_unread = row[:7]
    order: Order = statements.ORDER_MODEL.from_db(  # type: ignore[assignment]  # the thread's order model
        None, statements.ORDER_FIELDS, row[7:-1]
    )
    events = [frames.event_wire_of(*columns) for columns in row[-1]]
    role = Role.BUYER if user_id == buyer_id else Role.SELLER
    return _snapshot(
        order,
        role,
        last_seq,
        {"buyer": buyer_read, "seller": seller_read},
        buyer_unread if role == Role.BUYER else seller_unread,
        events,
        since_seq,
    )


async def aevents_after_seq(
    *, order_id: str, after_seq: int, until_seq: int | None, limit: int
) -> list[dict[str, Any]]:
    """Events after ``after_seq`` (and up to ``until_seq``), oldest first, wire form."""
    until = MAX_SEQ if until_seq is None else until_seq
    if not pgpool.enabled():
        events = await database_sync_to_async(events_after_seq)(thread_id=order_id, after_seq=after_seq, limit=limit)
        return [frames.event_wire(e) for e in events if e.seq <= until]
    params = {"order_id": order_id, "after_seq": after_seq, "until_seq": until, "limit": limit}

    async def read(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
        cursor = await conn.execute(statements.EVENTS_AFTER, params)
        return await cursor.fetchall()

    return [frames.event_wire_of(*row) for row in await pgpool.run(read)]


async def athreads_last_seq(*, order_ids: list[str]) -> dict[str, int]:
    """The last seq of each of these threads (the supervisor's periodic sync)."""
    if not pgpool.enabled():
        return await database_sync_to_async(threads_last_seq)(order_ids=order_ids)

    async def read(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
        cursor = await conn.execute(statements.LAST_SEQS, {"order_ids": order_ids})
        return dict(await cursor.fetchall())

    return await pgpool.run(read)


async def athread_parties(*, order_id: str, user_id: str) -> tuple[str, str]:
    """(buyer_id, seller_id) of a thread the caller is a party of; NotFound otherwise."""
    if not pgpool.enabled():
        thread, _ = await database_sync_to_async(thread_for_participant)(order_id=order_id, user_id=user_id)
        return thread.buyer_id, thread.seller_id

    async def read(conn: psycopg.AsyncConnection[Any]) -> tuple[str, str] | None:
        cursor = await conn.execute(statements.PARTIES, {"order_id": order_id, "user_id": user_id})
        return await cursor.fetchone()

    row = await pgpool.run(read)
    if row is None:
        raise NotFound(NO_THREAD)
    return row


def threads_for_user(*, user_id: str, unread_only: bool, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """The user's threads, most recent activity first, with unread counts and last event."""
    queryset = Thread.objects.select_related("order").filter(Q(buyer_id=user_id) | Q(seller_id=user_id))
    if unread_only:
        queryset = queryset.filter(Q(buyer_id=user_id, buyer_unread__gt=0) | Q(seller_id=user_id, seller_unread__gt=0))
    # Threads with no events yet (last_event_at NULL) go last, not first as DESC would put them.
    ordering = (F("last_event_at").desc(nulls_last=True), F("created_at").desc(), "pk")
    threads = list(queryset.order_by(*ordering)[offset : offset + limit])
    last_events = {e.thread_id: e for e in Event.objects.filter(_last_event_filter(threads))}
    result = []
    for thread in threads:
        role = thread.role_of(user_id)
        assert role is not None
        last = last_events.get(thread.pk)
        result.append(
            {
                "order": order_summary(thread.order),
                "role": role.value,
                "last_seq": thread.last_seq,
                "unread": unread_of(thread, role),
                "read_seq": read_markers(thread),
                "last_event": frames.event_wire(last) if last is not None else None,
            }
        )
    return result


def _last_event_filter(threads: list[Thread]) -> Q:
    condition = Q()
    for thread in threads:
        if thread.last_seq:
            condition |= Q(thread_id=thread.pk, seq=thread.last_seq)
    return condition if condition else Q(pk__in=[])
