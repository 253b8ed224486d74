"""What a notification says: its kind, a title and a short body a person can read.

Pure: plain values in, plain values out; no database, no clock. Used for the live
``notification`` frame (from ``event_append``'s hook) and for the digests and reminders
the worker sends, so a user reads the same words on a socket, a phone and in e-mail.

Kinds: ``message``; ``offer.requested|made|accepted|declined|withdrawn|expired``;
``order.paid|shipped|completed|cancelled|receipt_confirmed|feedback_left|updated``;
``dispute.opened|answered|counter_accepted|escalated|decided|cancelled|updated``; and the
reminders ``offer.expiring`` and ``dispute.response_due``.

Urgent kinds skip the digest delay (docs/notifications.md): everything
a party may have to act on or would want to know at once. Only chat messages and minor
order updates (tracking, price, details) wait to be batched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

EXCERPT_CHARS = 140
DIGEST_LINES = 5
NOT_URGENT = frozenset({"message", "order.updated"})

_OFFER_TITLES = {
    "requested": "Price offer requested for {item}",
    "made": "Offer: {price} {currency} for {item}",
    "accepted": "Offer accepted for {item}",
    "declined": "Offer declined for {item}",
    "withdrawn": "Offer withdrawn for {item}",
    "expired": "Offer expired for {item}",
}
_ORDER_TITLES = {
    "paid": "Paid: {item}",
    "shipped": "Shipped: {item}",
    "completed": "Delivered: {item}",
    "cancelled": "Cancelled: {item}",
    "receipt_confirmed": "Receipt confirmed: {item}",
    "feedback_left": "Feedback left for {item}",
}
_DISPUTE_KINDS = {
    "opened": "opened",
    "seller_accepted": "answered",
    "seller_rejected": "answered",
    "seller_countered": "answered",
    "counter_accepted": "counter_accepted",
    "escalated": "escalated",
    "decided": "decided",
    "cancelled": "cancelled",
}
_DISPUTE_TITLES = {
    "opened": "Dispute opened for {item}",
    "answered": "Dispute answered for {item}",
    "counter_accepted": "Refund agreed for {item}",
    "escalated": "Dispute escalated for {item}",
    "decided": "Dispute decided for {item}",
    "cancelled": "Dispute cancelled for {item}",
    "updated": "Dispute updated for {item}",
}


@dataclass(frozen=True, slots=True)
class OrderFacts:
    order_id: str
    item_title: str
    supplier_name: str


@dataclass(frozen=True, slots=True)
class Note:
    kind: str
    title: str
    body: str

    @property
    def urgent(self) -> bool:
        return is_urgent(self.kind)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def kind_for_event(*, event_kind: str, data: dict[str, Any]) -> str:
    """The notification kind of a thread event (what decides its urgency), without the
    order's facts: the event's row is queued with it before they are read."""
    change = str(data.get("change", ""))
    if event_kind == "message":
        return "message"
    if event_kind == "offer":
        return f"offer.{change}" if change in _OFFER_TITLES else "offer.updated"
    if event_kind == "order":
        return f"order.{change}" if change in _ORDER_TITLES else "order.updated"
    if event_kind == "dispute":
        return f"dispute.{_DISPUTE_KINDS.get(change, 'updated')}"
    return "order.updated"


def is_urgent(kind: str) -> bool:
    return kind not in NOT_URGENT


def for_event(*, event_kind: str, author_role: str, body: str, data: dict[str, Any], order: OrderFacts) -> Note:
    """The note for one thread event, as its recipient reads it."""
    item = excerpt(order.item_title, 60)
    change = str(data.get("change", ""))
    kind = kind_for_event(event_kind=event_kind, data=data)
    if event_kind == "message":
        sender = order.supplier_name if author_role == "seller" else "your buyer"
        return Note(kind, f"New message from {sender}", f"{item}: {excerpt(body)}")
    if event_kind == "offer":
        offer = data.get("offer") or {}
        title = _OFFER_TITLES.get(change, "Offer updated for {item}").format(
            item=item, price=offer.get("price") or "", currency=offer.get("currency") or ""
        )
        return Note(kind, title, excerpt(body))
    if event_kind == "order":
        title = _ORDER_TITLES[change] if change in _ORDER_TITLES else "Order updated: {item}"
        return Note(kind, title.format(item=item), excerpt(body))
    if event_kind == "dispute":
        return Note(kind, _DISPUTE_TITLES[kind.removeprefix("dispute.")].format(item=item), excerpt(body))
    return Note(kind, f"Order update: {item}", excerpt(body))


def offer_expiring(*, order: OrderFacts, price: str, currency: str, expires_at: datetime) -> Note:
    return Note(
        "offer.expiring",
        f"Offer for {excerpt(order.item_title, 60)} expires soon",
        f"{order.supplier_name} offered {price} {currency}. Accept it before {_when(expires_at)} or it expires.",
    )


def dispute_response_due(*, order: OrderFacts, refund_amount: str, currency: str, respond_by: datetime) -> Note:
    return Note(
        "dispute.response_due",
        f"Answer the dispute on {excerpt(order.item_title, 60)}",
        f"The buyer asks for a refund of {refund_amount} {currency}. Answer by {_when(respond_by)}, "
        "or the marketplace will decide.",
    )


def digest(notes: list[Note]) -> Note:
    """One note for several of one thread (oldest first): the newest important one leads."""
    if len(notes) == 1:
        return notes[0]
    if all(n.kind == "message" for n in notes):
        sender = notes[-1].title.removeprefix("New message from ")
        title = f"{len(notes)} new messages from {sender}"
        kind = "message"
    else:
        lead = [n for n in notes if n.urgent][-1]
        title, kind = f"{lead.title} (+{len(notes) - 1} more)", lead.kind
    lines = [n.body for n in notes[-DIGEST_LINES:]]
    if len(notes) > DIGEST_LINES:
        lines.insert(0, f"…and {len(notes) - DIGEST_LINES} earlier")
    return Note(kind, title, "\n".join(lines))


def _when(moment: datetime) -> str:
    return moment.strftime("%d %b %Y, %H:%M UTC")
