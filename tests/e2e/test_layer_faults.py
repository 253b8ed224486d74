"""The broker is at most once; sockets repair what it loses, repeats or reorders.

Redis pub/sub drops what is published while a subscriber is away (a restart), and two
processes' publishes can reach a socket in either order. Each socket keeps a per-thread
cursor (chat_service.transport.socket.streams): a jump is filled from PostgreSQL, anything at or below the
cursor is dropped. Here the faults are made on the real stack, from the test process:
events stored without their publication (loss), events already shown published again
(repeats), and missed events published newest first (reordering), on the same Redis
topics the two daphne processes use.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat_service import fanout
from chat_service.client import ChatClient
from chat_service.machinery import broadcast
from chat_service.threads import services
from chat_service.threads.models import Event
from tests.e2e.streams import assert_stream, pushed_events
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BUYER, SELLER = "buyer-lf", "seller-lf"


@database_sync_to_async
def store_unpublished(order_id: str, count: int) -> None:
    """``count`` messages from the buyer whose publications are thrown away: lost."""
    for _ in range(count):
        with fanout.collecting():
            services.message_send(user_id=BUYER, order_id=order_id, client_msg_id=f"lost-{_counter()}", body="lost")


@database_sync_to_async
def publish_again(order_id: str, seqs: tuple[int, ...]) -> None:
    """The stored events ``seqs`` published to the thread, in this order."""
    events = {e.seq: e for e in Event.objects.filter(thread_id=order_id, seq__in=seqs)}
    broadcast.publish_sync([fanout.event_to_thread(events[seq]) for seq in seqs])


def _counter(state: list[int] = [0]) -> int:  # noqa: B006 - a process-wide counter on purpose
    state[0] += 1
    return state[0]


async def test_socket_repairs_lost_repeated_and_reordered_publications(daphne):
    server_a, server_b = await daphne.start(2, CHAT_SEND_RATE_COUNT="100000")
    order = await database_sync_to_async(make_order)(buyer_id=BUYER, seller_id=SELLER)
    order_id = order.order_id
    buyer = await ChatClient.open(server_a.ws_url, token_for(BUYER))
    seller = await ChatClient.open(server_b.ws_url, token_for(SELLER))
    try:
        await seller.request("thread.join", order_id=order_id)
        await buyer.request("thread.join", order_id=order_id)

        async def send(n: int) -> None:
            for _ in range(n):
                await buyer.send_message(order_id, "hi")

        await send(2)
        assert [e["seq"] for e in await pushed_events(seller, order_id, until_seq=2)] == [1, 2]

        # Loss: seqs 3..10 are never published; 11 is, and shows the gap.
        await store_unpublished(order_id, 8)
        await send(1)
        stream = await pushed_events(seller, order_id, until_seq=11)
        assert_stream([e["seq"] for e in stream], 3, 11, who="after a loss", client=seller)

        # Repeats: events the socket already showed come again; only 12 is new.
        await publish_again(order_id, (4, 11, 1))
        await send(1)
        stream = await pushed_events(seller, order_id, until_seq=12)
        assert_stream([e["seq"] for e in stream], 12, 12, who="after repeats", client=seller)

        # Reordering: 13..15 are missed, then arrive newest first, then 16.
        await store_unpublished(order_id, 3)
        await publish_again(order_id, (15, 14, 13))
        await send(1)
        stream = await pushed_events(seller, order_id, until_seq=16)
        assert_stream([e["seq"] for e in stream], 13, 16, who="after reordering", client=seller)
        # The buyer's stream: its own messages are its replies, the lost ones were filled.
        buyer_stream = [e["seq"] for e in await pushed_events(buyer, order_id, until_seq=16)]
        assert_stream(buyer_stream, 1, 16, who="buyer", client=buyer)
    finally:
        await buyer.close()
        await seller.close()
