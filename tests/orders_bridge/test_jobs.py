"""The bridge's worker jobs: registered with the worker; offers expire and unanswered
disputes escalate once, also when several workers run the jobs at the same time. The
clock moves through the services' ``now`` argument."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from chat_service.commerce.models import Dispute, Offer, OutboxMessage
from chat_service.commerce.services import disputes, offers
from chat_service.machinery import worker
from chat_service.threads.models import Event
from orders_bridge import jobs
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)


def kind_events(order_id: str, kind: str) -> list[Event]:
    return list(Event.objects.filter(thread_id=order_id, kind=kind).order_by("seq"))


def open_offers(count: int) -> list[Offer]:
    made = []
    for n in range(count):
        order = make_order(buyer_id="b", seller_id="s", amount=Decimal("25.00"))
        if n % 2:
            made.append(offers.offer_request(user_id="b", order_id=order.pk))
        else:
            made.append(offers.offer_make(user_id="s", order_id=order.pk, price="20.00", expires_in_s=3600))
    return made


def open_disputes(count: int) -> list[Dispute]:
    opened = []
    for _ in range(count):
        order = make_order(buyer_id="b", seller_id="s", amount=Decimal("25.00"), status="awaiting_acceptance")
        opened.append(
            disputes.dispute_open(
                user_id="b",
                order_id=order.pk,
                reason="not_received",
                refund_amount="25.00",
                return_item=False,
                details="",
            )
        )
    return opened


def run_at_once(count: int, work: Callable[[], int]) -> list[int]:
    """Run ``work`` in ``count`` threads released together; their results."""
    start, results, errors = threading.Barrier(count), [], []

    def run() -> None:
        try:
            start.wait(timeout=10)
            results.append(work())
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(results) == count
    return results


def test_the_worker_finds_and_registers_the_bridge_jobs(monkeypatch):
    monkeypatch.setattr(worker, "_jobs", {})
    monkeypatch.delitem(sys.modules, "orders_bridge.jobs")  # restored afterwards

    worker.autodiscover()

    registered = {job.name: job.interval_s for job in worker.registered_jobs()}
    assert {
        name: registered.get(name)
        for name in ("orders.outbox_deliver", "orders.offers_expire", "orders.disputes_escalate")
    } == {"orders.outbox_deliver": 1.0, "orders.offers_expire": 30.0, "orders.disputes_escalate": 60.0}


def test_offers_past_their_expiry_are_expired_once_with_an_offer_event():
    made = open_offers(4)  # two made (1 h), two requested (48 h)
    now = timezone.now()

    assert offers.offers_expire_due(now=now + timedelta(minutes=59)) == 0
    assert offers.offers_expire_due(now=now + timedelta(hours=1, seconds=1)) == 2
    assert offers.offers_expire_due(now=now + timedelta(hours=49)) == 2
    assert offers.offers_expire_due(now=now + timedelta(hours=50)) == 0

    for offer in made:
        assert Offer.objects.get(pk=offer.pk).status == "expired"
        expired = [e for e in kind_events(offer.order_id, "offer") if e.data["change"] == "expired"]
        assert len(expired) == 1 and expired[0].author_role == "system"
        assert expired[0].body in ("The offer expired.", "The request for a better price expired.")


def test_the_offers_job_expires_what_is_due_now():
    due, not_due = open_offers(2)
    Offer.objects.filter(pk=due.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    jobs.offers_expire()

    assert Offer.objects.get(pk=due.pk).status == "expired"
    assert Offer.objects.get(pk=not_due.pk).status == "requested"


def test_disputes_past_their_response_window_are_escalated_once():
    unanswered, answered = open_disputes(2)
    disputes.dispute_respond(user_id="s", dispute_id=str(answered.pk), action="reject")
    now = timezone.now()

    assert disputes.disputes_escalate_overdue(now=now + timedelta(days=4, hours=23)) == 0
    assert disputes.disputes_escalate_overdue(now=now + timedelta(days=5, seconds=1)) == 1
    assert disputes.disputes_escalate_overdue(now=now + timedelta(days=6)) == 0

    assert Dispute.objects.get(pk=unanswered.pk).status == "escalated"
    assert Dispute.objects.get(pk=answered.pk).status == "rejected"
    escalated = [e for e in kind_events(unanswered.order_id, "dispute") if e.data["change"] == "escalated"]
    assert len(escalated) == 1 and escalated[0].author_role == "system"
    outbox = OutboxMessage.objects.filter(order_id=unanswered.order_id, action="dispute.escalated")
    assert [m.payload["by"] for m in outbox] == ["deadline"]


def test_the_disputes_job_escalates_what_is_due_now():
    due, not_due = open_disputes(2)
    Dispute.objects.filter(pk=due.pk).update(respond_by=timezone.now() - timedelta(seconds=1))

    jobs.disputes_escalate()

    assert Dispute.objects.get(pk=due.pk).status == "escalated"
    assert Dispute.objects.get(pk=not_due.pk).status == "open"


def test_concurrent_expiry_runs_expire_each_offer_once():
    made = open_offers(20)
    later = timezone.now() + timedelta(days=3)

    results = run_at_once(4, lambda: offers.offers_expire_due(now=later))

    assert sum(results) == 20
    for offer in made:
        expired = [e for e in kind_events(offer.order_id, "offer") if e.data["change"] == "expired"]
        assert len(expired) == 1


def test_concurrent_escalation_runs_escalate_each_dispute_once():
    opened = open_disputes(20)
    later = timezone.now() + timedelta(days=6)

    results = run_at_once(4, lambda: disputes.disputes_escalate_overdue(now=later))

    assert sum(results) == 20
    for dispute in opened:
        escalated = [e for e in kind_events(dispute.order_id, "dispute") if e.data["change"] == "escalated"]
        assert len(escalated) == 1
        assert OutboxMessage.objects.filter(order_id=dispute.order_id, action="dispute.escalated").count() == 1
