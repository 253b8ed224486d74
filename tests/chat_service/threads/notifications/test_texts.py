"""What notifications say: pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime

from chat_service.threads.notifications import texts

ORDER = texts.OrderFacts(order_id="A1", item_title="USB-C charger", supplier_name="Lumen Electronics")


def note(kind: str, role: str, body: str = "", **data: object) -> texts.Note:
    return texts.for_event(event_kind=kind, author_role=role, body=body, data=dict(data), order=ORDER)


def test_a_message_names_its_sender_to_the_buyer_and_the_item_to_the_seller():
    assert note("message", "seller", "Black is in stock.") == texts.Note(
        "message", "New message from Lumen Electronics", "USB-C charger: Black is in stock."
    )
    assert note("message", "buyer", "Is it black?").title == "New message from your buyer"


def test_offers_orders_and_disputes_have_their_own_kinds_and_titles():
    made = note(
        "offer",
        "seller",
        "The seller offered 21.50 USD (was 24.90).",
        change="made",
        offer={"price": "21.50", "currency": "USD"},
    )
    assert (made.kind, made.title, made.urgent) == ("offer.made", "Offer: 21.50 USD for USB-C charger", True)
    assert note("offer", "buyer", change="declined").kind == "offer.declined"
    assert note("offer", "system", change="expired").title == "Offer expired for USB-C charger"
    assert note("order", "system", "Paid", change="paid").title == "Paid: USB-C charger"
    assert note("order", "system", change="shipped").kind == "order.shipped"
    assert note("order", "system", change="cancelled").urgent
    assert not note("order", "system", change="tracking_changed").urgent
    assert note("dispute", "seller", change="seller_countered").kind == "dispute.answered"
    assert note("dispute", "system", change="escalated").kind == "dispute.escalated"
    assert note("dispute", "system", change="decided").title == "Dispute decided for USB-C charger"
    assert not note("message", "seller", "hi").urgent


def test_a_digest_of_messages_counts_them_and_shows_the_latest_lines():
    notes = [note("message", "seller", f"line {n}") for n in range(7)]
    digest = texts.digest(notes)
    assert digest.title == "7 new messages from Lumen Electronics"
    assert digest.body.splitlines() == ["…and 2 earlier"] + [f"USB-C charger: line {n}" for n in range(2, 7)]


def test_a_mixed_digest_is_led_by_its_latest_important_note():
    offer = note("offer", "seller", "offered", change="made", offer={"price": "21.50", "currency": "USD"})
    digest = texts.digest([note("message", "seller", "hi"), offer, note("message", "seller", "ok?")])
    assert (digest.kind, digest.title) == ("offer.made", "Offer: 21.50 USD for USB-C charger (+2 more)")


def test_long_bodies_are_cut_to_an_excerpt():
    long = note("message", "seller", "word " * 100)
    assert len(long.body) <= len("USB-C charger: ") + texts.EXCERPT_CHARS and long.body.endswith("…")


def test_reminders_say_what_to_do_and_by_when():
    at = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    offer = texts.offer_expiring(order=ORDER, price="21.50", currency="USD", expires_at=at)
    assert offer.title == "Offer for USB-C charger expires soon" and "27 Nov 2026, 15:30 UTC" in offer.body
    dispute = texts.dispute_response_due(order=ORDER, refund_amount="10.00", currency="USD", respond_by=at)
    assert dispute.kind == "dispute.response_due" and "10.00 USD" in dispute.body
