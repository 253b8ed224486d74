"""Orders, offers and disputes as the wire shows them (amounts as decimal strings, ISO
times). Pure: takes model instances, returns JSON-ready dicts."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from chat_service.protocol.frames import iso

if TYPE_CHECKING:
    from chat_service.commerce.models import Dispute, Offer, Order


def money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def offer_wire(offer: Offer) -> dict[str, Any]:
    return {
        "offer_id": str(offer.pk),
        "order_id": offer.order_id,
        "status": offer.status,
        "price": money(offer.price),
        "currency": offer.currency,
        "previous_amount": money(offer.previous_amount),
        "request_note": offer.request_note,
        "note": offer.note,
        "requested_at": iso(offer.requested_at),
        "made_at": iso(offer.made_at),
        "expires_at": iso(offer.expires_at),
        "closed_at": iso(offer.closed_at),
    }


def dispute_wire(dispute: Dispute) -> dict[str, Any]:
    return {
        "dispute_id": str(dispute.pk),
        "order_id": dispute.order_id,
        "status": dispute.status,
        "reason": dispute.reason,
        "details": dispute.details,
        "refund_amount": money(dispute.refund_amount),
        "counter_amount": money(dispute.counter_amount),
        "agreed_amount": money(dispute.agreed_amount),
        "currency": dispute.currency,
        "return_item": dispute.return_item,
        "return_tracking_number": dispute.return_tracking_number,
        "seller_note": dispute.seller_note,
        "decision_note": dispute.decision_note,
        "respond_by": iso(dispute.respond_by),
        "opened_at": iso(dispute.opened_at),
        "closed_at": iso(dispute.closed_at),
    }


def order_summary(order: Order) -> dict[str, Any]:
    """The order as a thread shows it (a join reply, a thread list)."""
    return {
        "order_id": order.order_id,
        "buyer_id": order.buyer_id,
        "seller_id": order.seller_id,
        "supplier_name": order.supplier_name,
        "item_title": order.item_title,
        "category": order.category,
        "properties": order.properties,
        "quantity": order.quantity,
        "amount": money(order.amount),
        "currency": order.currency,
        "status": order.status,
        "tracking_number": order.tracking_number,
        "ordered_at": iso(order.ordered_at),
        "version": order.version,
    }


def order_wire(order: Order) -> dict[str, Any]:
    """The order summary plus its after-sale facts."""
    return {
        **order_summary(order),
        "completed_at": iso(order.completed_at),
        "receipt_confirmed_at": iso(order.receipt_confirmed_at),
        "feedback": (
            {"rating": order.feedback_rating, "comment": order.feedback_comment, "left_at": iso(order.feedback_at)}
            if order.feedback_at is not None
            else None
        ),
    }
