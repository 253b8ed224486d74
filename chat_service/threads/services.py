"""Writes to threads. Each service is one transaction and has its pushes sent after commit.

Services validate authorization themselves (the caller's id decides the role); field
formats are validated by ``protocol`` before a service is called.

Every thread event is appended by one rule (``event_append``): the next seq under the
thread's row lock, the author's read marker moved to it, one more unread for everyone
else, a notification row for each recipient who is not online, and the pushes after
commit. On PostgreSQL the rule is one statement (chat_service.threads.statements.APPEND), run
by the sync services through Django's cursor inside their transaction and by
``amessage_send`` on the event loop's pool in autocommit; on SQLite (the embedded
default) it is ``_append_portable``, the same rule in a few statements. The service
tests run against both.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat_service import fanout
from chat_service.machinery import pgpool
from chat_service.protocol.errors import NotFound
from chat_service.threads import statements
from chat_service.threads.models import Event, EventKind, Role, Thread
from chat_service.threads.notifications import texts
from chat_service.threads.notifications.models import Notification
from chat_service.threads.selectors import (
    NO_THREAD,
    thread_for_participant,
    unread_of,
    unread_total_for_user,
    unread_totals,
)

if TYPE_CHECKING:
    from chat_service.commerce.models import Order


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A thread event as APPEND stored it (the columns of Event), without an ORM object:
    the hot path makes one per message, and a model's __init__ was 3 % of its CPU."""

    id: int
    thread_id: str
    seq: int
    kind: str
    author_id: str | None
    author_role: str
    body: str
    data: dict[str, Any]
    client_msg_id: str | None
    created_at: datetime

    @property
    def pk(self) -> int:
        return self.id


@dataclass(frozen=True, slots=True)
class Recipient:
    """A party who did not write the event: its unread count in the thread and overall."""

    user_id: str
    role: str
    unread: int
    unread_total: int


@dataclass(frozen=True, slots=True)
class Appended:
    """A stored event and what its pushes need (chat_service.fanout.appended)."""

    event: StoredEvent | Event
    order: texts.OrderFacts
    recipients: tuple[Recipient, ...]

    def note(self) -> texts.Note:
        """The notification a recipient's socket shows when it has not the thread open."""
        event = self.event
        return texts.for_event(
            event_kind=event.kind, author_role=event.author_role, body=event.body, data=event.data, order=self.order
        )


@dataclass(frozen=True, slots=True)
class SendOutcome:
    event: StoredEvent | Event
    created: bool
    # What to publish once the sender was answered (empty for a repeat).
    publications: list[fanout.Publication]
    peers: tuple[str, ...] = ()  # the other parties of the thread


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


@dataclass(frozen=True, slots=True)
class _Draft:
    """The event to append, as the caller gives it."""

    order_id: str
    kind: str
    author_id: str | None
    body: str
    data: dict[str, Any]
    client_msg_id: str | None
    now: datetime
    online: Collection[str]

    def notification(self) -> tuple[str, bool, datetime]:
        """The notification row's kind, urgency and due time (urgent: due at once)."""
        kind = texts.kind_for_event(event_kind=self.kind, data=self.data)
        urgent = texts.is_urgent(kind)
        return kind, urgent, self.now + timedelta(seconds=0.0 if urgent else settings.NOTIFY["DIGEST_DELAY_S"])

    def params(self) -> dict[str, Any]:
        note_kind, urgent, due_at = self.notification()
        return {
            "order_id": self.order_id,
            "author_id": self.author_id,
            "kind": self.kind,
            "body": self.body,
            "data": fanout.json_text(self.data),
            "client_msg_id": self.client_msg_id,
            "now": self.now,
            "note_kind": note_kind,
            "urgent": urgent,
            "due_at": due_at,
            "online": list(self.online),
        }

    def appended(self, rows: list[tuple[Any, ...]]) -> Appended:
        """The APPEND statement's rows (see chat_service.threads.statements)."""
        if not rows:
            raise NotFound(NO_THREAD)
        event_id, seq, author_role, _, _, _, _, item_title, supplier_name = rows[0][:9]
        event = StoredEvent(
            event_id,
            self.order_id,
            seq,
            self.kind,
            self.author_id,
            author_role,
            self.body,
            self.data,
            self.client_msg_id,
            self.now,
        )
        recipients = tuple(
            Recipient(user_id, role, unread, int(total))
            for *_, user_id, role, unread, total in rows
            if user_id is not None
        )
        return Appended(event, texts.OrderFacts(self.order_id, item_title, supplier_name), recipients)


