"""The channel layer is at most once; sockets repair what it loses, repeats or reorders.

channels-redis drops silently (a channel over capacity, a group member that expired, a
Redis restart) and two processes' pushes can reach a socket in either order. The
consumer keeps a per-thread cursor: a jump is filled from PostgreSQL, anything at or
below the cursor is dropped. Here the faults are made on the real layer: the socket's
group membership is taken away in Redis while events are written (loss), and events
already delivered are group_sent again, out of order, from the test process (repeats,
reordering). The faults are made in the core layer's data (a group's sorted set), so this
test runs that layer; the repair is the consumer's, the same on either layer.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat_service import fanout, protocol
from chat_service.client import ChatClient
from chat_service.models import Event
from tests.e2e.streams import assert_stream, pushed_events
from tests.factories import make_order, token_for
from tests.layers import CORE_LAYER_ENV, core_layer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BUYER, SELLER = "buyer-lf", "seller-lf"


@database_sync_to_async
def stored_wire_event(order_id: str, seq: int) -> dict:
    return protocol.event_wire(Event.objects.get(thread_id=order_id, seq=seq))


async def test_socket_repairs_lost_repeated_and_reordered_layer_messages(daphne):
    with core_layer():
        await _repairs(daphne)


async def _repairs(daphne) -> None:
    server_a, server_b = await daphne.start(2, CHAT_SEND_RATE_COUNT="100000", **CORE_LAYER_ENV)
    order = await database_sync_to_async(make_order)(buyer_id=BUYER, seller_id=SELLER)
    order_id = order.order_id
    group = fanout.thread_group(order_id)
    group_key = f"{settings.REDIS_PREFIX}:asgi:group:{group}"
    redis = aioredis.Redis.from_url(settings.REDIS_URL)
    layer = get_channel_layer()
    buyer = await ChatClient.open(server_a.ws_url, token_for(BUYER))
    seller = await ChatClient.open(server_b.ws_url, token_for(SELLER))
    try:
        await seller.request("thread.join", order_id=order_id)
        (seller_channel,) = await redis.zrange(group_key, 0, -1)  # the only member so far
        await buyer.request("thread.join", order_id=order_id)

        async def send(n: int) -> None:
            for _ in range(n):
                await buyer.send_message(order_id, "hi")

        async def expel_seller() -> None:
            assert await redis.zrem(group_key, seller_channel) == 1

        async def readmit_seller() -> None:
            await layer.group_add(group, seller_channel.decode())

        await send(2)
        assert [e["seq"] for e in await pushed_events(seller, order_id, until_seq=2)] == [1, 2]

        # Loss: seqs 3..10 never reach the seller's socket; 11 does.
        await expel_seller()
        await send(8)
        await readmit_seller()
        await send(1)
        stream = await pushed_events(seller, order_id, until_seq=11)
        assert_stream([e["seq"] for e in stream], 3, 11, who="after a loss", client=seller)

        # Repeats: events the socket already delivered come again; only 12 is new.
        for seq in (4, 11, 1):
            await layer.group_send(
                group, {"type": "thread.event", "order_id": order_id, "event": await stored_wire_event(order_id, seq)}
            )
        await send(1)
        stream = await pushed_events(seller, order_id, until_seq=12)
        assert_stream([e["seq"] for e in stream], 12, 12, who="after repeats", client=seller)

        # Reordering: 13..15 are missed, then arrive newest first.
        await expel_seller()
        await send(3)
        await readmit_seller()
        for seq in (15, 14, 13):
            await layer.group_send(
                group, {"type": "thread.event", "order_id": order_id, "event": await stored_wire_event(order_id, seq)}
            )
        await send(1)
        stream = await pushed_events(seller, order_id, until_seq=16)
        assert_stream([e["seq"] for e in stream], 13, 16, who="after reordering", client=seller)
        assert [e["seq"] for e in await pushed_events(buyer, order_id, until_seq=16)] == list(range(1, 17))
    finally:
        await buyer.close()
        await seller.close()
        await redis.aclose()
