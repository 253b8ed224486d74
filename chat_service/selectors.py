"""Reads of threads and events. No writes, no pushes.

Every selector that takes a ``user_id`` authorizes: a thread is visible only to its
order's buyer and seller. To anyone else it does not exist (``NotFound``), so order ids
cannot be probed (see docs/protocol.md, "Authorization").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import F, Q

from chat_service import protocol
from chat_service.errors import NotFound
from chat_service.models import Event, Role, Thread

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
            f" SELECT buyer_id AS u, buyer_unread AS n FROM {table} WHERE buyer_id IN ({marks})"
            f" UNION ALL SELECT seller_id, seller_unread FROM {table} WHERE seller_id IN ({marks})"
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
    thread: Thread
    role: Role
    events: list[Event]
    has_more: bool

    def as_wire(self) -> dict[str, Any]:
        return {
            "order": self.thread.order.summary(),
            "role": self.role.value,
            "last_seq": self.thread.last_seq,
            "read_seq": read_markers(self.thread),
            "unread": unread_of(self.thread, self.role),
            "events": [protocol.event_wire(e) for e in self.events],
            "has_more": self.has_more,
        }


def thread_join_snapshot(*, order_id: str, user_id: str, since_seq: int | None, limit: int) -> JoinSnapshot:
    """What thread.join answers.

    With ``since_seq``: the events after it, oldest first, at most ``limit``; ``has_more``
    says more missed events follow (the consumer streams them right after the reply).
    Without: the newest ``limit`` events, oldest first; ``has_more`` says older history
    exists (page it with GET .../events/?before_seq=).
    """
    thread, role = thread_for_participant(order_id=order_id, user_id=user_id, with_order=True)
    if since_seq is None:
        events = events_before_seq(thread_id=thread.pk, before_seq=None, limit=limit)
        has_more = bool(events) and events[0].seq > 1
    else:
        events = events_after_seq(thread_id=thread.pk, after_seq=since_seq, limit=limit)
        has_more = bool(events) and events[-1].seq < thread.last_seq
    return JoinSnapshot(thread=thread, role=role, events=events, has_more=has_more)


def threads_for_user(*, user_id: str, unread_only: bool, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """The user's threads, most recent activity first, with unread counts and last event."""
    queryset = Thread.objects.select_related("order").filter(Q(buyer_id=user_id) | Q(seller_id=user_id))
    if unread_only:
        queryset = queryset.filter(
            Q(buyer_id=user_id, buyer_unread__gt=0) | Q(seller_id=user_id, seller_unread__gt=0)
        )
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
                "order": thread.order.summary(),
                "role": role.value,
                "last_seq": thread.last_seq,
                "unread": unread_of(thread, role),
                "read_seq": read_markers(thread),
                "last_event": protocol.event_wire(last) if last is not None else None,
            }
        )
    return result


def _last_event_filter(threads: list[Thread]) -> Q:
    condition = Q()
    for thread in threads:
        if thread.last_seq:
            condition |= Q(thread_id=thread.pk, seq=thread.last_seq)
    return condition if condition else Q(pk__in=[])
