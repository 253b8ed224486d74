"""The order, offer and dispute machines, pure: every action × state × actor.

The expected tables below are the specification, written out by hand (not derived from
the policy modules), so a change to a rule shows up here as a failing combination.
"""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chat_service.commerce.policies import Actor
from chat_service.commerce.policies import dispute as d
from chat_service.commerce.policies import offer as o
from chat_service.commerce.policies import order as od
from chat_service.protocol.errors import BadRequest, Forbidden, InvalidState

B, S, SYS, W = Actor.BUYER, Actor.SELLER, Actor.ORDER_SYSTEM, Actor.WORKER
ACTORS = list(Actor)

OFFER_SPEC = {
    ("request", o.NONE, B): o.REQUESTED,
    ("make", o.NONE, S): o.OPEN,
    ("make", o.REQUESTED, S): o.OPEN,
    ("accept", o.OPEN, B): o.ACCEPTED,
    ("decline", o.OPEN, B): o.DECLINED,
    ("withdraw", o.OPEN, S): o.WITHDRAWN,
    ("expire", o.REQUESTED, W): o.EXPIRED,
    ("expire", o.OPEN, W): o.EXPIRED,
}
OFFER_STATES = [o.NONE, o.REQUESTED, o.OPEN, o.ACCEPTED, o.DECLINED, o.WITHDRAWN, o.EXPIRED]

DISPUTE_SPEC = {
    ("accept", d.OPEN, S): d.SETTLED,
    ("counter", d.OPEN, S): d.COUNTERED,
    ("reject", d.OPEN, S): d.REJECTED,
    ("accept_counter", d.COUNTERED, B): d.SETTLED,
    **{("escalate", s, B): d.ESCALATED for s in (d.OPEN, d.COUNTERED, d.REJECTED)},
    ("escalate", d.OPEN, W): d.ESCALATED,
    **{("cancel", s, B): d.CANCELLED for s in (d.OPEN, d.COUNTERED, d.REJECTED, d.ESCALATED)},
    **{("decide", s, SYS): d.SETTLED for s in (d.OPEN, d.COUNTERED, d.REJECTED, d.ESCALATED)},
    ("add_return_tracking", d.AWAITING_RETURN, B): d.RETURN_SHIPPED,
    ("confirm_return", d.RETURN_SHIPPED, S): d.RESOLVED,
}
DISPUTE_STATES = [
    d.OPEN,
    d.COUNTERED,
    d.REJECTED,
    d.ESCALATED,
    d.AWAITING_RETURN,
    d.RETURN_SHIPPED,
    d.RESOLVED,
    d.CANCELLED,
]

ORDER_SPEC = {
    ("cancel", od.AWAITING_PAYMENT, B): od.CANCELLED,
    ("confirm_receipt", od.AWAITING_ACCEPTANCE, B): od.COMPLETED,
}


def actions_of(spec):
    return sorted({action for action, _, _ in spec})


def expected_refusal(spec, action, actor):
    return InvalidState if any(a == action and who == actor for a, _, who in spec) else Forbidden


@pytest.mark.parametrize("action, state, actor", list(itertools.product(actions_of(OFFER_SPEC), OFFER_STATES, ACTORS)))
def test_offer_machine(action, state, actor):
    def call():
        return o.offer_action(action=action, offer_status=state, order_status=od.AWAITING_PAYMENT, actor=actor)

    if (action, state, actor) in OFFER_SPEC:
        assert call() == OFFER_SPEC[(action, state, actor)]
    else:
        with pytest.raises(expected_refusal(OFFER_SPEC, action, actor)):
            call()


@pytest.mark.parametrize(
    "action, state, actor", list(itertools.product(actions_of(DISPUTE_SPEC), DISPUTE_STATES, ACTORS))
)
def test_dispute_machine(action, state, actor):
    def call():
        return d.dispute_action(action=action, status=state, actor=actor, return_item=False)

    if (action, state, actor) in DISPUTE_SPEC:
        expected = DISPUTE_SPEC[(action, state, actor)]
        assert call() == (d.RESOLVED if expected == d.SETTLED else expected)
    else:
        with pytest.raises(expected_refusal(DISPUTE_SPEC, action, actor)):
            call()


@pytest.mark.parametrize("action, state, actor", list(itertools.product(actions_of(ORDER_SPEC), od.STATUSES, ACTORS)))
def test_order_machine(action, state, actor):
    def call():
        return od.order_action(action=action, status=state, actor=actor)

    if (action, state, actor) in ORDER_SPEC:
        assert call() == ORDER_SPEC[(action, state, actor)]
    else:
        with pytest.raises(expected_refusal(ORDER_SPEC, action, actor)):
            call()


