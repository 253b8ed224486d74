"""The price-offer machine: the buyer asks for a better price, the seller offers one.

Only while the order awaits payment, and at most one live offer (requested or open) per
order. A request becomes the offer when the seller answers it. The worker expires live
offers at their deadline (default 48 h).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from chat_service.commerce.policies import Actor, allowed, decide, require_actor, rule
from chat_service.commerce.policies.order import AWAITING_PAYMENT, STATUS_LABELS
from chat_service.protocol.errors import BadRequest, InvalidState

NONE = "none"  # no live offer yet
REQUESTED = "requested"
OPEN = "open"
ACCEPTED = "accepted"
DECLINED = "declined"
WITHDRAWN = "withdrawn"
EXPIRED = "expired"
LIVE = frozenset({REQUESTED, OPEN})

RULES = (
    rule("request", [NONE], REQUESTED, Actor.BUYER),
    rule("make", [NONE, REQUESTED], OPEN, Actor.SELLER),
    rule("accept", [OPEN], ACCEPTED, Actor.BUYER),
    rule("decline", [OPEN], DECLINED, Actor.BUYER),
    rule("withdraw", [OPEN], WITHDRAWN, Actor.SELLER),
    rule("expire", [REQUESTED, OPEN], EXPIRED, Actor.WORKER),
)

DEFAULT_EXPIRY_S = 48 * 3600
MIN_EXPIRY_S = 60
MAX_EXPIRY_S = 30 * 24 * 3600
NOTE_MAX_CHARS = 500
MAX_PRICE = Decimal("9999999999.99")


def offer_action(*, action: str, offer_status: str, order_status: str, actor: Actor) -> str:
    """The offer status ``action`` leads to, or a refusal. ``offer_status`` is NONE when
    the order has no live offer (request/make start from there)."""
    target = decide(
        RULES,
        action=action,
        state=offer_status,
        actor=actor,
        noun="offer",
        state_label="not open" if offer_status == NONE else None,
    )
    if action != "expire" and order_status != AWAITING_PAYMENT:
        raise InvalidState(
            f"Offers are only possible while the order awaits payment; this order is "
            f"{STATUS_LABELS.get(order_status, order_status)}."
        )
    return target


def live_offer_conflict(*, action: str, live_status: str | None, actor: Actor) -> None:
    """One live offer per order: refuse a request/make that would add a second one
    (after checking that ``actor`` may take the action at all)."""
    require_actor(RULES, action=action, actor=actor, noun="offer")
    if live_status is None:
        return
    if action == "request" and live_status in LIVE:
        raise InvalidState("There is already an open offer or request for this order.")
    if action == "make" and live_status == OPEN:
        raise InvalidState("There is already an open offer for this order; withdraw it first.")


def offer_price(*, price: object, currency: object, order_currency: str) -> Decimal:
    """Validate an offered price: a decimal string above 0 with at most two decimals,
    in the order's currency."""
    if not isinstance(price, str):
        raise BadRequest('The price must be an amount such as "12.50".', field="price")
    try:
        value = Decimal(price)
    except InvalidOperation:
        raise BadRequest('The price must be an amount such as "12.50".', field="price") from None
    if not value.is_finite() or value <= 0 or value > MAX_PRICE:
        raise BadRequest("The price must be more than 0.", field="price")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise BadRequest("The price can have at most two decimals.", field="price")
    if currency is not None and currency != order_currency:
        raise BadRequest(f"The offer must be in the order's currency, {order_currency}.", field="currency")
    return value.quantize(Decimal("0.01"))


def offer_expiry(expires_in_s: object) -> int:
    if expires_in_s is None:
        return DEFAULT_EXPIRY_S
    if (
        isinstance(expires_in_s, bool)
        or not isinstance(expires_in_s, int)
        or not (MIN_EXPIRY_S <= expires_in_s <= MAX_EXPIRY_S)
    ):
        raise BadRequest(
            f"expires_in_s must be a whole number from {MIN_EXPIRY_S} to {MAX_EXPIRY_S}.", field="expires_in_s"
        )
    return expires_in_s


def offer_allowed_actions(*, offer_status: str, order_status: str, actor: Actor) -> list[str]:
    if order_status != AWAITING_PAYMENT:
        return []
    return allowed(RULES, state=offer_status, actor=actor)
