"""Concurrent writers to one thread on two processes: seqs stay gapless, retries stay single.

Both parties pipeline their sends (every frame on the wire before the first ack), one on
each process, so the two processes' transactions contend for the thread's row lock the
whole time. A retried ``client_msg_id`` (the client did not see the ack) must return the
original event and store nothing, also when the retry races the original on the other
process.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat_service.client import ChatClient
from tests.e2e.streams import assert_stream, comparable, pushed_events, stored_events
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PER_SIDE = 100
RACES = 20
BUYER, SELLER = "buyer-cs", "seller-cs"


async def send(client: ChatClient, order_id: str, client_msg_id: str, body: str) -> dict:
    """message.send's reply data: {event, duplicate}."""
    return await client.request("message.send", order_id=order_id, client_msg_id=client_msg_id, body=body, timeout=30)


async def test_pipelined_senders_on_two_processes_get_seqs_1_to_200(daphne):
    server_a, server_b = await daphne.start(2, CHAT_SEND_RATE_COUNT="100000")
    order = await database_sync_to_async(make_order)(buyer_id=BUYER, seller_id=SELLER)
    order_id = order.order_id
    buyer = await ChatClient.open(server_a.ws_url, token_for(BUYER))
    seller = await ChatClient.open(server_b.ws_url, token_for(SELLER))
    try:
        await buyer.request("thread.join", order_id=order_id)
        replies = await asyncio.gather(
            *(send(buyer, order_id, f"b-{i}", f"from buyer {i}") for i in range(PER_SIDE)),
            *(send(seller, order_id, f"s-{i}", f"from seller {i}") for i in range(PER_SIDE)),
        )
        total = 2 * PER_SIDE
        assert not any(r["duplicate"] for r in replies)
        seqs = sorted(r["event"]["seq"] for r in replies)
        assert_stream(seqs, 1, total, who="acknowledged seqs")
        # Each ack is for the message that was sent.
        for i, reply in enumerate(replies):
            who, n = ("b", i) if i < PER_SIDE else ("s", i - PER_SIDE)
            assert reply["event"]["client_msg_id"] == f"{who}-{n}"
            assert reply["event"]["author_id"] == (BUYER if who == "b" else SELLER)

        # The database agrees with the acks, row for row.
        stored = await stored_events(order_id)
        by_seq = {r["event"]["seq"]: r["event"] for r in replies}
        assert stored == [comparable(by_seq[s]) for s in range(1, total + 1)]

        # A joined socket (on the other process from the seller) saw it as one stream.
        stream = await pushed_events(buyer, order_id, until_seq=total)
        assert_stream([e["seq"] for e in stream], 1, total, who="buyer socket", client=buyer)
    finally:
        await buyer.close()
        await seller.close()


async def test_retried_client_msg_id_returns_original_and_stores_nothing(daphne):
    server_a, server_b = await daphne.start(2, CHAT_SEND_RATE_COUNT="100000")
    order = await database_sync_to_async(make_order)(buyer_id=BUYER, seller_id=SELLER)
    order_id = order.order_id
    buyer_a = await ChatClient.open(server_a.ws_url, token_for(BUYER))
    buyer_b = await ChatClient.open(server_b.ws_url, token_for(BUYER))
    seller = await ChatClient.open(server_b.ws_url, token_for(SELLER))
    try:
        await seller.request("thread.join", order_id=order_id)
        originals = [await send(buyer_a, order_id, f"m-{i}", f"message {i}") for i in range(5)]
        assert [o["event"]["seq"] for o in originals] == [1, 2, 3, 4, 5]

        # A plain retry, on the same process and on the other one, with any body.
        for client in (buyer_a, buyer_b):
            again = await send(client, order_id, "m-2", "message 2 (retried)")
            assert again == {"event": originals[2]["event"], "duplicate": True}
        # The same client_msg_id from the other party is that party's own message.
        own = await send(seller, order_id, "m-2", "seller's m-2")
        assert own["duplicate"] is False and own["event"]["seq"] == 6

        # Original and retry at the same moment, one on each process.
        races = await asyncio.gather(
            *(
                asyncio.gather(
                    send(buyer_a, order_id, f"race-{k}", f"race {k}"),
                    send(buyer_b, order_id, f"race-{k}", f"race {k}"),
                )
                for k in range(RACES)
            )
        )
        for k, (from_a, from_b) in enumerate(races):
            assert from_a["event"] == from_b["event"], k
            assert sorted([from_a["duplicate"], from_b["duplicate"]]) == [False, True], k
            assert from_a["event"]["client_msg_id"] == f"race-{k}"
        race_seqs = sorted(a["event"]["seq"] for a, _ in races)
        assert race_seqs == list(range(7, 7 + RACES))

        total = 6 + RACES
        stored = await stored_events(order_id)
        assert [e["seq"] for e in stored] == list(range(1, total + 1))
        assert len({(e["author_id"], e["client_msg_id"]) for e in stored}) == total
        # Retries pushed nothing: the joined seller saw each stored event once.
        stream = await pushed_events(seller, order_id, until_seq=total)
        assert_stream([e["seq"] for e in stream], 1, total, who="seller socket", client=seller)
    finally:
        for client in (buyer_a, buyer_b, seller):
            await client.close()
