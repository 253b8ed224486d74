"""Offers, disputes, receipt and feedback through the socket: the main paths live in the
thread, and every refusal is a reply frame with the socket left open."""

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async as db

from chat_service.commerce.models import Dispute, Order, OutboxMessage
from chat_service.protocol import frames
from chat_service.transport.socket import commerce
from tests.factories import make_order
from tests.wsclient import TestSocket

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_commerce_frame_type_has_a_command_spec():
    assert set(frames.COMMERCE_TYPES) == set(commerce.SPECS)


async def pair(order):
    buyer, seller = await TestSocket.open("b"), await TestSocket.open("s")
    for socket in (buyer, seller):
        await socket.request("thread.join", order_id=order.pk)
    return buyer, seller


async def error(socket, frame_type, **fields):
    reply = await socket.request_frame(frame_type, **fields)
    assert reply["ok"] is False, reply
    return reply["error"]


async def test_offer_request_make_accept_live_in_the_thread():
    order = await db(make_order)(buyer_id="b", seller_id="s", amount=Decimal("30.00"))
    buyer, seller = await pair(order)
    await buyer.request("offer.request", order_id=order.pk, note="Any discount?")
    pushed = await seller.next_frame("thread.event", where=lambda f: f["event"]["kind"] == "offer")
    assert pushed["event"]["data"]["change"] == "requested" and "Any discount?" in pushed["event"]["body"]
    made = await seller.request("offer.make", order_id=order.pk, price="25.00", note="Deal")
    offer_id = made["offer"]["offer_id"]
    seen = await buyer.next_frame("thread.event", where=lambda f: f["event"]["data"].get("change") == "made")
    assert seen["event"]["data"]["offer"]["price"] == "25.00"
    accepted = await buyer.request("offer.accept", offer_id=offer_id)
    assert accepted["offer"]["status"] == "accepted"
    assert await db(lambda: list(OutboxMessage.objects.values_list("action", flat=True)))() == ["offer.accepted"]
    await buyer.close(), await seller.close()


async def test_dispute_open_counter_accept_counter_through_the_socket():
    order = await db(make_order)(buyer_id="b", seller_id="s", amount=Decimal("40.00"), status="awaiting_acceptance")
    buyer, seller = await pair(order)
    opened = await buyer.request(
        "dispute.open",
        order_id=order.pk,
        reason="wrong_colour",
        refund_amount="40.00",
        return_item=False,
        details="Ordered blue, got red",
    )
    dispute_id = opened["dispute"]["dispute_id"]
    await seller.request("dispute.respond", dispute_id=dispute_id, action="counter", refund_amount="15.00")
    countered = await buyer.next_frame(
        "thread.event", where=lambda f: f["event"]["data"].get("change") == "seller_countered"
    )
    assert countered["event"]["data"]["dispute"]["counter_amount"] == "15.00"
    settled = await buyer.request("dispute.accept_counter", dispute_id=dispute_id)
    assert (settled["dispute"]["status"], settled["dispute"]["agreed_amount"]) == ("resolved", "15.00")
    await buyer.close(), await seller.close()


async def test_feedback_ends_the_chance_to_open_a_dispute():
    order = await db(make_order)(buyer_id="b", seller_id="s", status="awaiting_acceptance")
    buyer, seller = await pair(order)
    await buyer.request("order.confirm_receipt", order_id=order.pk)
    await buyer.request("order.leave_feedback", order_id=order.pk, rating=5, comment="Works great")
    refused = await error(
        buyer, "dispute.open", order_id=order.pk, reason="works_poorly", refund_amount="5.00", return_item=False
    )
    assert refused["code"] == "invalid_state" and "Feedback has been left" in refused["message"]
    changes = []
    while len(changes) < 2:
        frame = await seller.next_frame("thread.event")
        changes.append(frame["event"]["data"]["change"])
    assert changes == ["receipt_confirmed", "feedback_left"]
    assert await db(Dispute.objects.count)() == 0
    await buyer.close(), await seller.close()


@pytest.mark.parametrize(
    "frame_type, fields, code, field",
    [
        ("offer.make", {"order_id": "ORDER"}, "bad_request", "price"),
        ("offer.accept", {}, "bad_request", "offer_id"),
        ("offer.accept", {"offer_id": 12}, "bad_request", "offer_id"),
        ("offer.accept", {"offer_id": "12; drop"}, "bad_request", "offer_id"),
        (
            "dispute.open",
            {"order_id": "ORDER", "reason": "wrong_size", "refund_amount": "1.00"},
            "bad_request",
            "return_item",
        ),
        ("order.leave_feedback", {"order_id": "ORDER", "rating": 9}, "invalid_state", None),
        ("offer.make", {"order_id": "ORDER", "price": "5.00"}, "forbidden", None),  # the buyer is not the seller
        ("order.cancel", {"order_id": "NOPE"}, "not_found", None),
    ],
)
async def test_bad_commerce_frames_get_error_replies_and_change_nothing(frame_type, fields, code, field):
    order = await db(make_order)(buyer_id="b", seller_id="s")
    buyer = await TestSocket.open("b")
    fields = {k: (order.pk if v == "ORDER" else v) for k, v in fields.items()}
    answer = await error(buyer, frame_type, **fields)
    assert answer["code"] == code and answer.get("field") == field
    assert await buyer.request("ping") == {}
    assert (await db(Order.objects.get)(pk=order.pk)).status == "awaiting_payment"
    await buyer.close()


async def test_strangers_get_not_found_for_every_commerce_command():
    order = await db(make_order)(buyer_id="b", seller_id="s", status="awaiting_acceptance")
    buyer = await TestSocket.open("b")
    opened = await buyer.request(
        "dispute.open", order_id=order.pk, reason="low_quality", refund_amount="1.00", return_item=False
    )
    stranger = await TestSocket.open("stranger")
    for frame_type, fields in [
        ("order.confirm_receipt", {"order_id": order.pk}),
        ("dispute.cancel", {"dispute_id": opened["dispute"]["dispute_id"]}),
        ("offer.request", {"order_id": order.pk}),
    ]:
        assert (await error(stranger, frame_type, **fields))["code"] == "not_found"
    await buyer.close(), await stranger.close()
