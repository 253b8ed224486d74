"""The order's own rules: what buyers may do to an order, and when feedback and disputes
are possible.

Order status itself is owned by the marketplace's order system; webhooks set it (by
version, see orders_bridge.webhook). The actions here are the ones users take in the chat
and that the bridge sends out: cancel (awaiting payment) and confirm receipt (goods
awaiting acceptance → completed). Feedback is left once, after receipt; once feedback is
left no dispute can be opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from chat_service.commerce.policies import Actor, allowed, decide, rule
from chat_service.protocol.errors import BadRequest, Forbidden, InvalidState

AWAITING_PAYMENT = "awaiting_payment"
AWAITING_SHIPMENT = "awaiting_shipment"
AWAITING_ACCEPTANCE = "awaiting_acceptance"
COMPLETED = "completed"
CANCELLED = "cancelled"
# The one list of order states: each with the name lists and filters show (the model's
# choices, the admin, the Manage Orders tabs) and the words a sentence uses for it
# ("This order is awaiting acceptance of the goods, so …").
STATES = {
    AWAITING_PAYMENT: ("Awaiting payment", "awaiting payment"),
    AWAITING_SHIPMENT: ("Awaiting shipment", "awaiting shipment"),
    AWAITING_ACCEPTANCE: ("Goods awaiting acceptance", "awaiting acceptance of the goods"),
    COMPLETED: ("Completed", "completed"),
    CANCELLED: ("Cancelled", "cancelled"),
}
STATUSES = tuple(STATES)
STATUS_NAMES = {status: name for status, (name, _) in STATES.items()}
STATUS_LABELS = {status: words for status, (_, words) in STATES.items()}

RULES = (
    rule("cancel", [AWAITING_PAYMENT], CANCELLED, Actor.BUYER),
    rule("confirm_receipt", [AWAITING_ACCEPTANCE], COMPLETED, Actor.BUYER),
)

FEEDBACK_MAX_CHARS = 1000

# Goods that should be used for a few days before feedback is left (issue 14): the order
# system's categories for them, and, when it sends no category, words of the item title.
ELECTRONICS_CATEGORIES = frozenset(
    {
        "electronics",
        "phones",
        "mobile_phones",
        "tablets",
        "computers",
        "laptops",
        "headphones",
        "audio",
        "cameras",
        "wearables",
        "smart_home",
        "consumer_electronics",
        "chargers",
        "accessories_electronics",
    }
)
_ELECTRONICS_WORDS = re.compile(
    r"\b(phone|smartphone|tablet|laptop|headphones?|earbuds?|earphones?|speakers?|charger|power bank|"
    r"keyboard|mouse|camera|smartwatch|watch|console|monitor|router|usb|bluetooth|wireless)\b",
    re.IGNORECASE,
)


def is_electronics(*, category: str, item_title: str) -> bool:
    """Whether to advise using the goods for a few days before leaving feedback: by the
    order system's category when it sends one, else by words of the item title."""
    if category:
        return category.strip().lower() in ELECTRONICS_CATEGORIES
    return bool(_ELECTRONICS_WORDS.search(item_title))


def order_action(*, action: str, status: str, actor: Actor) -> str:
    """The status a buyer action leads to, or a refusal."""
    return decide(RULES, action=action, state=status, actor=actor, noun="order", state_label=STATUS_LABELS.get(status))


@dataclass(frozen=True, slots=True)
class AfterSale:
    """What the dispute and feedback rules need to know about an order."""

    status: str
    completed_at: datetime | None
    feedback_left: bool
    open_dispute: bool
    dispute_resolved: bool = False  # a dispute of this order was settled or decided


def feedback_check(*, actor: Actor, state: AfterSale, rating: object, comment: object) -> None:
    """Refuse feedback unless the buyer confirmed receipt, has not left it, and no dispute is open."""
    if actor != Actor.BUYER:
        raise Forbidden("Only the buyer can leave feedback.")
    if state.feedback_left:
        raise InvalidState("Feedback has already been left for this order.")
    if state.status != COMPLETED:
        raise InvalidState("Feedback can be left once you have confirmed that the goods arrived.")
    if state.open_dispute:
        raise InvalidState("Feedback can be left once the open dispute is closed.")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise BadRequest("Pick a rating from 1 to 5 stars.", field="rating")
    if comment is not None and (not isinstance(comment, str) or len(comment) > FEEDBACK_MAX_CHARS or "\x00" in comment):
        raise BadRequest(f"The comment can be at most {FEEDBACK_MAX_CHARS:,} characters.", field="comment")


def receipt_check(*, actor: Actor, state: AfterSale) -> str:
    """The status confirming receipt leads to, or a refusal. Confirming receipt releases the
    payment to the seller, so it is not possible while a dispute is open, nor after a
    dispute was resolved (the settlement took its place)."""
    target = order_action(action="confirm_receipt", status=state.status, actor=actor)
    if state.open_dispute:
        raise InvalidState(
            "Confirming receipt releases the payment to the seller, so it cannot be done while a dispute "
            "is open. Cancel the dispute first if the goods are fine."
        )
    if state.dispute_resolved:
        raise InvalidState("This order's dispute has been resolved, so its receipt can no longer be confirmed.")
    return target


def dispute_open_check(*, actor: Actor, state: AfterSale, now: datetime, protection: timedelta) -> None:
    """Refuse a new dispute unless the buyer may open one now (see module docstring)."""
    if actor != Actor.BUYER:
        raise Forbidden("Only the buyer can open a dispute.")
    if state.feedback_left:
        raise InvalidState("Feedback has been left for this order, so a dispute can no longer be opened.")
    if state.open_dispute:
        raise InvalidState("This order already has an open dispute.")
    if state.dispute_resolved:
        # A withdrawn (cancelled) dispute may be opened again; a settled one is final.
        raise InvalidState("This order's dispute has been resolved, so another one cannot be opened.")
    if state.status == AWAITING_ACCEPTANCE:
        return
    if state.status == COMPLETED:
        if state.completed_at is not None and now - state.completed_at <= protection:
            return
        raise InvalidState(
            f"The {protection.days}-day buyer protection of this order has ended, so a dispute can no longer be opened."
        )
    status = STATUS_LABELS.get(state.status, state.status)
    raise InvalidState(f"This order is {status}: a dispute can be opened once the goods are shipped.")


def order_allowed_actions(*, actor: Actor, state: AfterSale, now: datetime, protection: timedelta) -> list[str]:
    """Every order-level action ``actor`` may take now (for order detail and the widget)."""
    actions = [a for a in allowed(RULES, state=state.status, actor=actor) if a != "confirm_receipt"]
    for name, check in (
        ("confirm_receipt", lambda: receipt_check(actor=actor, state=state)),
        ("open_dispute", lambda: dispute_open_check(actor=actor, state=state, now=now, protection=protection)),
        ("leave_feedback", lambda: feedback_check(actor=actor, state=state, rating=5, comment=None)),
    ):
        try:
            check()
        except (Forbidden, InvalidState):
            continue
        actions.append(name)
    return sorted(actions)
