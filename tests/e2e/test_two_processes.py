"""Two Daphne processes on one Redis layer: a conversation across them is whole.

The buyer is on process A, the seller on process B. Every message crosses the channel
layer between processes; each socket must see the thread as one stream (seq 1, 2, ...
with nothing missing or repeated), and what it sees must be what PostgreSQL stored.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat_service.client import ChatClient
from tests.e2e.streams import assert_stream, comparable, pushed_events, stored_events
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PER_SIDE = 200


def body_for(who: str, i: int) -> str:
    # Non-ASCII and varying lengths, so that "complete" means more than "some frame came".
    return f"{who} #{i:03d} — ünïcødé ✓ 订单 " + "x" * (i * 7 % 300)


async def test_conversation_across_two_processes_arrives_whole_in_order_once(daphne):
    server_a, server_b = await daphne.start(2, CHAT_SEND_RATE_COUNT="100000")
    order = await database_sync_to_async(make_order)(buyer_id="buyer-2p", seller_id="seller-2p")
    order_id = order.order_id
    buyer = await ChatClient.open(server_a.ws_url, token_for("buyer-2p"))
    seller = await ChatClient.open(server_b.ws_url, token_for("seller-2p"))
    try:
        for client in (buyer, seller):
            joined = await client.request("thread.join", order_id=order_id)
            assert joined["last_seq"] == 0 and joined["events"] == []

        async def converse(client: ChatClient, who: str) -> list[dict]:
            acks = []
            for i in range(PER_SIDE):
                acks.append(await client.send_message(order_id, body_for(who, i), client_msg_id=f"{who}-{i}"))
                if i % 20 == 19:
                    await asyncio.sleep(0.01)  # a moderate pace; both sides interleave
            return acks

        buyer_acks, seller_acks = await asyncio.gather(converse(buyer, "buyer"), converse(seller, "seller"))
        total = 2 * PER_SIDE

        # Acknowledged: one seq per message, 1..400 between them, each side's in send order.
        for acks in (buyer_acks, seller_acks):
            seqs = [e["seq"] for e in acks]
            assert seqs == sorted(seqs) and len(set(seqs)) == PER_SIDE
        assert sorted(e["seq"] for e in buyer_acks + seller_acks) == list(range(1, total + 1))
        assert [e["body"] for e in buyer_acks] == [body_for("buyer", i) for i in range(PER_SIDE)]
        assert [e["body"] for e in seller_acks] == [body_for("seller", i) for i in range(PER_SIDE)]
        # Both sides really interleaved (otherwise this is two one-way tests).
        buyer_seqs = {e["seq"] for e in buyer_acks}
        switches = sum(1 for s in range(1, total) if (s in buyer_seqs) != (s + 1 in buyer_seqs))
        assert switches >= 10

        acked = {e["seq"]: e for e in buyer_acks + seller_acks}
        for name, client, other_acks in (("buyer", buyer, seller_acks), ("seller", seller, buyer_acks)):
            stream = await pushed_events(client, order_id, until_seq=total)
            assert_stream([e["seq"] for e in stream], 1, total, who=f"{name} socket", client=client)
            # Every pushed event is exactly the acknowledged one, all fields.
            assert stream == [acked[s] for s in range(1, total + 1)]
            # The other party's messages arrive complete, in their send order, once each.
            theirs = [e for e in stream if e["author_id"] != f"{name}-2p"]
            assert theirs == other_acks

        # Nothing more is pushed for the thread afterwards (no late duplicate).
        await buyer.send_message(order_id, "last one", client_msg_id="buyer-last")
        for name, client in (("buyer", buyer), ("seller", seller)):
            tail = await pushed_events(client, order_id, until_seq=total + 1)
            assert [e["seq"] for e in tail] == [total + 1], name

        stored = await stored_events(order_id)
        assert [e["seq"] for e in stored] == list(range(1, total + 2))
        assert stored[:total] == [comparable(acked[s]) for s in range(1, total + 1)]
    finally:
        await buyer.close()
        await seller.close()