def event_append(
    *,
    thread: Thread,
    kind: EventKind,
    author_id: str | None,
    author_role: Role,
    body: str = "",
    data: dict[str, Any] | None = None,
    client_msg_id: str | None = None,
    online: Collection[str] = (),
) -> StoredEvent | Event:
    """Append an event to ``thread`` inside the caller's transaction. Does not validate.

    ``author_role`` must be what ``author_id`` is in the thread (None: the system).
    ``online``: recipients known to have a live connection (no notification row: they
    see the event live). The thread object's counters and markers are updated to match
    the row. Pushes go out after COMMIT.
    """
    assert transaction.get_connection().in_atomic_block, "event_append needs a transaction"
    assert author_role == (thread.role_of(author_id) if author_id is not None else Role.SYSTEM)
    draft = _Draft(thread.pk, kind, author_id, body, data or {}, client_msg_id, timezone.now(), online)
    if pgpool.enabled():
        with connection.cursor() as cursor:
            cursor.execute(statements.APPEND, draft.params())
            rows = cursor.fetchall()
        appended = draft.appended(rows)
        _mirror(thread, rows[0], draft.now)
    else:
        appended = _append_portable(thread, draft)
    fanout.publish_on_commit(fanout.appended(appended))
    return appended.event


def _mirror(thread: Thread, row: tuple[Any, ...], now: datetime) -> None:
    """Bring the caller's thread object up to the row APPEND wrote (its first result row)."""
    _, seq, author_role, _, _, thread.buyer_unread, thread.seller_unread = row[:7]
    thread.last_seq, thread.last_event_at = seq, now
    if author_role == Role.BUYER:
        thread.buyer_read_seq = seq
    elif author_role == Role.SELLER:
        thread.seller_read_seq = seq


def _append_portable(thread: Thread, draft: _Draft) -> Appended:
    """APPEND for SQLite, through the ORM, statement by statement (the thread is locked
    by the caller's transaction: SQLite's IMMEDIATE transactions lock the database)."""
    seq = thread.last_seq + 1
    author_role = thread.role_of(draft.author_id) if draft.author_id is not None else Role.SYSTEM
    assert author_role is not None, "the author is a party (the caller checked)"
    if author_role == Role.BUYER:
        thread.buyer_read_seq, thread.buyer_unread = seq, 0
    else:
        thread.buyer_unread += 1
    if author_role == Role.SELLER:
        thread.seller_read_seq, thread.seller_unread = seq, 0
    else:
        thread.seller_unread += 1
    thread.last_seq, thread.last_event_at = seq, draft.now
    thread.save(
        update_fields=[
            "last_seq",
            "last_event_at",
            "buyer_read_seq",
            "buyer_unread",
            "seller_read_seq",
            "seller_unread",
        ]
    )
    event = Event.objects.create(
        thread_id=thread.pk,
        seq=seq,
        kind=draft.kind,
        author_id=draft.author_id,
        author_role=author_role,
        body=draft.body,
        data=draft.data,
        client_msg_id=draft.client_msg_id,
        created_at=draft.now,
    )
    parties = [(Role.BUYER, thread.buyer_id), (Role.SELLER, thread.seller_id)]
    recipients = [(role, user_id) for role, user_id in parties if role != author_role]
    note_kind, urgent, due_at = draft.notification()
    Notification.objects.bulk_create(
        [
            Notification(
                user_id=user_id,
                thread_id=thread.pk,
                event_seq=seq,
                kind=note_kind,
                urgent=urgent,
                created_at=draft.now,
                due_at=due_at,
            )
            for _, user_id in recipients
            if user_id not in draft.online
        ]
    )
    totals = unread_totals(user_ids=[user_id for _, user_id in recipients])
    order = statements.ORDER_MODEL._default_manager.values_list("item_title", "supplier_name").get(pk=thread.pk)
    return Appended(
        event,
        texts.OrderFacts(thread.pk, *order),
        tuple(Recipient(user_id, role.value, unread_of(thread, role), totals[user_id]) for role, user_id in recipients),
    )


