"""Catching up: a socket that was away, or that joins mid-burst, sees one whole stream.

What a socket sees of a thread is its join reply's ``events`` followed by the
``thread.event`` pushes; together they must be every event after ``since_seq`` (or the
whole history) exactly once, in seq order, and then continue with the live events.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat_service.client import ChatClient
from tests.e2e.streams import assert_stream, comparable, pushed_events, stored_events
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BUYER, SELLER = "buyer-rc", "seller-rc"


@pytest.mark.parametrize(
    "join_max_events",
    # 500: the whole backlog fits the join reply; 8: the reply carries the first 8 and
    # has_more, and the server streams the rest as thread.event right after the reply.
    ["500", "8"],
    ids=["backlog-in-reply", "backlog-streamed"],
)
async def test_seller_reconnecting_to_other_process_gets_missed_messages_once(daphne, join_max_events):
    server_a, server_b = await daphne.start(2, CHAT_SEND_RATE_COUNT="100000", CHAT_JOIN_MAX_EVENTS=join_max_events)
    order = await database_sync_to_async(make_order)(buyer_id=BUYER, seller_id=SELLER)
    order_id = order.order_id
    buyer = await ChatClient.open(server_a.ws_url, token_for(BUYER))
    seller = await ChatClient.open(server_a.ws_url, token_for(SELLER))
    seller_again: ChatClient | None = None
    try:
        await buyer.request("thread.join", order_id=order_id)
        await seller.request("thread.join", order_id=order_id)
        for i in range(5):
            await buyer.send_message(order_id, f"before {i}", client_msg_id=f"before-{i}")
        seen = await pushed_events(seller, order_id, until_seq=5)
        assert_stream([e["seq"] for e in seen], 1, 5, who="seller before leaving", client=seller)
        last_seen = seen[-1]["seq"]

        await seller.close()
        missed = [await buyer.send_message(order_id, f"missed {i}", client_msg_id=f"missed-{i}") for i in range(30)]
        assert [e["seq"] for e in missed] == list(range(6, 36))

        seller_again = await ChatClient.open(server_b.ws_url, token_for(SELLER))
        joined = await seller_again.request("thread.join", order_id=order_id, since_seq=last_seen)
        assert joined["last_seq"] == 35
        if join_max_events == "8":
            assert joined["has_more"] is True and len(joined["events"]) == 8
        else:
            assert joined["has_more"] is False and len(joined["events"]) == 30
        # The rest of the backlog follows the reply by itself (no later event needed).
        backlog = joined["events"] + await pushed_events(
            seller_again, order_id, until_seq=35 if joined["has_more"] else 0
        )
        assert_stream([e["seq"] for e in backlog], 6, 35, who="backlog", client=seller_again)
        assert backlog == missed

        # Then the live stream continues from there.
        live = [await buyer.send_message(order_id, f"live {i}", client_msg_id=f"live-{i}") for i in range(10)]
        assert [e["seq"] for e in live] == list(range(36, 46))
        pushed = await pushed_events(seller_again, order_id, until_seq=45)
        assert_stream([e["seq"] for e in pushed], 36, 45, who="live after reconnect", client=seller_again)
        assert pushed == live
        stored = await stored_events(order_id)
        assert [comparable(e) for e in backlog + pushed] == stored[5:]
    finally:
        await buyer.close()
        if seller_again is not None:
            await seller_again.close()


async def test_joining_during_a_send_burst_sees_gapless_duplicate_free_stream(daphne):
    burst = 120
    server_a, server_b = await daphne.start(2, CHAT_SEND_RATE_COUNT="100000")
    order = await database_sync_to_async(make_order)(buyer_id=BUYER, seller_id=SELLER)
    order_id = order.order_id
    buyer = await ChatClient.open(server_a.ws_url, token_for(BUYER))
    # Seller sockets on both processes, joining at different points of the burst, with
    # and without since_seq.
    joiners = [
        (await ChatClient.open(server.ws_url, token_for(SELLER)), since)
        for server, since in ((server_b, None), (server_a, 0), (server_b, 0), (server_a, None), (server_b, None))
    ]
    triggers = {5: 0, 25: 1, 50: 2, 75: 3, 100: 4}  # acked count -> joiner
    joins: dict[int, asyncio.Task[dict]] = {}
    acked = 0

    async def join(index: int) -> dict:
        client, since = joiners[index]
        fields = {} if since is None else {"since_seq": since}
        return await client.request("thread.join", order_id=order_id, timeout=30, **fields)

    async def send_one(i: int) -> dict:
        nonlocal acked
        event = await buyer.send_message(order_id, f"burst {i}", client_msg_id=f"burst-{i}", timeout=30)
        acked += 1
        if acked in triggers:
            index = triggers[acked]
            joins[index] = asyncio.create_task(join(index))
        return event

    try:
        # Pipelined: every send is on the wire before the first ack comes back.
        events = await asyncio.gather(*(send_one(i) for i in range(burst)))
        assert sorted(e["seq"] for e in events) == list(range(1, burst + 1))
        replies = [await joins[i] for i in range(len(joiners))]
        # The scenario happened: some joins were answered before the burst was over.
        assert any(0 < r["last_seq"] < burst for r in replies), [r["last_seq"] for r in replies]

        stored = await stored_events(order_id)
        for index, ((client, since), reply) in enumerate(zip(joiners, replies, strict=True)):
            pushed = await pushed_events(client, order_id, until_seq=burst)
            stream = reply["events"] + pushed
            assert_stream(
                [e["seq"] for e in stream],
                1,
                burst,
                who=f"joiner {index} (since_seq={since}, joined at last_seq={reply['last_seq']})",
                client=client,
            )
            assert [comparable(e) for e in stream] == stored
    finally:
        await buyer.close()
        for client, _ in joiners:
            await client.close()


async def test_seller_whose_process_was_killed_reconnects_elsewhere_and_misses_nothing(daphne):
    server_a, server_b = await daphne.start(2, CHAT_SEND_RATE_COUNT="100000")
    order = await database_sync_to_async(make_order)(buyer_id=BUYER, seller_id=SELLER)
    order_id = order.order_id
    buyer = await ChatClient.open(server_b.ws_url, token_for(BUYER))
    seller = await ChatClient.open(server_a.ws_url, token_for(SELLER))
    seller_again: ChatClient | None = None
    try:
        await seller.request("thread.join", order_id=order_id)
        await buyer.request("thread.join", order_id=order_id)
        for i in range(3):
            await buyer.send_message(order_id, f"before {i}")
        seen = await pushed_events(seller, order_id, until_seq=3)
        assert [e["seq"] for e in seen] == [1, 2, 3]

        server_a.kill()  # no disconnect handler runs; its group members stay in Redis
        await asyncio.wait_for(seller.closed.wait(), 10)
        # Sends keep working although the thread's group still lists the dead socket.
        missed = [await buyer.send_message(order_id, f"while away {i}") for i in range(10)]
        assert [e["seq"] for e in missed] == list(range(4, 14))

        seller_again = await ChatClient.open(server_b.ws_url, token_for(SELLER))
        joined = await seller_again.request("thread.join", order_id=order_id, since_seq=3)
        assert joined["events"] == missed
        live = await buyer.send_message(order_id, "welcome back")
        assert await pushed_events(seller_again, order_id, until_seq=14) == [live]
    finally:
        await buyer.close()
        await seller.close()
        if seller_again is not None:
            await seller_again.close()
