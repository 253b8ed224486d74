"""Thread services on the real database: seqs, idempotency, counters, pushes on commit.

Every test runs twice: with the append rule as PostgreSQL's one statement
(chat_service.threads.statements.APPEND) and as the portable statements SQLite uses, on the
same database, so that the two forms of the rule cannot drift apart.
"""

import pytest
from django.db import transaction

from chat_service import fanout
from chat_service.machinery import pgpool
from chat_service.protocol.errors import NotFound
from chat_service.threads.models import Event
from chat_service.threads.notifications.models import Notification
from chat_service.threads.services import message_send, thread_read
from tests.factories import make_order, thread_of
from tests.publications import decoded

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True, params=["statement", "portable"])
def append_form(request, monkeypatch):
    if request.param == "portable":
        monkeypatch.setattr(pgpool, "enabled", lambda: False)
    return request.param


def send(user, order, body="hi", cmid=None):
    send.n = getattr(send, "n", 0) + 1
    return message_send(user_id=user, order_id=order.pk, client_msg_id=cmid or f"c{send.n}", body=body)


def test_seqs_start_at_one_and_never_skip_across_both_parties():
    order = make_order(buyer_id="b", seller_id="s")
    seqs = [send(user, order).event.seq for user in ["b", "s", "b", "b", "s"]]
    assert seqs == [1, 2, 3, 4, 5]
    assert list(Event.objects.filter(thread_id=order.pk).order_by("seq").values_list("seq", flat=True)) == seqs
    assert thread_of(order).last_seq == 5


def test_same_client_msg_id_returns_the_original_and_stores_nothing():
    order = make_order(buyer_id="b", seller_id="s")
    first = send("b", order, body="once", cmid="same")
    again = send("b", order, body="twice?", cmid="same")
    assert first.created and not again.created
    assert again.event.pk == first.event.pk and again.event.body == "once"
    assert Event.objects.filter(thread_id=order.pk).count() == 1
    assert thread_of(order).last_seq == 1 and thread_of(order).seller_unread == 1


def test_client_msg_id_is_scoped_to_its_author():
    order = make_order(buyer_id="b", seller_id="s")
    assert send("b", order, cmid="x").created
    assert send("s", order, cmid="x").created
    assert thread_of(order).last_seq == 2


def test_unread_counts_the_other_partys_events_and_replying_marks_read():
    order = make_order(buyer_id="b", seller_id="s")
    for _ in range(3):
        send("b", order)
    thread = thread_of(order)
    assert (thread.seller_unread, thread.buyer_unread) == (3, 0)
    send("s", order)
    thread = thread_of(order)
    assert (thread.seller_unread, thread.seller_read_seq) == (0, 4)
    assert thread.buyer_unread == 1


def test_read_marker_moves_forward_only_and_never_past_the_end():
    order = make_order(buyer_id="b", seller_id="s")
    for _ in range(4):
        send("b", order)
    outcome = thread_read(user_id="s", order_id=order.pk, seq=2)
    assert (outcome.read_seq, outcome.unread, outcome.changed) == (2, 2, True)
    assert thread_read(user_id="s", order_id=order.pk, seq=1).read_seq == 2  # not backwards
    outcome = thread_read(user_id="s", order_id=order.pk, seq=999)  # clamped to last_seq
    assert (outcome.read_seq, outcome.unread, thread_of(order).seller_unread) == (4, 0, 0)


def test_unread_total_sums_threads_where_the_user_buys_and_where_they_sell():
    as_buyer = make_order(buyer_id="u", seller_id="s1")
    as_seller = make_order(buyer_id="b2", seller_id="u")
    send("s1", as_buyer)
    send("b2", as_seller)
    send("b2", as_seller)
    outcome = thread_read(user_id="u", order_id=as_seller.pk, seq=1)
    assert (outcome.unread, outcome.unread_total) == (1, 2)


@pytest.mark.parametrize("stranger", ["nobody", "b-other", "s-other"])
def test_non_participant_cannot_send_or_read_and_nothing_is_stored(stranger):
    order = make_order(buyer_id="b", seller_id="s")
    make_order(buyer_id="b-other", seller_id="s-other")
    with pytest.raises(NotFound):
        send(stranger, order)
    with pytest.raises(NotFound):
        thread_read(user_id=stranger, order_id=order.pk, seq=0)
    assert Event.objects.filter(thread_id=order.pk).count() == 0
    assert thread_of(order).last_seq == 0


def test_send_publishes_the_event_to_the_thread_and_the_counts_to_the_recipient_after_commit():
    order = make_order(buyer_id="b", seller_id="s")
    with fanout.collecting() as pushed:
        event = send("b", order, body="hello").event
    thread_frame = {"type": "thread.event", "order_id": order.pk, "event": decoded(pushed)[0][1]["f"]["event"]}
    assert decoded(pushed) == [
        (f"t.{order.pk}", {"k": "event", "o": order.pk, "s": 1, "f": thread_frame}),
        (
            "u.s",
            {
                "k": "unread",
                "o": order.pk,
                "d": True,
                "f": {"type": "unread.updated", "order_id": order.pk, "unread": 1, "unread_total": 1},
                "n": {
                    "type": "notification",
                    "kind": "message",
                    "order_id": order.pk,
                    "title": "New message from your buyer",
                    "body": f"{order.item_title}: hello",
                    "event_seq": 1,
                    "unread": 1,
                    "unread_total": 1,
                },
            },
        ),
    ]
    assert thread_frame["event"]["seq"] == event.seq and thread_frame["event"]["body"] == "hello"


def test_a_reply_publishes_nothing_about_the_authors_own_marker():
    order = make_order(buyer_id="b", seller_id="s")
    send("b", order)
    with fanout.collecting() as pushed:
        send("s", order)
    assert [(topic, envelope["k"]) for topic, envelope in decoded(pushed)] == [
        (f"t.{order.pk}", "event"),
        ("u.b", "unread"),
    ]
    thread = thread_of(order)
    assert (thread.seller_read_seq, thread.seller_unread) == (2, 0)  # implied by the message


def test_no_notification_row_for_a_recipient_who_is_online():
    order = make_order(buyer_id="b", seller_id="s")
    message_send(user_id="b", order_id=order.pk, client_msg_id="seen", body="live", online={"s"})
    message_send(user_id="b", order_id=order.pk, client_msg_id="unseen", body="later")
    assert list(Notification.objects.values_list("user_id", "event_seq")) == [("s", 2)]


def test_unread_totals_in_the_counts_cover_every_thread_of_the_recipient():
    first = make_order(buyer_id="b", seller_id="s")
    second = make_order(buyer_id="b2", seller_id="s")
    send("b", first)
    with fanout.collecting() as pushed:
        send("b2", second)
    counts = decoded(pushed)[1][1]["f"]
    assert (counts["unread"], counts["unread_total"]) == (1, 2)


def test_nothing_is_pushed_when_the_transaction_rolls_back():
    order = make_order(buyer_id="b", seller_id="s")
    with fanout.collecting() as pushed:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                send("b", order)
                raise RuntimeError("abort")
    assert pushed == []
    assert Event.objects.filter(thread_id=order.pk).count() == 0


def test_read_pushes_only_when_the_marker_moves():
    order = make_order(buyer_id="b", seller_id="s")
    send("b", order)
    with fanout.collecting() as pushed:
        thread_read(user_id="s", order_id=order.pk, seq=1)
        thread_read(user_id="s", order_id=order.pk, seq=1)
    assert [envelope["k"] for _, envelope in decoded(pushed)] == ["read", "unread"]