# --- chat messages ------------------------------------------------------------------------


def message_send(
    *, user_id: str, order_id: str, client_msg_id: str, body: str, online: Collection[str] = ()
) -> SendOutcome:
    """Store a chat message from a participant. Authorizes; expects validated fields.

    Idempotent on (thread, author, client_msg_id): a repeat returns the stored event and
    writes nothing, also when the original is still committing concurrently. The pushes
    go out after commit.
    """
    event: StoredEvent | Event
    try:
        with transaction.atomic():
            if pgpool.enabled():
                event = _message_append(
                    order_id=order_id, author_id=user_id, body=body, client_msg_id=client_msg_id, online=online
                )
            else:
                thread, role = thread_for_participant(order_id=order_id, user_id=user_id, lock=True)
                event = event_append(
                    thread=thread,
                    kind=EventKind.MESSAGE,
                    author_id=user_id,
                    author_role=role,
                    body=body,
                    client_msg_id=client_msg_id,
                    online=online,
                )
    except IntegrityError:
        # The unique (thread, author, client_msg_id) index refused a repeat; the whole
        # transaction, its seq included, rolled back.
        original = Event.objects.filter(thread_id=order_id, author_id=user_id, client_msg_id=client_msg_id).first()
        if original is None:
            raise
        return SendOutcome(event=original, created=False, publications=[])
    return SendOutcome(event=event, created=True, publications=[])


def _message_append(
    *, order_id: str, author_id: str, body: str, client_msg_id: str, online: Collection[str]
) -> StoredEvent | Event:
    """A chat message through APPEND alone (PostgreSQL): its UPDATE takes the row lock
    and checks that the author is a party. Inside the caller's transaction."""
    draft = _Draft(order_id, EventKind.MESSAGE, author_id, body, {}, client_msg_id, timezone.now(), online)
    with connection.cursor() as cursor:
        cursor.execute(statements.APPEND, draft.params())
        appended = draft.appended(cursor.fetchall())
    fanout.publish_on_commit(fanout.appended(appended))
    return appended.event


async def amessage_send(
    *, user_id: str, order_id: str, client_msg_id: str, body: str, online: Collection[str] = ()
) -> SendOutcome:
    """``message_send`` for the socket: on PostgreSQL through this process's
    ``MessageBatcher`` (concurrent sends share one statement, each its own seq), else the
    sync service in a thread. The caller publishes ``publications`` after answering the
    sender (see ChatConsumer.on_message_send)."""
    if not pgpool.enabled():
        outcome = await database_sync_to_async(_message_send_collected)(
            user_id=user_id, order_id=order_id, client_msg_id=client_msg_id, body=body, online=online
        )
        return outcome
    draft = _Draft(order_id, EventKind.MESSAGE, user_id, body, {}, client_msg_id, timezone.now(), online)
    return await _batcher().send(draft)


async def _append_one(draft: _Draft) -> SendOutcome:
    """One message in its own statement (APPEND); a repeated client_msg_id returns the
    stored event."""

    async def append(conn: psycopg.AsyncConnection[Any]) -> SendOutcome:
        try:
            cursor = await conn.execute(statements.APPEND, draft.params())
        except psycopg.errors.UniqueViolation:
            cursor = await conn.execute(statements.EVENT_BY_CLIENT_MSG_ID, draft.params())
            row = await cursor.fetchone()
            if row is None:
                raise
            event_id, *columns = row
            return SendOutcome(event=StoredEvent(event_id, draft.order_id, *columns), created=False, publications=[])
        return _sent(draft.appended(await cursor.fetchall()))

    return await pgpool.run(append)


def _sent(appended: Appended) -> SendOutcome:
    return SendOutcome(
        event=appended.event,
        created=True,
        publications=fanout.appended(appended),
        peers=tuple(r.user_id for r in appended.recipients),
    )


