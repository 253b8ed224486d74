"""Fan-out: the only module that publishes, and only what was committed.

It turns what a service stored into *publications*: per topic one envelope that carries
the frame's JSON text, encoded here once, and the few facts each receiving socket needs
to decide without decoding the frame (chat_service.machinery.broadcast delivers them). One event
is at most one publication to its thread plus one to each recipient whose counts
changed; never one per frame kind.

Envelopes (``k`` says which):
* ``event`` on ``t.<order_id>``: {o, s: seq, f: thread.event}; a socket joined to the
  thread shows it in seq order (its cursor).
* ``unread`` on ``u.<user_id>``: {o, d, f: unread.updated, n: notification or null, x};
  ``d`` (derivable) says that a socket joined to the thread already knows it from the
  thread.event and gets nothing; others get ``n`` if set and the thread is not muted,
  else ``f``. ``x``: the socket that caused it (it has its reply) gets nothing.
* ``read`` on ``t.<order_id>``: {o, f: thread.read_updated, x}.
* ``typing`` on ``t.<order_id>``: {o, u: typist, f}; not shown to the typist's sockets.
* ``mute`` on ``u.<user_id>``: {o, m: muted, f}.
* ``presence`` on ``p.<seller_id>``: {p: seller_id, v: version, f}; a socket shows only
  newer versions.

When it is sent: services call ``publish_on_commit`` inside their transaction (sent by
the thread that commits, after COMMIT); the socket's hot path, which commits on the
event loop, calls ``publish`` itself once it has answered the sender. A failing publish
is logged and swallowed: the event is committed and every client recovers it by seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
from django.db import transaction

from chat_service.machinery import broadcast
from chat_service.machinery.broadcast import Publication, presence_topic, thread_topic, user_topic
from chat_service.protocol import frames

if TYPE_CHECKING:
    from chat_service.threads.services import Appended

__all__ = [
    "Publication",
    "appended",
    "collecting",
    "event_to_thread",
    "json_text",
    "mute_changed",
    "presence_changed",
    "publish",
    "publish_on_commit",
    "read_moved",
    "typing",
]

_collector: ContextVar[list[Publication] | None] = ContextVar("fanout_collector", default=None)


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _envelope(topic: str, **fields: Any) -> Publication:
    return topic, orjson.dumps(fields)


# --- publications ------------------------------------------------------------------------------


def appended(stored: Appended) -> list[Publication]:
    """An appended event: the thread's stream, and each recipient's counts (with the
    notification a socket that has not the thread open shows)."""
    event = stored.event
    order_id = event.thread_id
    publications = [event_to_thread(event)]
    if stored.recipients:
        note = stored.note()
        for recipient in stored.recipients:
            counts = {"unread": recipient.unread, "unread_total": recipient.unread_total}
            notification = frames.notification(
                kind=note.kind, order_id=order_id, title=note.title, body=note.body, event_seq=event.seq, **counts
            )
            publications.append(
                _envelope(
                    user_topic(recipient.user_id),
                    k="unread",
                    o=order_id,
                    d=True,
                    f=frames.encode(frames.unread_updated(order_id, **counts)),
                    n=frames.encode(notification),
                )
            )
    return publications


def event_to_thread(event: Any) -> Publication:
    """A stored event for the sockets that have its thread open."""
    order_id = event.thread_id
    wire = orjson.Fragment(orjson.dumps(frames.event_wire(event)))
    return _envelope(
        thread_topic(order_id), k="event", o=order_id, s=event.seq, f=frames.encode(frames.thread_event(order_id, wire))
    )


def read_moved(
    *, order_id: str, user_id: str, seq: int, unread: int, unread_total: int, origin: str | None
) -> list[Publication]:
    """A reader's marker moved: the other party's "seen", and the reader's other sockets' counts."""
    return [
        _envelope(
            thread_topic(order_id),
            k="read",
            o=order_id,
            x=origin,
            f=frames.encode(frames.read_updated(order_id, user_id, seq)),
        ),
        _envelope(
            user_topic(user_id),
            k="unread",
            o=order_id,
            d=False,
            x=origin,
            n=None,
            f=frames.encode(frames.unread_updated(order_id, unread, unread_total)),
        ),
    ]


def typing(*, order_id: str, user_id: str) -> list[Publication]:
    return [
        _envelope(
            thread_topic(order_id),
            k="typing",
            o=order_id,
            u=user_id,
            f=frames.encode(frames.typing_started(order_id, user_id)),
        )
    ]


def mute_changed(*, user_id: str, order_id: str, muted: bool) -> list[Publication]:
    return [
        _envelope(
            user_topic(user_id), k="mute", o=order_id, m=muted, f=frames.encode(frames.mute_updated(order_id, muted))
        )
    ]


def presence_changed(*, seller_id: str, version: int, wire: dict[str, Any]) -> list[Publication]:
    return [
        _envelope(
            presence_topic(seller_id),
            k="presence",
            p=seller_id,
            v=version,
            f=frames.encode(frames.presence_changed(seller_id, wire)),
        )
    ]


# --- sending -----------------------------------------------------------------------------------


def publish_on_commit(publications: list[Publication]) -> None:
    """Send ``publications`` after the current transaction commits."""
    transaction.on_commit(partial(_hand_over, publications))


def _hand_over(publications: list[Publication]) -> None:
    collected = _collector.get()
    if collected is not None:
        collected.extend(publications)
        return
    broadcast.publish_sync(publications)


async def publish(publications: list[Publication]) -> None:
    """Send from the event loop (what committed there, or what is never stored: typing).
    A loop without sockets (a sync view's ``async_to_sync``) gets no hub of its own: the
    publications go out through the sync client, in a thread."""
    hub = broadcast.existing_hub()
    if hub is not None:
        await hub.publish(publications)
    elif publications:
        await asyncio.to_thread(broadcast.publish_sync, publications)


@contextmanager
def collecting() -> Iterator[list[Publication]]:
    """Collect, instead of sending, what commits inside the block publish: the caller
    sends it when it has answered (the socket on SQLite, the embedded worker)."""
    collected: list[Publication] = []
    token = _collector.set(collected)
    try:
        yield collected
    finally:
        _collector.reset(token)
