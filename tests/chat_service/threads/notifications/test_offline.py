"""Offline users: digests, drops and reminders, through the real channels.

Push goes to a real HTTP server on loopback that checks the signature itself; e-mail
through a real SMTP conversation with a local aiosmtpd server. Time moves by passing
``now`` to the worker's services; nothing waits for the digest delay.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from chat_service.commerce.reminders import reminders_schedule_due
from chat_service.commerce.services import disputes, offers
from chat_service.threads import services
from chat_service.threads.notifications.models import (
    DeliveryStatus,
    Notification,
    NotificationProfile,
    NotificationStatus,
)
from chat_service.threads.notifications.services import (
    notification_preferences_update,
    notification_profile_connected,
    notification_profile_disconnected,
    notifications_compose_due,
    thread_mute_set,
)
from tests.chat_service.threads.notifications.rounds import compose_and_deliver, deliveries, later, seen_long_ago
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def order():
    return make_order(
        buyer_id="ann",
        seller_id="lumen",
        supplier_name="Lumen Electronics",
        item_title="USB-C charger",
        amount=Decimal("24.90"),
    )


def seller_says(order, *bodies: str) -> None:
    for n, body in enumerate(bodies):
        services.message_send(user_id="lumen", order_id=order.pk, client_msg_id=f"m{n}-{body[:8]}", body=body)


def test_three_messages_within_the_delay_reach_an_offline_buyer_as_one_digest_by_push_and_email(
    notify, push, smtp, order
):
    seen_long_ago("ann", email="ann@example.com")
    seller_says(order, "Hello!", "Which colour do you want?", "Black is in stock.")

    compose_and_deliver(later(60))  # within the delay: nothing yet
    assert push.received == [] and smtp.messages == []

    compose_and_deliver(later(notify["DIGEST_DELAY_S"] + 1))
    assert len(push.received) == 1 and len(smtp.messages) == 1
    sent = push.received[0]
    assert sent.signed and sent.status == 200
    payload = sent.payload
    assert payload["user_id"] == "ann" and payload["order_id"] == order.pk
    assert payload["title"] == "3 new messages from Lumen Electronics"
    assert payload["count"] == 3 and payload["event_seqs"] == [1, 2, 3]
    assert "Black is in stock." in payload["body"] and payload["idempotency_key"] == sent.key
    mail = smtp.messages[0]
    assert mail.rcpt_tos == ["ann@example.com"]
    assert mail.message["Subject"] == "3 new messages from Lumen Electronics"
    email_row = deliveries(channel="email")[0]
    assert mail.message["Message-ID"] == f"<{email_row.idempotency_key}@order-chat>"
    assert "Which colour do you want?" in mail.message.get_payload(decode=True).decode()

    compose_and_deliver(later(3600))  # nothing is sent twice
    assert len(push.received) == 1 and len(smtp.messages) == 1
    assert {d.status for d in deliveries()} == {DeliveryStatus.DELIVERED}


def test_messages_read_on_another_device_before_the_delay_are_not_sent(notify, push, smtp, order):
    seen_long_ago("ann", email="ann@example.com")
    seller_says(order, "Hello!", "Which colour?", "Black is in stock.")
    services.thread_read(user_id="ann", order_id=order.pk, seq=3)  # e.g. the app on her phone, over HTTP

    compose_and_deliver(later(notify["DIGEST_DELAY_S"] + 1))
    assert push.received == [] and smtp.messages == []
    assert set(Notification.objects.values_list("status", "reason")) == {(NotificationStatus.DROPPED, "read")}


def test_only_what_is_still_unread_is_in_the_digest(notify, push, smtp, order):
    seen_long_ago("ann")
    seller_says(order, "Hello!", "Which colour?", "Black is in stock.")
    services.thread_read(user_id="ann", order_id=order.pk, seq=2)

    compose_and_deliver(later(notify["DIGEST_DELAY_S"] + 1))
    assert [p.payload["event_seqs"] for p in push.received] == [[3]]
    assert push.received[0].payload["title"] == "New message from Lumen Electronics"
    assert smtp.messages == []  # no address known for her: no e-mail


def test_urgent_events_do_not_wait_for_the_digest_delay(notify, push, order):
    seen_long_ago("ann")
    offers.offer_make(user_id="lumen", order_id=order.pk, price="21.50")

    compose_and_deliver(timezone.now())
    assert [p.payload["title"] for p in push.received] == ["Offer: 21.50 USD for USB-C charger"]
    assert push.received[0].payload["kind"] == "offer.made"


def test_a_buyer_who_was_connected_since_the_messages_gets_nothing_by_push(notify, push, smtp, order):
    seen_long_ago("ann", email="ann@example.com")
    seller_says(order, "Hello!", "Which colour?")
    # She opened the page on her laptop and closed it again (what the socket's connect
    # and disconnect record; the socket path itself is tested in test_socket.py).
    notification_profile_connected(user_id="ann", email="ann@example.com")
    notification_profile_disconnected(user_id="ann")

    compose_and_deliver(later(notify["DIGEST_DELAY_S"] + 1))
    assert push.received == [] and smtp.messages == []
    assert set(Notification.objects.values_list("reason", flat=True)) == {"online"}


def test_an_offer_expiring_soon_reminds_the_buyer_once(notify, push, smtp, order):
    seen_long_ago("ann", email="ann@example.com")
    offer = offers.offer_make(user_id="lumen", order_id=order.pk, price="21.50", expires_in_s=2 * 86400)
    compose_and_deliver(timezone.now())  # the offer itself, at once
    assert [p.payload["kind"] for p in push.received] == ["offer.made"]
    lead = timedelta(seconds=notify["OFFER_REMINDER_LEAD_S"])

    assert reminders_schedule_due(now=offer.expires_at - lead - timedelta(minutes=1)) == 0  # not yet
    at = offer.expires_at - lead + timedelta(minutes=1)
    assert reminders_schedule_due(now=at) == 1
    assert reminders_schedule_due(now=at) == 0  # scanned again: nothing new
    assert reminders_schedule_due(now=at + timedelta(hours=1)) == 0
    compose_and_deliver(at)
    compose_and_deliver(at + timedelta(hours=1))

    reminders = [p.payload for p in push.received if p.payload["kind"] == "offer.expiring"]
    assert len(reminders) == 1 and reminders[0]["user_id"] == "ann"
    assert reminders[0]["title"] == "Offer for USB-C charger expires soon"
    assert "21.50 USD" in reminders[0]["body"]
    assert [m.message["Subject"] for m in smtp.messages] == [
        "Offer: 21.50 USD for USB-C charger",
        "Offer for USB-C charger expires soon",
    ]


def test_an_offer_answered_before_its_reminder_is_sent_is_not_reminded(notify, push, order):
    seen_long_ago("ann")
    offer = offers.offer_make(user_id="lumen", order_id=order.pk, price="21.50", expires_in_s=2 * 86400)
    at = offer.expires_at - timedelta(hours=5)
    assert reminders_schedule_due(now=at) == 1
    offers.offer_decline(user_id="ann", offer_id=str(offer.pk))
    compose_and_deliver(at)
    # Her decline marked the offer read, and the reminder has nothing left to remind of.
    assert [p.payload["kind"] for p in push.received if p.payload["user_id"] == "ann"] == []
    assert Notification.objects.get(kind="offer.expiring").reason == "gone"
    assert Notification.objects.get(kind="offer.made").reason == "read"


def test_a_dispute_answer_due_soon_reminds_the_seller_once(notify, push):
    order = make_order(buyer_id="ann", seller_id="lumen", item_title="USB-C charger", status="awaiting_acceptance")
    seen_long_ago("lumen")
    dispute = disputes.dispute_open(
        user_id="ann",
        order_id=order.pk,
        reason="works_poorly",
        refund_amount="10.00",
        return_item=False,
        details="Charges slowly",
    )
    compose_and_deliver(timezone.now())  # the dispute itself, at once
    at = dispute.respond_by - timedelta(hours=5)
    assert reminders_schedule_due(now=at) == 1
    assert reminders_schedule_due(now=at) == 0
    compose_and_deliver(at)
    assert [p.payload["kind"] for p in push.received] == ["dispute.opened", "dispute.response_due"]
    assert all(p.payload["user_id"] == "lumen" for p in push.received)
    assert push.received[1].payload["title"] == "Answer the dispute on USB-C charger"


def test_a_muted_thread_sends_nothing_but_others_still_do(notify, push, smtp, order):
    other = make_order(buyer_id="ann", seller_id="lumen", supplier_name="Lumen Electronics", item_title="Cable")
    seen_long_ago("ann", email="ann@example.com")
    thread_mute_set(user_id="ann", order_id=order.pk, muted=True)
    seller_says(order, "Hello!")
    offers.offer_make(user_id="lumen", order_id=order.pk, price="21.50")
    services.message_send(user_id="lumen", order_id=other.pk, client_msg_id="x1", body="About the cable")

    compose_and_deliver(later(notify["DIGEST_DELAY_S"] + 1))
    assert [p.payload["order_id"] for p in push.received] == [other.pk]
    assert [m.message["Subject"] for m in smtp.messages] == ["New message from Lumen Electronics"]
    assert set(Notification.objects.filter(thread_id=order.pk).values_list("reason", flat=True)) == {"muted"}


@pytest.mark.parametrize(
    "email, push_on, expected",
    [(False, True, {"webhook"}), (True, False, {"email"}), (False, False, set())],
)
def test_a_channel_turned_off_is_not_used(notify, push, smtp, order, email, push_on, expected):
    seen_long_ago("ann", email="ann@example.com")
    notification_preferences_update(user_id="ann", email=email, push=push_on)
    seller_says(order, "Hello!")
    compose_and_deliver(later(notify["DIGEST_DELAY_S"] + 1))
    used = ({"webhook"} if push.received else set()) | ({"email"} if smtp.messages else set())
    assert used == expected
    assert {d.channel for d in deliveries()} == expected


def test_a_permanently_failing_endpoint_does_not_hold_back_other_users(notify, push, client):
    first = make_order(buyer_id="broken", seller_id="lumen")
    second = make_order(buyer_id="ann", seller_id="lumen")
    push.fail_users = {"broken"}
    offers.offer_make(user_id="lumen", order_id=first.pk, price="10.00")  # older, and failing for ever
    offers.offer_make(user_id="lumen", order_id=second.pk, price="10.00")

    now = timezone.now()
    compose_and_deliver(now)
    assert [p.payload["user_id"] for p in push.accepted()] == ["ann"]
    broken = deliveries(user_id="broken")[0]
    assert broken.status == DeliveryStatus.PENDING and broken.next_attempt_at > now and broken.attempts == 1

    # Retried with backoff, always with the same key, until the attempts run out.
    for _ in range(notify["MAX_ATTEMPTS"]):
        broken.refresh_from_db()
        if broken.status != DeliveryStatus.PENDING:
            break
        compose_and_deliver(broken.next_attempt_at)
    broken.refresh_from_db()
    assert broken.status == DeliveryStatus.FAILED and broken.attempts == notify["MAX_ATTEMPTS"]
    tries = [p for p in push.received if p.payload["user_id"] == "broken"]
    assert len(tries) == notify["MAX_ATTEMPTS"] and {p.key for p in tries} == {broken.idempotency_key}
    assert len({p.body for p in tries}) == 1

    # Once the endpoint works again, the admin's "Retry delivery" sends it, same key.
    push.fail_users = set()
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    assert client.get("/admin/notifications/notificationdelivery/?q=broken").status_code == 200
    client.post(
        "/admin/notifications/notificationdelivery/", {"action": "retry_delivery", "_selected_action": [broken.pk]}
    )
    compose_and_deliver(timezone.now())
    broken.refresh_from_db()
    assert broken.status == DeliveryStatus.DELIVERED
    assert [p.key for p in push.accepted() if p.payload["user_id"] == "broken"] == [broken.idempotency_key]


@pytest.mark.parametrize("path", ["notification", "notificationdelivery", "notificationprofile", "threadmute"])
def test_the_admin_lists_the_notification_tables(client, path):
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    assert client.get(f"/admin/notifications/{path}/").status_code == 200


def test_a_refused_push_or_an_unknown_mailbox_fails_at_once_and_a_busy_one_is_retried(notify, push, smtp):
    for user in ("gone", "busy"):
        seen_long_ago(user, email=f"{user}@example.com")
        offers.offer_make(user_id="lumen", order_id=make_order(buyer_id=user, seller_id="lumen").pk, price="9.00")
    push.status_for_users = {"gone": 410, "busy": 429}
    smtp.refuse = {"gone@example.com": "550 5.1.1 No such user", "busy@example.com": "451 4.3.0 Try again later"}

    compose_and_deliver(timezone.now())
    status = {(d.user_id, d.channel): (d.status, d.attempts) for d in deliveries()}
    assert status == {
        ("gone", "webhook"): (DeliveryStatus.FAILED, 1),
        ("gone", "email"): (DeliveryStatus.FAILED, 1),
        ("busy", "webhook"): (DeliveryStatus.PENDING, 1),
        ("busy", "email"): (DeliveryStatus.PENDING, 1),
    }
    assert smtp.messages == []
    push.status_for_users, smtp.refuse = {}, {}
    compose_and_deliver(later(notify["BACKOFF_MAX_S"] + 1))
    assert {(d.user_id, d.channel): d.status for d in deliveries(user_id="busy")} == {
        ("busy", "webhook"): DeliveryStatus.DELIVERED,
        ("busy", "email"): DeliveryStatus.DELIVERED,
    }
    assert [m.rcpt_tos for m in smtp.messages] == [["busy@example.com"]]


def test_while_another_worker_composes_for_a_user_their_rows_are_skipped_not_split(notify, push, order):
    seen_long_ago("ann")
    seller_says(order, "Hello!", "Which colour?")
    locked, release, errors = threading.Event(), threading.Event(), []

    def other_worker() -> None:  # sits inside its compose transaction, holding ann's profile lock
        try:
            with transaction.atomic():
                NotificationProfile.objects.select_for_update().get(pk="ann")
                locked.set()
                release.wait(timeout=30)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        with connection.cursor() as cursor:  # waiting on the lock would fail, not hang
            cursor.execute("SET lock_timeout = '3s'")
        counts = notifications_compose_due(now=later(notify["DIGEST_DELAY_S"] + 1))
    finally:
        release.set()
        thread.join(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert errors == [] and counts.skipped == 1 and counts.digests == 0
    assert not Notification.objects.exclude(status=NotificationStatus.PENDING).exists()

    assert notifications_compose_due(now=later(notify["DIGEST_DELAY_S"] + 1)).digests == 1
    assert [d.payload["count"] for d in deliveries()] == [2]
