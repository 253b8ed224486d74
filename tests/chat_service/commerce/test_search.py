"""Order search (the Manage Orders list), its tab counts, order detail and the dispute list,
through the HTTP endpoints on PostgreSQL: every filter, every tab, keyset paging both
ways, what each role sees and may do, and every refusal."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from chat_service.commerce.services import disputes, offers, orders
from chat_service.protocol.errors import InvalidState
from chat_service.threads import services as chat
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.chat_service.commerce.search_urls")]

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def get(user, path, **params):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token_for(user)}"} if user else {}
    return Client().get(path, {k: v for k, v in params.items() if v is not None}, **headers)


def ok(user, path, **params):
    response = get(user, path, **params)
    assert response.status_code == 200, response.content
    return response.json()


def ids(body, key="orders"):
    return [item["order_id"] if key == "orders" else item["dispute_id"] for item in body[key]]


def listed(user, **params):
    return ids(ok(user, "/api/orders/", **params))


def order(n, *, buyer="b", seller="s", at=None, **fields):
    """Order ``O{n}`` placed ``n`` hours before T0 unless ``at`` is given."""
    return make_order(
        order_id=f"O{n:03d}", buyer_id=buyer, seller_id=seller, ordered_at=at or T0 - timedelta(hours=n), **fields
    )


def shipped(n, **fields):
    return order(n, status="awaiting_acceptance", tracking_number=f"LP{n:08d}CN", amount=Decimal("40.00"), **fields)


def open_dispute(o, *, amount="10.00", return_item=False):
    return disputes.dispute_open(
        user_id=o.buyer_id,
        order_id=o.pk,
        reason="wrong_size",
        refund_amount=amount,
        return_item=return_item,
        details="Too small",
    )


# --- the list: who, in what order -------------------------------------------------------------


def test_list_has_the_users_orders_as_buyer_and_seller_newest_first_and_nobody_elses():
    order(3, buyer="b")
    order(1, buyer="x", seller="b")  # b sells this one
    order(2, buyer="b", seller="y")
    order(4, buyer="x", seller="y")  # not b's
    body = ok("b", "/api/orders/")
    assert ids(body) == ["O001", "O002", "O003"]
    assert [item["role"] for item in body["orders"]] == ["seller", "buyer", "buyer"]
    assert body["next"] is None and body["prev"] is None
    assert listed("y") == ["O002", "O004"]


def test_an_order_the_user_sold_to_themselves_is_listed_once_as_buyer():
    order(1, buyer="b", seller="b")
    body = ok("b", "/api/orders/")
    assert ids(body) == ["O001"] and body["orders"][0]["role"] == "buyer"


def test_orders_placed_at_the_same_moment_are_ordered_by_id_descending():
    for n in (5, 7, 6):
        order(n, at=T0)
    order(1, at=T0 - timedelta(microseconds=1))
    assert listed("b") == ["O007", "O006", "O005", "O001"]


def test_role_narrows_the_list_to_one_side():
    order(1, buyer="b", seller="s")
    order(2, buyer="x", seller="b")
    assert listed("b", role="buyer") == ["O001"]
    assert listed("b", role="seller") == ["O002"]


def test_item_has_the_order_its_thread_counts_and_its_live_offer():
    unpaid = order(1, amount=Decimal("25.00"), properties={"colour": "red"})
    chat.message_send(user_id="s", order_id=unpaid.pk, client_msg_id="m1", body="hi")
    chat.message_send(user_id="s", order_id=unpaid.pk, client_msg_id="m2", body="there")
    offer = offers.offer_make(user_id="s", order_id=unpaid.pk, price="20.00")
    item = ok("b", "/api/orders/")["orders"][0]
    assert item["order_id"] == "O001" and item["amount"] == "25.00" and item["properties"] == {"colour": "red"}
    assert item["status"] == "awaiting_payment" and item["role"] == "buyer" and item["feedback"] is None
    assert item["unread"] == 3 and item["last_seq"] == 3
    assert item["offer"]["offer_id"] == str(offer.pk) and item["offer"]["status"] == "open"
    assert item["offer"]["price"] == "20.00" and item["dispute"] is None
    assert item["actions"] == {"order": ["cancel"], "offer": ["accept", "decline"], "dispute": []}
    seller_item = ok("s", "/api/orders/")["orders"][0]
    assert seller_item["unread"] == 0 and seller_item["role"] == "seller"
    assert seller_item["actions"] == {"order": [], "offer": ["withdraw"], "dispute": []}


def test_item_shows_the_open_dispute_and_what_each_party_may_do_with_it():
    goods = shipped(1)
    dispute = open_dispute(goods)
    buyer_item = ok("b", "/api/orders/")["orders"][0]
    assert buyer_item["dispute"]["dispute_id"] == str(dispute.pk) and buyer_item["dispute"]["status"] == "open"
    assert buyer_item["offer"] is None
    # Confirming receipt releases the payment: not while a dispute is open.
    assert buyer_item["actions"] == {"order": [], "offer": [], "dispute": ["cancel", "escalate"]}
    seller_item = ok("s", "/api/orders/")["orders"][0]
    assert seller_item["actions"]["dispute"] == ["accept", "counter", "reject"]
    disputes.dispute_cancel(user_id="b", dispute_id=str(dispute.pk))
    after = ok("b", "/api/orders/")["orders"][0]
    assert after["dispute"] is None and after["actions"]["order"] == ["confirm_receipt", "open_dispute"]


def test_after_a_resolved_dispute_the_item_shows_its_outcome_and_offers_neither_receipt_nor_another_dispute():
    goods = shipped(1)
    dispute = open_dispute(goods, amount="12.50", return_item=False)
    disputes.dispute_respond(user_id="s", dispute_id=str(dispute.pk), action="accept")
    item = ok("b", "/api/orders/")["orders"][0]
    assert item["dispute"] is None
    assert item["last_dispute"]["status"] == "resolved" and item["last_dispute"]["agreed_amount"] == "12.50"
    assert item["last_dispute"]["return_item"] is False and item["last_dispute"]["closed_at"]
    assert item["actions"]["order"] == []
    detail = ok("b", f"/api/orders/{goods.pk}/")
    assert detail["allowed_actions"]["order"] == []
    with pytest.raises(InvalidState, match="dispute has been resolved"):
        orders.order_confirm_receipt(user_id="b", order_id=goods.pk)


def test_buyer_cannot_confirm_receipt_while_a_dispute_is_open():
    goods = shipped(1)
    dispute = open_dispute(goods)
    disputes.dispute_escalate(user_id="b", dispute_id=str(dispute.pk))
    with pytest.raises(InvalidState, match="while a dispute is open"):
        orders.order_confirm_receipt(user_id="b", order_id=goods.pk)
    assert ok("b", "/api/orders/")["orders"][0]["actions"]["order"] == []
    disputes.dispute_cancel(user_id="b", dispute_id=str(dispute.pk))
    assert orders.order_confirm_receipt(user_id="b", order_id=goods.pk).status == "completed"


# --- filters ---------------------------------------------------------------------------------------


def test_q_matches_a_substring_of_the_item_title_in_any_case():
    order(1, item_title="Wireless Earbuds Pro")
    order(2, item_title="USB-C cable, 2 m")
    order(3, item_title="Earring set")
    order(4, buyer="x", item_title="Wireless Earbuds")
    assert listed("b", q="EARBUD") == ["O001"]
    assert listed("b", q="ear") == ["O001", "O003"]
    assert listed("b", q="  cable, 2 ") == ["O002"]  # surrounding spaces are ignored
    assert listed("b", q="headphones") == []


def test_q_treats_like_wildcards_literally():
    order(1, item_title="100% cotton shirt")
    order(2, item_title="1000 cotton buds")
    order(3, item_title="snake_case mug")
    order(4, item_title="snakeXcase mug")
    assert listed("b", q="100%") == ["O001"]
    assert listed("b", q="e_c") == ["O003"]


def test_supplier_matches_a_substring_of_the_supplier_name_in_any_case():
    order(1, supplier_name="Shenzhen Bright Lighting Co.")
    order(2, supplier_name="Yiwu Crafts")
    assert listed("b", supplier="bright light") == ["O001"]
    assert listed("b", supplier="CRAFT") == ["O002"]


def test_order_id_matches_the_start_of_the_id_in_any_case():
    order(1)
    order(10)
    order(11, buyer="x")
    assert listed("b", order_id="O010") == ["O010"]
    assert listed("b", order_id="o01") == ["O010"]
    assert listed("b", order_id="o0") == ["O001", "O010"]
    assert listed("b", order_id="010") == []  # the start, not any part
    assert listed("b", order_id="O0_") == []  # LIKE wildcards are literal
    assert listed("b", order_id="O011") == []  # someone else's


def test_tracking_matches_the_start_of_the_number_in_any_case():
    shipped(1)
    shipped(2)
    assert listed("b", tracking="lp00000001cn") == ["O001"]
    assert listed("b", tracking="lp00000001") == ["O001"]
    assert listed("b", tracking="lp0000000") == ["O001", "O002"]
    assert listed("b", tracking="00000001") == []


@pytest.mark.parametrize(
    "status", ["awaiting_payment", "awaiting_shipment", "awaiting_acceptance", "completed", "cancelled"]
)
def test_status_tab_lists_only_orders_in_that_status(status):
    for n, each in enumerate(
        ["awaiting_payment", "awaiting_shipment", "awaiting_acceptance", "completed", "cancelled"], start=1
    ):
        order(n, status=each)
        order(n + 10, status=each, buyer="x", seller="b")
    body = ok("b", "/api/orders/", status=status)
    assert {item["status"] for item in body["orders"]} == {status} and len(body["orders"]) == 2


def test_disputes_tab_lists_orders_with_an_open_dispute_only():
    disputed, settled, calm = shipped(1), shipped(2), shipped(3)
    open_dispute(disputed)
    cancelled = open_dispute(settled)
    disputes.dispute_cancel(user_id="b", dispute_id=str(cancelled.pk))
    sold = shipped(4, buyer="x", seller="b")
    open_dispute(sold)
    assert listed("b", status="disputes") == ["O001", "O004"]
    assert calm.pk not in listed("b", status="disputes")


def test_unread_tab_lists_orders_with_unread_events_for_the_caller_only():
    talked, quiet, sold = order(1), order(2), order(3, buyer="x", seller="b")
    chat.message_send(user_id="s", order_id=talked.pk, client_msg_id="m1", body="Shipped soon")
    chat.message_send(user_id="x", order_id=sold.pk, client_msg_id="m1", body="Where is it?")
    assert listed("b", status="unread") == ["O001", "O003"]
    assert listed("s", status="unread") == []  # s wrote it: nothing unread for the author
    chat.thread_read(user_id="b", order_id=talked.pk, seq=1)
    assert listed("b", status="unread") == ["O003"]
    assert quiet.pk not in listed("b", status="unread")


def test_date_range_is_whole_utc_days_both_ends_included():
    def at(n, moment):
        order(n, at=moment)

    at(1, datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    at(2, datetime(2026, 1, 1, 0, 0, tzinfo=UTC))
    at(3, datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC))
    at(4, datetime(2026, 2, 1, 0, 0, tzinfo=UTC))
    assert listed("b", date_from="2026-01-01", date_to="2026-01-31") == ["O003", "O002"]
    assert listed("b", date_from="2026-01-31") == ["O004", "O003"]
    assert listed("b", date_to="2025-12-31") == ["O001"]
    assert listed("b", date_from="2026-01-01", date_to="2026-01-01") == ["O002"]


def test_filters_combine():
    order(1, item_title="Red lamp", status="completed", supplier_name="Bright")
    order(2, item_title="Red lamp", status="cancelled", supplier_name="Bright")
    order(3, item_title="Blue lamp", status="completed", supplier_name="Bright")
    order(4, item_title="Red lamp", status="completed", supplier_name="Dim")
    order(500, item_title="Red lamp", status="completed", supplier_name="Bright")
    day = (T0 - timedelta(hours=1)).date().isoformat()
    assert listed("b", q="red", status="completed", supplier="bri", date_from=day) == ["O001"]


# --- paging ------------------------------------------------------------------------------------


def walk(user, direction, start, **params):
    """Follow ``direction`` cursors from the page ``start`` until there are none."""
    pages, page = [], start
    while page[direction] is not None:
        page = ok(user, "/api/orders/", cursor=page[direction], **params)
        pages.append(page)
    return pages


@pytest.fixture
def many():
    """23 orders of b: as buyer and as seller, some placed at the same moment."""
    made = []
    for n in range(1, 24):
        at = T0 - timedelta(hours=n // 3)  # three orders per moment
        made.append(order(n, at=at, **({"buyer": "x", "seller": "b"} if n % 4 == 0 else {})))
    order(99, buyer="x", seller="y")
    return sorted(made, key=lambda o: (o.ordered_at, o.order_id), reverse=True)


def test_next_cursors_walk_every_order_once_newest_first(many):
    first = ok("b", "/api/orders/", limit=5)
    assert first["prev"] is None and first["next"] is not None
    pages = [first, *walk("b", "next", first, limit=5)]
    assert [len(p["orders"]) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in ids(p)] == [o.order_id for o in many]
    assert pages[-1]["next"] is None
    assert all(p["prev"] is not None for p in pages[1:])


def test_prev_cursors_walk_back_to_the_first_page(many):
    first = ok("b", "/api/orders/", limit=5)
    forward = [first, *walk("b", "next", first, limit=5)]
    backward = walk("b", "prev", forward[-1], limit=5)
    assert [ids(p) for p in reversed(backward)] == [ids(p) for p in forward[:-1]]
    assert backward[-1]["prev"] is None and backward[-1]["next"] == forward[0]["next"]


def test_paging_keeps_its_filters_and_does_not_repeat_after_new_orders_arrive(many):
    first = ok("b", "/api/orders/", limit=4, role="buyer")
    order(0, at=T0 + timedelta(hours=1))  # a newer order arrives while the user pages
    pages = [first, *walk("b", "next", first, limit=4, role="buyer")]
    seen = [i for p in pages for i in ids(p)]
    assert seen == [o.order_id for o in many if o.buyer_id == "b"]
    back = ok("b", "/api/orders/", cursor=pages[1]["prev"], limit=4, role="buyer")
    assert ids(back) == ids(first) and back["prev"] is not None  # the new order is newer still
    newest = ok("b", "/api/orders/", cursor=back["prev"], limit=4, role="buyer")
    assert ids(newest) == ["O000"] and newest["prev"] is None and newest["next"] is not None


def test_default_page_is_twenty_and_limit_caps_it(many):
    assert len(ok("b", "/api/orders/")["orders"]) == 20
    assert len(ok("b", "/api/orders/", limit=50)["orders"]) == 23
    assert len(ok("b", "/api/orders/", limit=1)["orders"]) == 1


# --- counts --------------------------------------------------------------------------------------


def test_counts_per_status_unread_and_open_disputes():
    order(1)
    order(2)
    order(3, status="completed")
    goods = shipped(4)
    shipped(5, buyer="x", seller="b")
    order(6, buyer="x", seller="y")
    open_dispute(goods)  # an event b wrote: unread for s, not for b
    chat.message_send(user_id="s", order_id="O001", client_msg_id="m1", body="one")
    chat.message_send(user_id="s", order_id="O001", client_msg_id="m2", body="two")
    chat.message_send(user_id="x", order_id="O005", client_msg_id="m1", body="three")
    counts = ok("b", "/api/orders/counts/")
    assert counts == {
        "all": 5,
        "statuses": {
            "awaiting_payment": 2,
            "awaiting_shipment": 0,
            "awaiting_acceptance": 2,
            "completed": 1,
            "cancelled": 0,
        },
        "disputes": 1,
        "unread": 2,
        "unread_messages": 3,
    }
    as_buyer = ok("b", "/api/orders/counts/", role="buyer")
    assert as_buyer["all"] == 4 and as_buyer["unread"] == 1 and as_buyer["unread_messages"] == 2
    as_seller = ok("b", "/api/orders/counts/", role="seller")
    assert as_seller["all"] == 1 and as_seller["statuses"]["awaiting_acceptance"] == 1
    assert as_seller["unread_messages"] == 1 and as_seller["disputes"] == 0
    assert ok("s", "/api/orders/counts/")["disputes"] == 1


# --- detail ----------------------------------------------------------------------------------------


def test_detail_of_an_unpaid_order_with_offers_per_role():
    unpaid = order(1, amount=Decimal("25.00"), properties={"size": "XL"})
    first = offers.offer_make(user_id="s", order_id=unpaid.pk, price="24.00")
    offers.offer_withdraw(user_id="s", offer_id=str(first.pk))
    chat.message_send(user_id="b", order_id=unpaid.pk, client_msg_id="m1", body="Any better?")
    second = offers.offer_request(user_id="b", order_id=unpaid.pk, note="Please")
    offers.offer_make(user_id="s", order_id=unpaid.pk, price="21.00")
    detail = ok("b", f"/api/orders/{unpaid.pk}/")
    assert detail["order_id"] == "O001" and detail["properties"] == {"size": "XL"} and detail["amount"] == "25.00"
    assert detail["role"] == "buyer" and detail["last_seq"] == 5 and detail["unread"] == 1
    assert [o["offer_id"] for o in detail["offers"]] == [str(second.pk), str(first.pk)]
    assert [o["status"] for o in detail["offers"]] == ["open", "withdrawn"]
    timeline = detail["timeline"]
    assert [(e["seq"], e["kind"], e["change"]) for e in timeline] == [
        (1, "offer", "made"),
        (2, "offer", "withdrawn"),
        (4, "offer", "requested"),
        (5, "offer", "made"),
    ]
    assert "21.00 USD" in timeline[-1]["body"] and timeline[0]["created_at"].endswith("Z")
    assert detail["dispute"] is None and detail["feedback"] is None
    assert detail["allowed_actions"] == {
        "order": ["cancel"],
        "offer": {"offer_id": str(second.pk), "actions": ["accept", "decline"]},
        "dispute": {"dispute_id": None, "actions": []},
    }
    seller = ok("s", f"/api/orders/{unpaid.pk}/")
    assert seller["role"] == "seller" and seller["allowed_actions"] == {
        "order": [],
        "offer": {"offer_id": str(second.pk), "actions": ["withdraw"]},
        "dispute": {"dispute_id": None, "actions": []},
    }


def test_detail_with_no_live_offer_offers_to_request_or_make_one():
    unpaid = order(1)
    assert ok("b", f"/api/orders/{unpaid.pk}/")["allowed_actions"]["offer"] == {
        "offer_id": None,
        "actions": ["request"],
    }
    assert ok("s", f"/api/orders/{unpaid.pk}/")["allowed_actions"]["offer"] == {"offer_id": None, "actions": ["make"]}


def test_detail_with_an_open_dispute_per_role():
    goods = shipped(1)
    dispute = open_dispute(goods, amount="15.00", return_item=True)
    detail = ok("b", f"/api/orders/{goods.pk}/")
    assert detail["tracking_number"] == "LP00000001CN"
    assert detail["dispute"]["dispute_id"] == str(dispute.pk) and detail["dispute"]["refund_amount"] == "15.00"
    assert detail["dispute"]["return_item"] is True
    assert [e["kind"] for e in detail["timeline"]] == ["dispute"]
    assert detail["allowed_actions"] == {
        "order": [],  # confirming receipt would release the payment during the dispute
        "offer": {"offer_id": None, "actions": []},
        "dispute": {"dispute_id": str(dispute.pk), "actions": ["cancel", "escalate"]},
    }
    seller = ok("s", f"/api/orders/{goods.pk}/")["allowed_actions"]
    assert seller["dispute"] == {"dispute_id": str(dispute.pk), "actions": ["accept", "counter", "reject"]}
    assert seller["order"] == []


def test_detail_shows_the_last_dispute_when_none_is_open_and_actions_move_on():
    goods = shipped(1)
    first = open_dispute(goods)
    disputes.dispute_cancel(user_id="b", dispute_id=str(first.pk))
    detail = ok("b", f"/api/orders/{goods.pk}/")
    assert detail["dispute"]["dispute_id"] == str(first.pk) and detail["dispute"]["status"] == "cancelled"
    assert detail["allowed_actions"]["dispute"] == {"dispute_id": None, "actions": []}
    assert detail["allowed_actions"]["order"] == ["confirm_receipt", "open_dispute"]
    second = open_dispute(goods)
    assert ok("b", f"/api/orders/{goods.pk}/")["dispute"]["dispute_id"] == str(second.pk)


def test_detail_after_receipt_and_feedback():
    goods = shipped(1)
    orders.order_confirm_receipt(user_id="b", order_id=goods.pk)
    before = ok("b", f"/api/orders/{goods.pk}/")
    assert before["status"] == "completed" and before["allowed_actions"]["order"] == ["leave_feedback", "open_dispute"]
    orders.order_leave_feedback(user_id="b", order_id=goods.pk, rating=4, comment="Good")
    detail = ok("b", f"/api/orders/{goods.pk}/")
    assert detail["feedback"]["rating"] == 4 and detail["feedback"]["comment"] == "Good"
    assert detail["allowed_actions"]["order"] == []  # no second feedback, no dispute after feedback
    assert [e["change"] for e in detail["timeline"]] == ["receipt_confirmed", "feedback_left"]
    assert ok("s", f"/api/orders/{goods.pk}/")["allowed_actions"]["order"] == []


def test_detail_timeline_leaves_chat_messages_out():
    unpaid = order(1)
    chat.message_send(user_id="b", order_id=unpaid.pk, client_msg_id="m1", body="hello")
    orders.order_cancel(user_id="b", order_id=unpaid.pk)
    timeline = ok("s", f"/api/orders/{unpaid.pk}/")["timeline"]
    assert [(e["seq"], e["kind"], e["change"]) for e in timeline] == [(2, "order", "cancelled")]


def test_detail_of_someone_elses_order_is_not_found_like_an_unknown_one():
    theirs = order(1, buyer="x", seller="y")
    foreign = get("b", f"/api/orders/{theirs.pk}/")
    unknown = get("b", "/api/orders/NOPE/")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json() and foreign.json()["error"]["code"] == "not_found"


# --- disputes --------------------------------------------------------------------------------------


def test_disputes_list_has_the_users_disputes_newest_first_with_role_and_order():
    a, b_, sold = shipped(1), shipped(2), shipped(3, buyer="x", seller="b")
    theirs = shipped(4, buyer="x", seller="y")
    first = open_dispute(a)
    disputes.dispute_cancel(user_id="b", dispute_id=str(first.pk))
    second = open_dispute(b_)
    third = open_dispute(sold)
    open_dispute(theirs)
    body = ok("b", "/api/disputes/")
    assert ids(body, "disputes") == [str(third.pk), str(second.pk), str(first.pk)]
    assert [d["role"] for d in body["disputes"]] == ["seller", "buyer", "buyer"]
    assert body["disputes"][0]["order"]["order_id"] == "O003" and body["disputes"][0]["order"]["amount"] == "40.00"
    assert body["disputes"][0]["actions"] == ["accept", "counter", "reject"]
    assert body["disputes"][1]["actions"] == ["cancel", "escalate"] and body["disputes"][2]["actions"] == []
    assert ids(ok("b", "/api/disputes/", status="open"), "disputes") == [str(third.pk), str(second.pk)]
    assert ids(ok("b", "/api/disputes/", status="closed"), "disputes") == [str(first.pk)]
    assert ids(ok("b", "/api/disputes/", status="cancelled"), "disputes") == [str(first.pk)]
    assert ids(ok("b", "/api/disputes/", role="seller"), "disputes") == [str(third.pk)]


def test_disputes_list_pages_both_ways():
    made = []
    for n in range(1, 8):
        made.append(open_dispute(shipped(n)))
    expected = [str(d.pk) for d in sorted(made, key=lambda d: (d.opened_at, d.pk), reverse=True)]
    page = ok("b", "/api/disputes/", limit=3)
    seen = [ids(page, "disputes")]
    while page["next"]:
        page = ok("b", "/api/disputes/", limit=3, cursor=page["next"])
        seen.append(ids(page, "disputes"))
    assert [i for p in seen for i in p] == expected and [len(p) for p in seen] == [3, 3, 1]
    back = ok("b", "/api/disputes/", limit=3, cursor=page["prev"])
    assert ids(back, "disputes") == seen[1]


# --- refusals ------------------------------------------------------------------------------------------


def _token(payload):
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "51"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "shipped"}, "status"),
        ({"order_id": "O 1"}, "order_id"),
        ({"date_from": "2026-13-01"}, "date_from"),
        ({"date_to": "26/01/2026"}, "date_to"),
        ({"date_from": "2026-02-01", "date_to": "2026-01-31"}, "date_to"),
        ({"q": "x" * 201}, "q"),
        ({"supplier": "x" * 201}, "supplier"),
        ({"tracking": "x" * 65}, "tracking"),
        ({"role": "admin"}, "role"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": _token(["orders", 0, "O1", "sideways"])}, "cursor"),
        ({"cursor": _token(["disputes", 0, 5, "next"])}, "cursor"),  # a dispute list's cursor
    ],
)
def test_bad_order_search_parameters_are_400_naming_the_field(params, field):
    order(1)
    response = get("b", "/api/orders/", **params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request" and response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "pending"}, "status"),
        ({"limit": "100"}, "limit"),
        ({"cursor": _token(["orders", 0, "O1", "next"])}, "cursor"),
    ],
)
def test_bad_dispute_list_parameters_are_400_naming_the_field(params, field):
    response = get("b", "/api/disputes/", **params)
    assert response.status_code == 400 and response.json()["error"]["field"] == field


def test_counts_refuse_an_unknown_role():
    response = get("b", "/api/orders/counts/", role="owner")
    assert response.status_code == 400 and response.json()["error"]["field"] == "role"


@pytest.mark.parametrize("path", ["/api/orders/", "/api/orders/counts/", "/api/orders/O001/", "/api/disputes/"])
def test_every_endpoint_needs_a_signed_in_user(path):
    order(1)
    response = get(None, path)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


def test_a_cursor_from_an_unsigned_page_still_only_shows_the_callers_orders():
    order(1, buyer="x", seller="y")
    order(2)
    forged = _token(
        [
            "orders",
            int((T0 + timedelta(days=1) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)),
            "ZZZ",
            "next",
        ]
    )
    assert listed("b", cursor=forged) == ["O002"]


def test_writes_are_not_allowed():
    response = Client().post("/api/orders/", {}, HTTP_AUTHORIZATION=f"Bearer {token_for('b')}")
    assert response.status_code == 405


def test_ordered_at_is_compared_in_utc():
    # An order placed late on 1 Jan in UTC-5 is on 2 Jan in UTC.
    order(1, at=datetime(2026, 1, 1, 23, 30, tzinfo=timezone.get_fixed_timezone(-300)))
    assert listed("b", date_from="2026-01-02", date_to="2026-01-02") == ["O001"]
    assert listed("b", date_to="2026-01-01") == []


def test_openapi_paths_cover_every_route_and_every_reference_resolves():
    from chat_service.transport.http import order_urls
    from chat_service.transport.http.openapi_orders import PATHS, SCHEMAS

    routes = {"/" + str(p.pattern).replace("<str:order_id>", "{order_id}") for p in order_urls.urlpatterns}
    assert routes == set(PATHS)
    refs = set()

    def collect(node):
        if isinstance(node, dict):
            refs.update(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect([PATHS, SCHEMAS])
    assert {r.rsplit("/", 1)[1] for r in refs} <= set(SCHEMAS) | {"Error"}