class MessageBatcher:
    """Group commit: the chat messages a process sends while a statement is in flight
    share the next statement (statements.APPEND_MESSAGES), one per thread at a time.

    Nothing waits for a batch to fill: a message that finds nothing in flight goes out at
    once, alone; under load, messages gather while the previous statement runs. Each keeps
    its own seq (its thread's row lock, taken in order_id order) and its ack follows the
    commit of the statement that stored it. A batch that fails (a repeated client_msg_id
    fails the whole statement on the unique index) is sent again message by message,
    where each gets its own answer.
    """

    def __init__(self) -> None:
        self._waiting: list[tuple[_Draft, asyncio.Future[SendOutcome]]] = []
        self._draining: asyncio.Task[None] | None = None
        self.statements = 0
        self.messages = 0

    async def send(self, draft: _Draft) -> SendOutcome:
        outcome: asyncio.Future[SendOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((draft, outcome))
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain(), name="message-batcher")
        return await outcome

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch: list[Any] = []
                later: list[Any] = []
                threads: set[str] = set()
                for item in self._waiting:  # one message per thread and statement, in order
                    (later if item[0].order_id in threads else batch).append(item)
                    threads.add(item[0].order_id)
                self._waiting = later
                await self._store(batch)
        finally:
            self._draining = None

    async def _store(self, batch: list[tuple[_Draft, asyncio.Future[SendOutcome]]]) -> None:
        self.statements += 1
        self.messages += len(batch)
        try:
            outcomes = await (_append_many([d for d, _ in batch]) if len(batch) > 1 else _append_single(batch[0][0]))
        except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
            outcomes = [await _settled(_append_one(draft)) for draft, _ in batch]
        except Exception as exc:  # noqa: BLE001 - every sender hears of it
            outcomes = [exc] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


async def _append_single(draft: _Draft) -> list[SendOutcome | BaseException]:
    return [await _settled(_append_one(draft))]


async def _settled(work: Awaitable[SendOutcome]) -> SendOutcome | BaseException:
    try:
        return await work
    except Exception as exc:  # noqa: BLE001 - handed to its sender
        return exc


async def _append_many(drafts: list[_Draft]) -> list[SendOutcome | BaseException]:
    now = timezone.now()
    _, _, due_at = drafts[0].notification()
    params = {
        "ords": list(range(len(drafts))),
        "order_ids": [d.order_id for d in drafts],
        "author_ids": [d.author_id for d in drafts],
        "bodies": [d.body for d in drafts],
        "client_msg_ids": [d.client_msg_id for d in drafts],
        "rows": [not d.online for d in drafts],
        "now": now,
        "due_at": due_at,
    }

    async def append(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
        cursor = await conn.execute(statements.APPEND_MESSAGES, params)
        return await cursor.fetchall()

    by_ord: dict[int, list[tuple[Any, ...]]] = {}
    for ord_, *row in await pgpool.run(append):
        by_ord.setdefault(ord_, []).append(tuple(row))
    outcomes: list[SendOutcome | BaseException] = []
    for index, draft in enumerate(drafts):
        rows = by_ord.get(index)
        if rows is None:
            outcomes.append(NotFound(NO_THREAD))
            continue
        outcomes.append(_sent(replace(draft, now=now).appended(rows)))
    return outcomes


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MessageBatcher] = weakref.WeakKeyDictionary()


def _batcher() -> MessageBatcher:
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = MessageBatcher()
    return batcher


def _message_send_collected(**kwargs: Any) -> SendOutcome:
    """message_send with its pushes handed back instead of sent at commit (the socket
    on SQLite sends them itself, after its reply)."""
    with fanout.collecting() as collected:
        outcome = message_send(**kwargs)
    return SendOutcome(event=outcome.event, created=outcome.created, publications=collected)


# --- read markers -------------------------------------------------------------------------


def thread_read(*, user_id: str, order_id: str, seq: int, origin: str | None = None) -> ReadOutcome:
    """Move the caller's read marker forward to ``seq`` (never back, never past the end).

    Authorizes. Pushes thread.read_updated to the thread and unread.updated to every
    socket of the reader (but ``origin``, the socket that asked), only when the marker
    moved.
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
        unread = Event.objects.filter(thread_id=thread.pk, seq__gt=new_read).exclude(author_id=user_id).count()
        Thread.objects.filter(pk=thread.pk).update(**{read_field: new_read, unread_field: unread})
        total = unread_total_for_user(user_id=user_id)
        fanout.publish_on_commit(
            fanout.read_moved(
                order_id=order_id, user_id=user_id, seq=new_read, unread=unread, unread_total=total, origin=origin
            )
        )
    return ReadOutcome(new_read, unread, total, changed=True)