@pytest.mark.parametrize("status", [s for s in od.STATUSES if s != od.AWAITING_PAYMENT])
@pytest.mark.parametrize("action, state, actor", [("request", o.NONE, B), ("make", o.NONE, S), ("accept", o.OPEN, B)])
def test_offers_only_while_the_order_awaits_payment(status, action, state, actor):
    with pytest.raises(InvalidState, match="awaits payment"):
        o.offer_action(action=action, offer_status=state, order_status=status, actor=actor)


def test_the_worker_expires_offers_whatever_the_order_status():
    assert o.offer_action(action="expire", offer_status=o.OPEN, order_status=od.CANCELLED, actor=W) == o.EXPIRED


def test_one_live_offer_per_order():
    with pytest.raises(InvalidState):
        o.live_offer_conflict(action="request", live_status=o.REQUESTED, actor=B)
    with pytest.raises(InvalidState, match="withdraw it first"):
        o.live_offer_conflict(action="make", live_status=o.OPEN, actor=S)
    o.live_offer_conflict(action="make", live_status=o.REQUESTED, actor=S)  # answering the request
    o.live_offer_conflict(action="request", live_status=None, actor=B)
    with pytest.raises(Forbidden):  # who may act is decided before the state
        o.live_offer_conflict(action="request", live_status=o.OPEN, actor=S)


@pytest.mark.parametrize("price", ["0", "-1.00", "1.234", "abc", "NaN", "Infinity", 12, None, "1e3x"])
def test_bad_prices_are_refused(price):
    with pytest.raises(BadRequest):
        o.offer_price(price=price, currency=None, order_currency="USD")


def test_prices_are_quantized_and_in_the_orders_currency():
    assert o.offer_price(price="12.5", currency="USD", order_currency="USD") == Decimal("12.50")
    with pytest.raises(BadRequest, match="USD"):
        o.offer_price(price="12.50", currency="EUR", order_currency="USD")


def test_offer_expiry_defaults_to_48_hours_and_is_bounded():
    assert o.offer_expiry(None) == 48 * 3600
    for bad in (0, 59, 31 * 24 * 3600, "60", True, 1.5):
        with pytest.raises(BadRequest):
            o.offer_expiry(bad)


def test_a_returned_item_must_come_back_before_a_settlement_resolves():
    assert d.dispute_action(action="accept", status=d.OPEN, actor=S, return_item=True) == d.AWAITING_RETURN
    assert d.dispute_action(action="accept_counter", status=d.COUNTERED, actor=B, return_item=True) == d.AWAITING_RETURN
    # a platform decision refunding nothing needs no return
    assert (
        d.dispute_action(action="decide", status=d.ESCALATED, actor=SYS, return_item=True, refund=Decimal("0"))
        == d.RESOLVED
    )


@pytest.mark.parametrize(
    "value, ok",
    [
        ("10.00", True),
        ("25.00", True),
        ("25.01", False),
        ("0", False),
        ("-3", False),
        ("1.001", False),
        (5, False),
        ("x", False),
    ],
)
def test_refunds_are_above_zero_and_at_most_what_was_paid(value, ok):
    if ok:
        assert d.refund_amount(value=value, paid=Decimal("25.00")) == Decimal(value)
    else:
        with pytest.raises(BadRequest):
            d.refund_amount(value=value, paid=Decimal("25.00"))


def test_a_refund_refusal_is_a_sentence_with_the_amount_paid():
    with pytest.raises(BadRequest) as refused:
        d.refund_amount(value="60.00", paid=Decimal("54.99"), currency="USD")
    assert refused.value.message == "The refund can be at most USD 54.99, what was paid."
    assert refused.value.details == {"field": "refund_amount"}


def test_every_reason_of_the_contract_is_accepted_and_nothing_else():
    for reason in ("not_as_described", "wrong_colour", "wrong_size", "works_poorly", "low_quality", "not_received"):
        assert d.dispute_reason(reason) == reason
    with pytest.raises(BadRequest):
        d.dispute_reason("changed_my_mind")


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=15)


def after(status, *, completed_days_ago=None, feedback=False, dispute=False):
    completed = NOW - timedelta(days=completed_days_ago) if completed_days_ago is not None else None
    return od.AfterSale(status=status, completed_at=completed, feedback_left=feedback, open_dispute=dispute)


