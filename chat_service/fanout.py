"""Fan-out: the only module that calls the channel layer's group_send.

Services never push directly. They call ``publish_on_commit`` inside their transaction;
the message leaves only after COMMIT, so nothing is pushed that was not stored.

Where the push is sent from:
* In the consumer, ``call_service`` runs the service in the database thread with a
  collector in a context variable; the on-commit hooks append to it and the consumer's
  event loop sends the collected messages, in order, once the service returned. The
  database thread never waits on Redis.
* Anywhere else (HTTP views, the worker, the bridge) the hook sends at once with
  ``async_to_sync``.

A failing group_send is logged and swallowed: the event is already committed and every
client recovers it by seq (gap backfill, or thread.join with since_seq).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat_service.db import db_call

log = logging.getLogger(__name__)

T = TypeVar("T")
Message = tuple[str, dict[str, Any]]

_collector: ContextVar[list[Message] | None] = ContextVar("fanout_collector", default=None)


def thread_group(order_id: str) -> str:
    return f"thread.{order_id}"


def user_group(user_id: str) -> str:
    return f"user.{user_id}"


def publish_on_commit(group: str, message: dict[str, Any]) -> None:
    """Schedule ``message`` for ``group`` after the current transaction commits."""
    transaction.on_commit(partial(_hand_over, group, message))


def _hand_over(group: str, message: dict[str, Any]) -> None:
    collected = _collector.get()
    if collected is not None:
        collected.append((group, message))
        return
    try:
        async_to_sync(_send_all)([(group, message)])
    except Exception:  # noqa: BLE001 - logged; the event is committed and recoverable
        log.exception("fan-out from a sync context failed group=%s", group)


async def _send_all(messages: list[Message]) -> None:
    layer = get_channel_layer()
    for group, message in messages:
        try:
            await layer.group_send(group, message)
        except Exception:  # noqa: BLE001 - see module docstring
            log.exception("group_send failed group=%s type=%s", group, message.get("type"))


async def publish_now(group: str, message: dict[str, Any]) -> None:
    """Send an ephemeral message that is never stored (typing indicators)."""
    await _send_all([(group, message)])


@contextmanager
def collecting() -> Iterator[list[Message]]:
    """Collect, instead of sending, what commits inside the block schedules."""
    collected: list[Message] = []
    token = _collector.set(collected)
    try:
        yield collected
    finally:
        _collector.reset(token)


async def call_service(func: Callable[..., T], /, **kwargs: Any) -> T:
    """Run a sync service in the database thread, then send what it scheduled."""
    with collecting() as collected:
        try:
            return await db_call(func, **kwargs)
        finally:
            # Whatever committed goes out, even when the service raised afterwards.
            if collected:
                await _send_all(collected)
