"""Who has a visible presence, and the typical reply time, on PostgreSQL."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chat_service.threads import services
from chat_service.threads.models import Event
from presence.selectors import sellers_among, typical_reply_seconds
from tests.factories import make_order

pytestmark = pytest.mark.django_db


def conversation(order, *lines):
    """Store messages ("b"|"s", seconds after a start 10 days ago), then date them."""
    start = timezone.now() - timedelta(days=10)
    for n, (who, at) in enumerate(lines):
        author = order.buyer_id if who == "b" else order.seller_id
        event = services.message_send(
            user_id=author, order_id=order.pk, client_msg_id=f"{order.pk}-{n}", body=f"line {n}"
        ).event
        Event.objects.filter(pk=event.pk).update(created_at=start + timedelta(seconds=at))


def test_only_sellers_of_an_order_are_visible():
    make_order(buyer_id="buyer", seller_id="seller")
    assert sellers_among(user_ids=["seller", "buyer", "nobody"]) == {"seller"}


def test_the_typical_reply_time_is_the_median_wait_for_the_sellers_next_message():
    first = make_order(buyer_id="b1", seller_id="s")
    second = make_order(buyer_id="b2", seller_id="s")
    # waits: 60 (two buyer lines are one wait, from the first), 120, 600; unanswered last line
    conversation(first, ("b", 0), ("b", 10), ("s", 60), ("b", 100), ("s", 220), ("s", 230), ("b", 300))
    conversation(second, ("s", 0), ("b", 50), ("s", 650))
    assert typical_reply_seconds(seller_ids=["s"]) == {"s": 120}


def test_replies_older_than_30_days_and_other_sellers_do_not_count():
    order = make_order(buyer_id="b", seller_id="s")
    other = make_order(buyer_id="b", seller_id="other")
    conversation(other, ("b", 0), ("s", 5))
    conversation(order, ("b", 0), ("s", 40))
    Event.objects.filter(thread_id=order.pk).update(created_at=timezone.now() - timedelta(days=31))
    assert typical_reply_seconds(seller_ids=["s", "other"]) == {"s": None, "other": 5}


def test_reply_times_and_visibility_are_cached(django_assert_num_queries):
    order = make_order(buyer_id="b", seller_id="s")
    conversation(order, ("b", 0), ("s", 30))
    with django_assert_num_queries(2):
        assert typical_reply_seconds(seller_ids=["s", "quiet"]) == {"s": 30, "quiet": None}
        assert sellers_among(user_ids=["s", "b"]) == {"s"}
    with django_assert_num_queries(0):
        assert typical_reply_seconds(seller_ids=["s", "quiet"]) == {"s": 30, "quiet": None}
        assert sellers_among(user_ids=["s", "b"]) == {"s"}
