"""Group commit (services.MessageBatcher): concurrent sends of a process share statements,
and each message still gets its own seq, its own answer and exactly one row."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from channels.db import database_sync_to_async as db

from chat_service.protocol.errors import NotFound
from chat_service.threads import services
from chat_service.threads.models import Event
from chat_service.threads.notifications.models import Notification
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)

THREADS, PER_THREAD = 12, 5


@pytest.fixture
async def orders():
    return [await db(make_order)(buyer_id=f"b{i}", seller_id=f"s{i}") for i in range(THREADS)]


def send(order, author: str, n: int, **kwargs):
    return services.amessage_send(
        user_id=author, order_id=order.pk, client_msg_id=f"{order.pk}-{n}", body=f"message {n}", **kwargs
    )


async def test_concurrent_sends_share_statements_and_each_keeps_its_own_seq(orders):
    batcher = services._batcher()
    outcomes = await asyncio.gather(
        *(send(order, order.buyer_id if n % 2 else order.seller_id, n) for n in range(PER_THREAD) for order in orders)
    )
    assert batcher.messages == THREADS * PER_THREAD
    assert batcher.statements < batcher.messages  # shared
    assert all(o.created for o in outcomes)
    for order in orders:
        stored = await db(lambda o=order: list(Event.objects.filter(thread_id=o.pk).values_list("seq", "body")))()
        assert sorted(seq for seq, _ in stored) == list(range(1, PER_THREAD + 1))
        acked = {o.event.seq: o.event.body for o in outcomes if o.event.thread_id == order.pk}
        assert acked == dict(stored)  # each answer is its own message's row


async def test_a_repeat_inside_a_batch_is_answered_with_the_original_and_the_rest_are_stored(orders):
    first = await send(orders[0], orders[0].buyer_id, 0)
    outcomes = await asyncio.gather(
        send(orders[0], orders[0].buyer_id, 0),  # the repeat fails the shared statement...
        *(send(order, order.buyer_id, 1) for order in orders[1:]),  # ...whose others go on alone
    )
    assert (outcomes[0].created, outcomes[0].event.pk) == (False, first.event.pk)
    assert all(o.created for o in outcomes[1:])
    assert await db(Event.objects.count)() == THREADS


async def test_a_stranger_in_a_batch_is_refused_alone(orders):
    outcomes = await asyncio.gather(
        *(send(order, order.buyer_id, 0) for order in orders[:4]),
        send(orders[4], "mallory", 0),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes] == ["SendOutcome"] * 4 + [NotFound.__name__]
    assert await db(Event.objects.count)() == 4


async def test_no_notification_row_for_recipients_known_online_in_a_batch(orders):
    await asyncio.gather(
        *(
            send(order, order.buyer_id, 0, online={order.seller_id} if i % 2 else set())
            for i, order in enumerate(orders)
        )
    )
    rows = await db(lambda: Counter(Notification.objects.values_list("user_id", flat=True)))()
    assert rows == Counter(order.seller_id for i, order in enumerate(orders) if not i % 2)