def test_buyer_can_open_a_dispute_while_goods_await_acceptance_or_within_protection():
    od.dispute_open_check(actor=B, state=after(od.AWAITING_ACCEPTANCE), now=NOW, protection=WINDOW)
    od.dispute_open_check(actor=B, state=after(od.COMPLETED, completed_days_ago=15), now=NOW, protection=WINDOW)


def test_buyer_cannot_open_a_dispute_after_feedback():
    with pytest.raises(InvalidState, match="Feedback has been left"):
        od.dispute_open_check(
            actor=B, state=after(od.COMPLETED, completed_days_ago=1, feedback=True), now=NOW, protection=WINDOW
        )


@pytest.mark.parametrize(
    "state, message",
    [
        (after(od.COMPLETED, completed_days_ago=16), "protection"),
        (after(od.AWAITING_PAYMENT), "awaiting payment"),
        (after(od.AWAITING_SHIPMENT), "awaiting shipment"),
        (after(od.AWAITING_ACCEPTANCE, dispute=True), "already has an open dispute"),
        (
            od.AfterSale(
                status=od.AWAITING_ACCEPTANCE,
                completed_at=None,
                feedback_left=False,
                open_dispute=False,
                dispute_resolved=True,
            ),
            "has been resolved",
        ),
    ],
)
def test_disputes_are_refused_outside_their_window_with_a_reason(state, message):
    with pytest.raises(InvalidState, match=message):
        od.dispute_open_check(actor=B, state=state, now=NOW, protection=WINDOW)


def test_only_the_buyer_opens_disputes_and_leaves_feedback():
    with pytest.raises(Forbidden):
        od.dispute_open_check(actor=S, state=after(od.AWAITING_ACCEPTANCE), now=NOW, protection=WINDOW)
    with pytest.raises(Forbidden):
        od.feedback_check(actor=S, state=after(od.COMPLETED), rating=5, comment=None)


def test_feedback_once_after_receipt_with_a_valid_rating():
    od.feedback_check(actor=B, state=after(od.COMPLETED, completed_days_ago=0), rating=4, comment="Great")
    with pytest.raises(InvalidState, match="already"):
        od.feedback_check(actor=B, state=after(od.COMPLETED, feedback=True), rating=4, comment=None)
    with pytest.raises(InvalidState, match="confirmed"):
        od.feedback_check(actor=B, state=after(od.AWAITING_ACCEPTANCE), rating=4, comment=None)
    for rating in (0, 6, "5", True, 4.5):
        with pytest.raises(BadRequest):
            od.feedback_check(actor=B, state=after(od.COMPLETED), rating=rating, comment=None)
    with pytest.raises(BadRequest):
        od.feedback_check(actor=B, state=after(od.COMPLETED), rating=5, comment="x" * 1001)


def test_allowed_actions_follow_the_rules():
    assert od.order_allowed_actions(actor=B, state=after(od.AWAITING_PAYMENT), now=NOW, protection=WINDOW) == ["cancel"]
    assert od.order_allowed_actions(actor=B, state=after(od.AWAITING_ACCEPTANCE), now=NOW, protection=WINDOW) == [
        "confirm_receipt",
        "open_dispute",
    ]
    assert od.order_allowed_actions(
        actor=B, state=after(od.COMPLETED, completed_days_ago=1), now=NOW, protection=WINDOW
    ) == ["leave_feedback", "open_dispute"]
    assert (
        od.order_allowed_actions(
            actor=B, state=after(od.COMPLETED, completed_days_ago=1, feedback=True), now=NOW, protection=WINDOW
        )
        == []
    )
    assert od.order_allowed_actions(actor=S, state=after(od.AWAITING_ACCEPTANCE), now=NOW, protection=WINDOW) == []
    assert o.offer_allowed_actions(offer_status=o.OPEN, order_status=od.AWAITING_PAYMENT, actor=B) == [
        "accept",
        "decline",
    ]
    assert d.dispute_allowed_actions(status=d.OPEN, actor=S) == ["accept", "counter", "reject"]


@pytest.mark.parametrize(
    "category, title, expected",
    [
        ("electronics", "Bath towels", True),  # the order system's category decides
        ("Phones", "Case", True),
        ("home", "Bluetooth speaker", False),
        ("", "Wireless Earbuds with Noise Cancelling", True),  # no category: the title
        ("", "USB-C charger", True),
        ("", "Bamboo Bath Towel Set", False),
        ("", "Watchful owl mug", False),  # whole words only
    ],
)
def test_the_try_it_first_tip_is_for_electronics_by_category_else_by_title(category, title, expected):
    assert od.is_electronics(category=category, item_title=title) is expected
