"""Online users: badges on every tab, notification frames where the thread is not open,
mutes, and what a connection means for offline pushes. The real ASGI stack on the Redis
broker and PostgreSQL (tests/wsclient.TestSocket)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async as db

from chat_service.commerce.services import offers
from chat_service.threads import services
from chat_service.threads.notifications.models import Notification, NotificationProfile
from chat_service.threads.notifications.services import notifications_compose_due
from chat_service.transport.identity import token_mint
from tests.chat_service.threads.notifications.rounds import compose_and_deliver, later, seen_long_ago
from tests.factories import make_order
from tests.wsclient import TestSocket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def order():
    return await db(make_order)(
        buyer_id="ann",
        seller_id="lumen",
        supplier_name="Lumen Electronics",
        item_title="USB-C charger",
        amount=Decimal("24.90"),
    )


async def seller_says(order, body: str, n: int = 1) -> None:
    await db(services.message_send)(user_id="lumen", order_id=order.pk, client_msg_id=f"m{n}", body=body)


async def test_two_tabs_both_show_a_new_message_and_both_clear_when_one_reads_it(order):
    first, second = await TestSocket.open("ann"), await TestSocket.open("ann")
    await seller_says(order, "Hello!")
    for tab in (first, second):  # protocol 2: the notification is the one frame, with the counts
        frame = await tab.next_frame("notification")
        assert (frame["order_id"], frame["unread"], frame["unread_total"]) == (order.pk, 1, 1)
        await tab.no_frame("unread.updated")

    assert await first.request("thread.read", order_id=order.pk, seq=1) == {
        "read_seq": 1,
        "unread": 0,
        "unread_total": 0,
    }
    frame = await second.next_frame("unread.updated")
    assert frame == {"type": "unread.updated", "order_id": order.pk, "unread": 0, "unread_total": 0}
    await first.no_frame("unread.updated")  # the reader has its reply
    await first.close()
    await second.close()


async def test_a_notification_reaches_the_tab_without_the_thread_open_and_not_the_tab_with_it(order):
    open_tab, other_tab = await TestSocket.open("ann"), await TestSocket.open("ann")
    await open_tab.request("thread.join", order_id=order.pk)
    await seller_says(order, "Black is in stock.")

    assert await other_tab.next_frame("notification") == {
        "type": "notification",
        "kind": "message",
        "order_id": order.pk,
        "title": "New message from Lumen Electronics",
        "body": "USB-C charger: Black is in stock.",
        "event_seq": 1,
        "unread": 1,
        "unread_total": 1,
    }
    await open_tab.next_frame("thread.event")
    await open_tab.no_frame("notification")
    await open_tab.no_frame("unread.updated")  # derived from the thread.event

    await db(offers.offer_make)(user_id="lumen", order_id=order.pk, price="21.50")
    frame = await other_tab.next_frame("notification")
    assert (frame["kind"], frame["title"], frame["event_seq"]) == (
        "offer.made",
        "Offer: 21.50 USD for USB-C charger",
        2,
    )
    await open_tab.no_frame("notification")
    await open_tab.close()
    await other_tab.close()


async def test_the_author_gets_no_notification_of_their_own_message(order):
    seller = await TestSocket.open("lumen")
    await seller_says(order, "Hello!")
    await seller.no_frame("notification")
    await seller.close()


async def test_a_muted_thread_shows_no_notification_on_any_tab_but_the_badge_still_counts(order):
    muting_tab, other_tab = await TestSocket.open("ann"), await TestSocket.open("ann")
    assert await muting_tab.request("notifications.mute", order_id=order.pk, muted=True) == {
        "order_id": order.pk,
        "muted": True,
    }
    assert await other_tab.next_frame("notifications.mute_updated") == {
        "type": "notifications.mute_updated",
        "order_id": order.pk,
        "muted": True,
    }

    await seller_says(order, "Hello!")
    for tab in (muting_tab, other_tab):
        assert (await tab.next_frame("unread.updated"))["unread"] == 1
        await tab.no_frame("notification")
    late_tab = await TestSocket.open("ann")  # a tab opened after the mute knows it too
    await seller_says(order, "Still there?", n=2)
    await late_tab.no_frame("notification")

    await other_tab.request("notifications.mute", order_id=order.pk, muted=False)
    await muting_tab.next_frame("notifications.mute_updated")
    await seller_says(order, "Hello again", n=3)
    assert (await muting_tab.next_frame("notification"))["event_seq"] == 3
    for tab in (muting_tab, other_tab, late_tab):
        await tab.close()


async def test_only_a_participant_can_mute_a_thread(order):
    stranger = await TestSocket.open("mallory")
    reply = await stranger.request_frame("notifications.mute", order_id=order.pk, muted=True)
    assert reply["ok"] is False and reply["error"]["code"] == "not_found"
    bad = await stranger.request_frame("notifications.mute", order_id=order.pk, muted="yes")
    assert bad["error"]["code"] == "bad_request" and bad["error"]["field"] == "muted"
    await stranger.close()


async def test_preferences_over_the_socket(order):
    tab = await TestSocket.open("ann")
    assert await tab.request("notifications.preferences") == {
        "email": True,
        "push": True,
        "email_address_known": False,
        "muted_order_ids": [],
    }
    changed = await tab.request("notifications.preferences", push=False)
    assert changed["push"] is False and changed["email"] is True
    await tab.close()


async def test_the_token_email_claim_is_where_email_goes(order):
    token = token_mint(user_id="ann", name="Ann", email="ann@example.com")
    tab = await TestSocket.open(None, token=token)
    assert (await tab.request("notifications.preferences"))["email_address_known"] is True
    await tab.close()
    assert await db(lambda: NotificationProfile.objects.get(pk="ann").email)() == "ann@example.com"


async def test_a_buyer_who_comes_online_before_the_delay_gets_nothing_by_push(notify, push, smtp, order):
    await db(seen_long_ago)("ann", email="ann@example.com")
    await seller_says(order, "Hello!")
    await seller_says(order, "Which colour?", n=2)
    tab = await TestSocket.open("ann")  # she looks, without opening the thread, and leaves
    await tab.close()

    await db(compose_and_deliver)(later(notify["DIGEST_DELAY_S"] + 1))
    assert push.received == [] and smtp.messages == []
    assert await db(lambda: set(Notification.objects.values_list("reason", flat=True)))() == {"online"}


async def test_a_buyer_connected_since_before_the_messages_gets_nothing_by_push(notify, push, order):
    await db(seen_long_ago)("ann")
    tab = await TestSocket.open("ann")  # connected before, and still connected at delivery time
    await seller_says(order, "Hello!")
    await tab.next_frame("notification")

    counts = await db(notifications_compose_due)(now=later(notify["DIGEST_DELAY_S"] + 1))
    assert counts.dropped == 1 and counts.digests == 0
    assert await db(lambda: Notification.objects.get().reason)() == "online"
    await tab.close()
