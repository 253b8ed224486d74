"""The dispute machine: the buyer asks for a refund, the seller answers, the platform decides.

    open ──accept──► settled          settled = awaiting_return (item goes back first)
     │ ├─counter──► countered ──accept_counter──► settled             or resolved (refund)
     │ └─reject───► rejected
     └─(open|countered|rejected) ──escalate──► escalated ──decide──► settled
    awaiting_return ──add_return_tracking──► return_shipped ──confirm_return──► resolved
    any unsettled state ──cancel (buyer)──► cancelled

The seller must answer an open dispute within a window (default 5 days); after it the
worker escalates. One open dispute per order; opening is governed by the order policy.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from chat_service.commerce.policies import Actor, allowed, decide, rule
from chat_service.protocol.errors import BadRequest

OPEN = "open"
COUNTERED = "countered"
REJECTED = "rejected"
ESCALATED = "escalated"
AWAITING_RETURN = "awaiting_return"
RETURN_SHIPPED = "return_shipped"
RESOLVED = "resolved"
CANCELLED = "cancelled"
SETTLED = "settled"  # placeholder target: awaiting_return or resolved, see dispute_action
CLOSED = frozenset({RESOLVED, CANCELLED})

REASONS = ("not_as_described", "wrong_colour", "wrong_size", "works_poorly", "low_quality", "not_received")
REASON_LABELS = {
    "not_as_described": "Not as described",
    "wrong_colour": "Wrong colour",
    "wrong_size": "Wrong size",
    "works_poorly": "Works poorly",
    "low_quality": "Low quality",
    "not_received": "Not received",
}
DETAILS_MAX_CHARS = 2000
TRACKING_MAX_CHARS = 64

_UNSETTLED = [OPEN, COUNTERED, REJECTED, ESCALATED]
RULES = (
    rule("accept", [OPEN], SETTLED, Actor.SELLER),
    rule("counter", [OPEN], COUNTERED, Actor.SELLER),
    rule("reject", [OPEN], REJECTED, Actor.SELLER),
    rule("accept_counter", [COUNTERED], SETTLED, Actor.BUYER),
    rule("escalate", [OPEN, COUNTERED, REJECTED], ESCALATED, Actor.BUYER),
    rule("escalate", [OPEN], ESCALATED, Actor.WORKER),
    rule("cancel", _UNSETTLED, CANCELLED, Actor.BUYER),
    rule("decide", _UNSETTLED, SETTLED, Actor.ORDER_SYSTEM),
    rule("add_return_tracking", [AWAITING_RETURN], RETURN_SHIPPED, Actor.BUYER),
    rule("confirm_return", [RETURN_SHIPPED], RESOLVED, Actor.SELLER),
)


def dispute_action(*, action: str, status: str, actor: Actor, return_item: bool, refund: Decimal | None = None) -> str:
    """The status ``action`` leads to. A settlement waits for the item's return when the
    buyer returns it and money is refunded; otherwise it resolves at once."""
    target = decide(RULES, action=action, state=status, actor=actor, noun="dispute")
    if target == SETTLED:
        return AWAITING_RETURN if return_item and (refund is None or refund > 0) else RESOLVED
    return target


def refund_amount(
    *, value: object, paid: Decimal, currency: str = "", field: str = "refund_amount", allow_zero: bool = False
) -> Decimal:
    """A refund: a decimal string above 0 (or 0 for a platform decision) and at most what
    was paid. The refusals are sentences a buyer reads; ``field`` names the field."""
    if not isinstance(value, str):
        raise BadRequest('The refund must be an amount such as "12.50".', field=field)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise BadRequest('The refund must be an amount such as "12.50".', field=field) from None
    if not amount.is_finite() or amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise BadRequest("The refund can have at most two decimals.", field=field)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise BadRequest("The refund must be more than 0.", field=field)
    if amount > paid:
        raise BadRequest(
            f"The refund can be at most {f'{currency} ' if currency else ''}{paid:.2f}, what was paid.", field=field
        )
    return amount.quantize(Decimal("0.01"))


def dispute_reason(value: object) -> str:
    if value not in REASONS:
        raise BadRequest(f"Pick a reason: {', '.join(REASON_LABELS.values())}.", field="reason")
    return str(value)


_TEXT_NOUNS = {"details": "The details", "note": "The note", "tracking_number": "The tracking number"}


def dispute_text(value: object, *, field: str, max_chars: int, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > max_chars or "\x00" in value or (required and not value.strip()):
        what = _TEXT_NOUNS.get(field, field)
        raise BadRequest(f"{what} must be text of at most {max_chars:,} characters.", field=field)
    return value


def dispute_allowed_actions(*, status: str, actor: Actor) -> list[str]:
    return allowed(RULES, state=status, actor=actor)
