"""The built-in order system of the embedded demo: an accepted offer changes the order's
price once, through the outbox, however often the action is delivered."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from chat_service import fanout
from chat_service.commerce.models import InboxEvent, Order, OutboxMessage, OutboxStatus
from chat_service.commerce.services import disputes, offers, orders
from chat_service.threads.models import Event
from orders_bridge import jobs
from orders_bridge.delivery import outbox_deliver_due, transport_from_settings
from orders_bridge.local_order_system import LocalOrderSystem
from orders_bridge.transport import DeliveryResult, HttpTransport
from tests.factories import make_order
from tests.publications import thread_events

pytestmark = pytest.mark.django_db(transaction=True)


def order_events(order: Order) -> list[Event]:
    return list(Event.objects.filter(thread_id=order.pk, kind="order").order_by("seq"))


def accepted_offer(price: str = "21.50") -> tuple[Order, OutboxMessage]:
    order = make_order(buyer_id="b", seller_id="s", amount=Decimal("25.00"))
    offer = offers.offer_make(user_id="s", order_id=order.pk, price=price)
    offers.offer_accept(user_id="b", offer_id=str(offer.pk))
    return order, OutboxMessage.objects.get(order_id=order.pk, action="offer.accepted")


def test_an_accepted_offer_changes_the_price_through_the_outbox_with_an_order_event():
    order, _ = accepted_offer("21.50")
    assert Order.objects.get(pk=order.pk).amount == Decimal("25.00")  # not before delivery

    with fanout.collecting() as pushed:
        counts = outbox_deliver_due(transport=LocalOrderSystem())

    assert counts.delivered == 1
    changed = Order.objects.get(pk=order.pk)
    assert (changed.amount, changed.version) == (Decimal("21.50"), order.version + 1)
    [event] = order_events(order)
    assert event.body == "Price changed to 21.50 USD (was 25.00 USD)."
    assert event.author_role == "system" and event.data["change"] == "price_changed"
    assert event.data["order"]["amount"] == "21.50" and event.data["order"]["version"] == order.version + 1
    assert [e["seq"] for e in thread_events(pushed, order.pk)] == [event.seq]


def test_delivering_the_same_action_twice_changes_the_price_once():
    order, message = accepted_offer("21.50")
    outbox_deliver_due(transport=LocalOrderSystem())
    # A worker killed after the local commit but before it recorded the delivery: the row
    # is still pending, and is delivered again when its lease ends.
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxStatus.PENDING)
    after_the_lease = timezone.now() + timedelta(minutes=5)

    assert outbox_deliver_due(transport=LocalOrderSystem(), now=after_the_lease).delivered == 1
    assert LocalOrderSystem().deliver(OutboxMessage.objects.get(pk=message.pk)) == DeliveryResult.ok()

    changed = Order.objects.get(pk=order.pk)
    assert (changed.amount, changed.version) == (Decimal("21.50"), order.version + 1)
    assert len(order_events(order)) == 1
    assert InboxEvent.objects.filter(event_id=f"local:{message.idempotency_key}").count() == 1


def test_concurrent_deliveries_of_the_same_action_apply_it_once():
    order, message = accepted_offer("19.00")
    start, results, errors = threading.Barrier(4), [], []

    def deliver() -> None:
        try:
            start.wait(timeout=10)
            results.append(LocalOrderSystem().deliver(OutboxMessage.objects.get(pk=message.pk)))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == [] and results == [DeliveryResult.ok()] * 4
    changed = Order.objects.get(pk=order.pk)
    assert (changed.amount, changed.version) == (Decimal("19.00"), order.version + 1)
    assert len(order_events(order)) == 1


def test_a_price_change_arriving_after_the_order_was_cancelled_leaves_the_price_and_says_so():
    order, _ = accepted_offer("21.50")
    orders.order_cancel(user_id="b", order_id=order.pk)
    events_before = len(order_events(order))

    counts = outbox_deliver_due(transport=LocalOrderSystem())

    assert counts.delivered == 2  # offer.accepted and order.cancelled
    changed = Order.objects.get(pk=order.pk)
    assert (changed.amount, changed.status) == (Decimal("25.00"), "cancelled")
    refused = order_events(order)[events_before:]
    assert [e.data["change"] for e in refused] == ["price_change_refused"]
    assert "no longer awaits payment" in refused[0].body


def test_actions_the_services_already_applied_are_accepted_without_further_change():
    unpaid = make_order(buyer_id="b", seller_id="s")
    orders.order_cancel(user_id="b", order_id=unpaid.pk)
    delivered = make_order(buyer_id="b", seller_id="s", amount=Decimal("25.00"), status="awaiting_acceptance")
    dispute = disputes.dispute_open(
        user_id="b", order_id=delivered.pk, reason="wrong_size", refund_amount="5.00", return_item=False, details=""
    )
    disputes.dispute_respond(user_id="s", dispute_id=str(dispute.pk), action="reject")
    disputes.dispute_escalate(user_id="b", dispute_id=str(dispute.pk))
    done = make_order(buyer_id="b", seller_id="s", status="awaiting_acceptance")
    orders.order_confirm_receipt(user_id="b", order_id=done.pk)
    orders.order_leave_feedback(user_id="b", order_id=done.pk, rating=4, comment="ok")
    before = {o.pk: (o.amount, o.status, o.version) for o in Order.objects.all()}
    events_before = Event.objects.count()

    counts = outbox_deliver_due(transport=LocalOrderSystem())

    assert counts.delivered == OutboxMessage.objects.count() == 6
    assert {o.pk: (o.amount, o.status, o.version) for o in Order.objects.all()} == before
    assert Event.objects.count() == events_before


def test_an_action_for_an_unknown_order_fails_without_retries():
    order, message = accepted_offer()
    Order.objects.filter(pk=order.pk).delete()

    counts = outbox_deliver_due(transport=LocalOrderSystem())

    assert counts.failed == 1
    row = OutboxMessage.objects.get(pk=message.pk)
    assert row.status == OutboxStatus.FAILED and "does not exist" in row.last_error


def test_without_order_system_url_the_worker_job_applies_accepted_offers_locally(monkeypatch):
    monkeypatch.delenv("ORDER_SYSTEM_URL", raising=False)
    assert isinstance(transport_from_settings(), LocalOrderSystem)
    order, message = accepted_offer("20.00")

    jobs.outbox_deliver()  # what the worker runs every second

    assert Order.objects.get(pk=order.pk).amount == Decimal("20.00")
    assert OutboxMessage.objects.get(pk=message.pk).status == OutboxStatus.DELIVERED


def test_with_order_system_url_the_worker_posts_to_it(monkeypatch, settings):
    monkeypatch.setenv("ORDER_SYSTEM_URL", "http://127.0.0.1:9/bridge/actions/")
    monkeypatch.setenv("BRIDGE_SECRET", "b" * 40)
    settings.BRIDGE = {"SECRET": "b" * 40}

    transport = transport_from_settings()

    assert isinstance(transport, HttpTransport) and transport.url == "http://127.0.0.1:9/bridge/actions/"
