"""Loading an order for a change: authorize the caller and take the locks, in one order.

Every writer of an order locks its thread first (``event_append`` needs that lock) and
then the order row; message_send locks only the thread. One order of locks everywhere
means no deadlocks between concurrent writers.
"""

from __future__ import annotations

from dataclasses import dataclass

from chat_service.commerce.models import Dispute, Offer, Order
from chat_service.commerce.policies import Actor
from chat_service.commerce.policies import dispute as dispute_policy
from chat_service.commerce.policies.order import AfterSale
from chat_service.protocol.errors import NotFound
from chat_service.threads.models import Role, Thread
from chat_service.threads.selectors import thread_for_participant


@dataclass(frozen=True, slots=True)
class Locked:
    order: Order
    thread: Thread
    actor: Actor
    role: Role


def order_locked(*, order_id: str, user_id: str) -> Locked:
    """The order and thread, locked, and the caller's role; NotFound for non-participants."""
    thread, role = thread_for_participant(order_id=order_id, user_id=user_id, lock=True)
    order = Order.objects.select_for_update().get(pk=order_id)
    return Locked(order=order, thread=thread, actor=Actor(role.value), role=role)


def order_locked_by_system(*, order_id: str) -> tuple[Order, Thread]:
    """The order and thread, locked, for the order system and the worker."""
    thread = Thread.objects.select_for_update().get(pk=order_id)
    order = Order.objects.select_for_update().get(pk=order_id)
    return order, thread


def offer_locked(*, offer_id: str, user_id: str) -> tuple[Offer, Locked]:
    order_id = _parent_order_id(Offer, offer_id)
    locked = _child_order_locked(Offer, order_id=order_id, user_id=user_id)
    return Offer.objects.select_for_update().get(pk=offer_id), locked


def dispute_locked(*, dispute_id: str, user_id: str) -> tuple[Dispute, Locked]:
    order_id = _parent_order_id(Dispute, dispute_id)
    locked = _child_order_locked(Dispute, order_id=order_id, user_id=user_id)
    return Dispute.objects.select_for_update().get(pk=dispute_id), locked


def _child_order_locked(model: type[Offer] | type[Dispute], *, order_id: str, user_id: str) -> Locked:
    """order_locked for an offer's or dispute's order. To anyone but its parties the offer
    (dispute) does not exist: the answer of an id never used, so ids cannot be probed."""
    try:
        return order_locked(order_id=order_id, user_id=user_id)
    except NotFound:
        raise NotFound(f"There is no {model.__name__.lower()} with that id for you.") from None


def _parent_order_id(model: type[Offer] | type[Dispute], pk: str) -> str:
    noun = model.__name__.lower()
    if not pk.isdigit() or len(pk) > 18:
        raise NotFound(f"There is no {noun} with that id for you.")
    order_id = model.objects.filter(pk=int(pk)).values_list("order_id", flat=True).first()
    if order_id is None:
        raise NotFound(f"There is no {noun} with that id for you.")
    return order_id


def after_sale(order: Order) -> AfterSale:
    return AfterSale(
        status=order.status,
        completed_at=order.completed_at,
        feedback_left=order.feedback_at is not None,
        open_dispute=Dispute.objects.filter(order=order).exclude(status__in=dispute_policy.CLOSED).exists(),
        dispute_resolved=Dispute.objects.filter(order=order, status=dispute_policy.RESOLVED).exists(),
    )
