"""Writes to orders: creation (from the order system), and the buyer's cancel, receipt
and feedback. Each service is one transaction that also records a thread event and, for
actions the order system must know, an outbox row.

Invariant: an order never exists without its thread. ``order_create`` writes both in the
same transaction, so a reader that finds the order also finds the thread it chats in.

``order_create`` does not validate: the order system is the source of truth, and its
payloads are checked (signature, version, fields) by the adapter that calls it. The buyer's
actions authorize the caller and ask chat_service.commerce.policies.order.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat_service.commerce.models import Offer, Order
from chat_service.commerce.outbox import outbox_enqueue
from chat_service.commerce.policies import offer as offer_policy
from chat_service.commerce.policies import order as order_policy
from chat_service.commerce.services.access import after_sale, order_locked
from chat_service.protocol.commerce import order_wire
from chat_service.threads.models import EventKind, Role, Thread
from chat_service.threads.services import event_append, thread_open


def order_create(
    *,
    order_id: str,
    buyer_id: str,
    seller_id: str,
    supplier_name: str,
    item_title: str,
    properties: dict[str, Any],
    category: str = "",
    quantity: int,
    amount: Decimal,
    currency: str,
    status: str,
    tracking_number: str,
    ordered_at: datetime,
    version: int = 1,
) -> Order:
    """Create an order and its thread in one transaction. Does not validate.

    Raises IntegrityError when ``order_id`` exists; deciding between "new", "newer
    version" and "stale" is the caller's job (the bridge compares ``version``).
    This is the seam the webhook bridge extends with its upsert.
    """
    with transaction.atomic():
        order = Order.objects.create(
            order_id=order_id,
            buyer_id=buyer_id,
            seller_id=seller_id,
            supplier_name=supplier_name,
            item_title=item_title,
            category=category,
            properties=properties,
            quantity=quantity,
            amount=amount,
            currency=currency,
            status=status,
            tracking_number=tracking_number,
            ordered_at=ordered_at,
            version=version,
        )
        thread_open(order=order)
    return order


def order_event(
    *, thread: Thread, order: Order, change: str, body: str, author_id: str | None, author_role: Role
) -> None:
    """Record an order change in its thread (kind "order", data = the new order state)."""
    event_append(
        thread=thread,
        kind=EventKind.ORDER,
        author_id=author_id,
        author_role=author_role,
        body=body,
        data={"change": change, "order": order_wire(order)},
    )


def _close_live_offers(*, order: Order, thread: Thread, now: datetime) -> None:
    """Offers exist only while an order awaits payment; when it moves on they expire."""
    from chat_service.commerce.services.offers import offer_close

    for offer in Offer.objects.select_for_update().filter(order=order, status__in=offer_policy.LIVE):
        offer_close(
            offer=offer,
            thread=thread,
            now=now,
            action="expire",
            body="The offer expired because the order is no longer awaiting payment.",
        )


def order_cancel(*, user_id: str, order_id: str) -> Order:
    """The buyer cancels an order awaiting payment. Authorizes and validates."""
    with transaction.atomic():
        locked = order_locked(order_id=order_id, user_id=user_id)
        order, now = locked.order, timezone.now()
        order.status = order_policy.order_action(action="cancel", status=order.status, actor=locked.actor)
        order.save(update_fields=["status", "updated_at"])
        _close_live_offers(order=order, thread=locked.thread, now=now)
        order_event(
            thread=locked.thread,
            order=order,
            change="cancelled",
            author_id=user_id,
            author_role=locked.role,
            body="The buyer cancelled the order.",
        )
        outbox_enqueue(action="order.cancelled", order_id=order.pk, payload={"by": user_id})
    return order


def order_confirm_receipt(*, user_id: str, order_id: str) -> Order:
    """The buyer confirms the goods arrived: awaiting acceptance → completed."""
    with transaction.atomic():
        locked = order_locked(order_id=order_id, user_id=user_id)
        order, now = locked.order, timezone.now()
        order.status = order_policy.receipt_check(actor=locked.actor, state=after_sale(order))
        order.completed_at = order.receipt_confirmed_at = now
        order.save(update_fields=["status", "completed_at", "receipt_confirmed_at", "updated_at"])
        order_event(
            thread=locked.thread,
            order=order,
            change="receipt_confirmed",
            author_id=user_id,
            author_role=locked.role,
            body="The buyer confirmed that the goods arrived.",
        )
        outbox_enqueue(action="order.receipt_confirmed", order_id=order.pk, payload={"by": user_id})
    return order


def order_leave_feedback(*, user_id: str, order_id: str, rating: object, comment: object = None) -> Order:
    """The buyer rates the order once, after receipt. Validates rating and comment.

    Feedback closes the after-sale: no dispute can be opened afterwards.
    """
    with transaction.atomic():
        locked = order_locked(order_id=order_id, user_id=user_id)
        order = locked.order
        order_policy.feedback_check(actor=locked.actor, state=after_sale(order), rating=rating, comment=comment)
        order.feedback_rating = int(rating)  # type: ignore[call-overload]
        order.feedback_comment = str(comment or "")
        order.feedback_at = timezone.now()
        order.save(update_fields=["feedback_rating", "feedback_comment", "feedback_at", "updated_at"])
        stars = "★" * order.feedback_rating + "☆" * (5 - order.feedback_rating)
        order_event(
            thread=locked.thread,
            order=order,
            change="feedback_left",
            author_id=user_id,
            author_role=locked.role,
            body=f"The buyer left feedback: {stars}",
        )
        outbox_enqueue(
            action="order.feedback_left",
            order_id=order.pk,
            payload={"rating": order.feedback_rating, "comment": order.feedback_comment},
        )
    return order
