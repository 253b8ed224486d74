"""Order, offer and dispute services on PostgreSQL: state, thread events, outbox rows,
authorization, and refusals that change nothing."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from chat_service import fanout
from chat_service.commerce.models import Dispute, Offer, Order, OutboxMessage
from chat_service.commerce.services import disputes, offers, orders
from chat_service.protocol.errors import BadRequest, Forbidden, InvalidState, NotFound
from chat_service.threads.models import Event
from tests.factories import make_order, thread_of
from tests.publications import thread_events

pytestmark = pytest.mark.django_db(transaction=True)


def events(order, kind=None):
    qs = Event.objects.filter(thread_id=order.pk).order_by("seq")
    return list(qs.filter(kind=kind) if kind else qs)


def outbox(order):
    return list(OutboxMessage.objects.filter(order_id=order.pk).order_by("id").values_list("action", flat=True))


def fresh(order):
    return Order.objects.get(pk=order.pk)


@pytest.fixture
def unpaid():
    return make_order(buyer_id="b", seller_id="s", amount=Decimal("25.00"))


@pytest.fixture
def delivered():
    return make_order(buyer_id="b", seller_id="s", amount=Decimal("25.00"), status="awaiting_acceptance")


# --- offers -------------------------------------------------------------------------------


def test_request_make_accept_flows_through_the_thread_and_the_outbox(unpaid):
    requested = offers.offer_request(user_id="b", order_id=unpaid.pk, note="Bulk discount?")
    made = offers.offer_make(user_id="s", order_id=unpaid.pk, price="21.5", note="For you")
    assert made.pk == requested.pk and made.status == "open" and made.price == Decimal("21.50")
    accepted = offers.offer_accept(user_id="b", offer_id=str(made.pk))
    assert accepted.status == "accepted"
    changes = [e.data["change"] for e in events(unpaid, "offer")]
    assert changes == ["requested", "made", "accepted"]
    assert [e.author_role for e in events(unpaid, "offer")] == ["buyer", "seller", "buyer"]
    assert "21.50 USD (was 25.00)" in events(unpaid, "offer")[1].body
    assert outbox(unpaid) == ["offer.accepted"]
    payload = OutboxMessage.objects.get(order_id=unpaid.pk).payload
    assert (payload["price"], payload["previous_amount"], payload["offer_id"]) == ("21.50", "25.00", str(made.pk))
    assert fresh(unpaid).amount == Decimal("25.00")  # changes when the order system confirms


def test_offer_events_raise_the_other_partys_unread_and_are_pushed(unpaid):
    with fanout.collecting() as pushed:
        offers.offer_make(user_id="s", order_id=unpaid.pk, price="20.00")
    [event] = thread_events(pushed)
    assert event["kind"] == "offer" and event["data"]["offer"]["price"] == "20.00"
    assert thread_of(unpaid).buyer_unread == 1


def test_one_live_offer_per_order(unpaid):
    offers.offer_make(user_id="s", order_id=unpaid.pk, price="20.00")
    with pytest.raises(InvalidState, match="withdraw it first"):
        offers.offer_make(user_id="s", order_id=unpaid.pk, price="19.00")
    with pytest.raises(InvalidState):
        offers.offer_request(user_id="b", order_id=unpaid.pk)
    assert Offer.objects.filter(order=unpaid).count() == 1


def test_declined_and_withdrawn_offers_free_the_slot(unpaid):
    first = offers.offer_make(user_id="s", order_id=unpaid.pk, price="20.00")
    offers.offer_decline(user_id="b", offer_id=str(first.pk))
    second = offers.offer_make(user_id="s", order_id=unpaid.pk, price="22.00")
    offers.offer_withdraw(user_id="s", offer_id=str(second.pk))
    assert [o.status for o in Offer.objects.filter(order=unpaid).order_by("pk")] == ["declined", "withdrawn"]
    assert outbox(unpaid) == []


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda o, off: offers.offer_request(user_id="s", order_id=o.pk), Forbidden),
        (lambda o, off: offers.offer_make(user_id="b", order_id=o.pk, price="1.00"), Forbidden),
        (lambda o, off: offers.offer_accept(user_id="s", offer_id=str(off.pk)), Forbidden),
        (lambda o, off: offers.offer_withdraw(user_id="b", offer_id=str(off.pk)), Forbidden),
        (lambda o, off: offers.offer_accept(user_id="stranger", offer_id=str(off.pk)), NotFound),
        (lambda o, off: offers.offer_make(user_id="stranger", order_id=o.pk, price="1.00"), NotFound),
        (lambda o, off: offers.offer_accept(user_id="b", offer_id="999999"), NotFound),
        (lambda o, off: offers.offer_accept(user_id="b", offer_id="x"), NotFound),
    ],
)
def test_offer_actions_by_the_wrong_party_change_nothing(unpaid, call, exc):
    offer = offers.offer_make(user_id="s", order_id=unpaid.pk, price="20.00")
    before = len(events(unpaid))
    with pytest.raises(exc):
        call(unpaid, offer)
    assert Offer.objects.get(pk=offer.pk).status == "open" and len(events(unpaid)) == before


def test_no_offers_once_the_order_is_paid():
    paid = make_order(buyer_id="b", seller_id="s", status="awaiting_shipment")
    with pytest.raises(InvalidState, match="awaits payment"):
        offers.offer_request(user_id="b", order_id=paid.pk)


def test_an_expired_offer_cannot_be_accepted_and_the_worker_expires_it_once(unpaid):
    offer = offers.offer_make(user_id="s", order_id=unpaid.pk, price="20.00", expires_in_s=60)
    later = timezone.now() + timedelta(seconds=61)
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(InvalidState, match="expired"):
        offers.offer_accept(user_id="b", offer_id=str(offer.pk))
    assert offers.offers_expire_due(now=later) == 1
    assert offers.offers_expire_due(now=later) == 0
    assert Offer.objects.get(pk=offer.pk).status == "expired"
    assert events(unpaid, "offer")[-1].author_role == "system"


def test_cancelling_the_order_expires_its_live_offer(unpaid):
    offer = offers.offer_make(user_id="s", order_id=unpaid.pk, price="20.00")
    orders.order_cancel(user_id="b", order_id=unpaid.pk)
    assert Offer.objects.get(pk=offer.pk).status == "expired"
    assert fresh(unpaid).status == "cancelled" and outbox(unpaid) == ["order.cancelled"]


@pytest.mark.parametrize("price", ["0", "-5", "1.999", "abc", 12])
def test_bad_prices_store_nothing(unpaid, price):
    with pytest.raises(BadRequest):
        offers.offer_make(user_id="s", order_id=unpaid.pk, price=price)
    assert Offer.objects.count() == 0 and events(unpaid) == []


# --- orders: receipt and feedback ---------------------------------------------------------


def test_confirm_receipt_then_feedback_once(delivered):
    orders.order_confirm_receipt(user_id="b", order_id=delivered.pk)
    order = fresh(delivered)
    assert order.status == "completed" and order.completed_at is not None
    orders.order_leave_feedback(user_id="b", order_id=delivered.pk, rating=5, comment="Lovely")
    with pytest.raises(InvalidState, match="already"):
        orders.order_leave_feedback(user_id="b", order_id=delivered.pk, rating=1, comment="changed my mind")
    assert fresh(delivered).feedback_rating == 5
    assert outbox(delivered) == ["order.receipt_confirmed", "order.feedback_left"]
    assert [e.data["change"] for e in events(delivered, "order")] == ["receipt_confirmed", "feedback_left"]


def test_only_the_buyer_confirms_receipt(delivered):
    with pytest.raises(Forbidden):
        orders.order_confirm_receipt(user_id="s", order_id=delivered.pk)
    with pytest.raises(NotFound):
        orders.order_confirm_receipt(user_id="stranger", order_id=delivered.pk)
    assert fresh(delivered).status == "awaiting_acceptance"


# --- disputes -------------------------------------------------------------------------------


def open_dispute(order, amount="25.00", return_item=False, reason="wrong_size"):
    return disputes.dispute_open(
        user_id="b",
        order_id=order.pk,
        reason=reason,
        refund_amount=amount,
        return_item=return_item,
        details="Too small",
    )


def test_buyer_cannot_open_dispute_after_feedback(delivered):
    orders.order_confirm_receipt(user_id="b", order_id=delivered.pk)
    orders.order_leave_feedback(user_id="b", order_id=delivered.pk, rating=4, comment=None)
    with pytest.raises(InvalidState, match="Feedback has been left"):
        open_dispute(delivered)
    assert Dispute.objects.count() == 0


def test_open_counter_accept_counter(delivered):
    dispute = open_dispute(delivered, amount="25.00")
    assert dispute.status == "open" and dispute.respond_by is not None
    disputes.dispute_respond(
        user_id="s", dispute_id=str(dispute.pk), action="counter", refund_amount="10.00", note="Half?"
    )
    settled = disputes.dispute_accept_counter(user_id="b", dispute_id=str(dispute.pk))
    assert (settled.status, settled.agreed_amount) == ("resolved", Decimal("10.00"))
    assert [e.data["change"] for e in events(delivered, "dispute")] == [
        "opened",
        "seller_countered",
        "counter_accepted",
    ]
    assert outbox(delivered) == ["dispute.opened", "dispute.answered", "dispute.counter_accepted"]


def test_one_open_dispute_per_order_and_a_new_one_after_cancel(delivered):
    dispute = open_dispute(delivered)
    with pytest.raises(InvalidState, match="already has an open dispute"):
        open_dispute(delivered)
    disputes.dispute_cancel(user_id="b", dispute_id=str(dispute.pk))
    assert open_dispute(delivered).status == "open"


def test_a_resolved_dispute_is_final_for_the_order(delivered):
    dispute = open_dispute(delivered)
    disputes.dispute_respond(user_id="s", dispute_id=str(dispute.pk), action="accept")
    with pytest.raises(InvalidState, match="has been resolved"):
        open_dispute(delivered)


def test_a_returned_item_must_arrive_before_the_refund(delivered):
    dispute = open_dispute(delivered, return_item=True)
    disputes.dispute_respond(user_id="s", dispute_id=str(dispute.pk), action="accept")
    assert Dispute.objects.get(pk=dispute.pk).status == "awaiting_return"
    with pytest.raises(Forbidden):
        disputes.dispute_confirm_return(user_id="b", dispute_id=str(dispute.pk))
    disputes.dispute_add_return_tracking(user_id="b", dispute_id=str(dispute.pk), tracking_number="RT123")
    done = disputes.dispute_confirm_return(user_id="s", dispute_id=str(dispute.pk))
    assert (done.status, done.return_tracking_number, done.agreed_amount) == ("resolved", "RT123", Decimal("25.00"))


def test_reject_escalate_and_the_platform_decides(delivered):
    dispute = open_dispute(delivered)
    disputes.dispute_respond(user_id="s", dispute_id=str(dispute.pk), action="reject")
    disputes.dispute_escalate(user_id="b", dispute_id=str(dispute.pk))
    decided = disputes.dispute_decide(dispute_id=str(dispute.pk), refund_amount="12.00", note="Split")
    assert (decided.status, decided.agreed_amount) == ("resolved", Decimal("12.00"))
    assert events(delivered, "dispute")[-1].author_role == "system"


def test_an_unanswered_dispute_is_escalated_by_the_worker_once(delivered):
    dispute = open_dispute(delivered)
    later = timezone.now() + timedelta(days=6)
    assert disputes.disputes_escalate_overdue(now=later) == 1
    assert disputes.disputes_escalate_overdue(now=later) == 0
    assert Dispute.objects.get(pk=dispute.pk).status == "escalated"


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"reason": "bored"}, "reason"),
        ({"refund_amount": "0"}, "refund_amount"),
        ({"refund_amount": "25.01"}, "refund_amount"),
        ({"return_item": "yes"}, "return_item"),
        ({"details": "x" * 2001}, "details"),
    ],
)
def test_bad_dispute_fields_are_refused_and_nothing_is_stored(delivered, fields, field):
    args = {"reason": "wrong_size", "refund_amount": "10.00", "return_item": False, "details": "", **fields}
    with pytest.raises(BadRequest) as info:
        disputes.dispute_open(user_id="b", order_id=delivered.pk, **args)
    assert info.value.details["field"] == field
    assert Dispute.objects.count() == 0 and events(delivered) == [] and outbox(delivered) == []


def test_seller_counter_must_be_below_the_claim(delivered):
    dispute = open_dispute(delivered, amount="10.00")
    with pytest.raises(BadRequest):
        disputes.dispute_respond(user_id="s", dispute_id=str(dispute.pk), action="counter", refund_amount="10.00")
    with pytest.raises(Forbidden):
        disputes.dispute_respond(user_id="b", dispute_id=str(dispute.pk), action="accept")
    with pytest.raises(NotFound):
        disputes.dispute_respond(user_id="stranger", dispute_id=str(dispute.pk), action="accept")
    assert Dispute.objects.get(pk=dispute.pk).status == "open"
