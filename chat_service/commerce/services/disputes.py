"""Disputes: the buyer's refund claims (rules: chat_service.commerce.policies.dispute and, for
opening, chat_service.commerce.policies.order).

Every change is a thread event of kind "dispute" with the dispute's new state in ``data``,
and an outbox action for the order system. The platform's decision arrives by webhook
(``dispute_decide``); an unanswered dispute is escalated by the worker when the seller's
response window ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat_service.commerce.models import Dispute
from chat_service.commerce.outbox import outbox_enqueue
from chat_service.commerce.policies import Actor
from chat_service.commerce.policies import dispute as policy
from chat_service.commerce.policies import order as order_policy
from chat_service.commerce.services.access import after_sale, dispute_locked, order_locked, order_locked_by_system
from chat_service.protocol.commerce import dispute_wire, money
from chat_service.protocol.errors import BadRequest, InvalidState, NotFound
from chat_service.threads.models import EventKind, Role, Thread
from chat_service.threads.services import event_append


def _event(
    *, thread: Thread, dispute: Dispute, change: str, body: str, author_id: str | None, author_role: Role
) -> None:
    event_append(
        thread=thread,
        kind=EventKind.DISPUTE,
        author_id=author_id,
        author_role=author_role,
        body=body,
        data={"change": change, "dispute": dispute_wire(dispute)},
    )


def _settle(dispute: Dispute, amount: Decimal, status: str, now: datetime) -> None:
    dispute.agreed_amount, dispute.status = amount, status
    if status in policy.CLOSED:
        dispute.closed_at = now


def dispute_open(
    *, user_id: str, order_id: str, reason: object, refund_amount: object, return_item: object, details: object = None
) -> Dispute:
    """The buyer opens a dispute asking for a full or partial refund. Authorizes and validates."""
    reason_code = policy.dispute_reason(reason)
    details_text = policy.dispute_text(details, field="details", max_chars=policy.DETAILS_MAX_CHARS)
    if not isinstance(return_item, bool):
        raise BadRequest("return_item must be true or false.", field="return_item")
    with transaction.atomic():
        locked = order_locked(order_id=order_id, user_id=user_id)
        order, now = locked.order, timezone.now()
        order_policy.dispute_open_check(
            actor=locked.actor,
            state=after_sale(order),
            now=now,
            protection=timedelta(days=settings.ORDERS["DISPUTE_PROTECTION_DAYS"]),
        )
        amount = policy.refund_amount(value=refund_amount, paid=order.amount, currency=order.currency)
        dispute = Dispute(
            order=order,
            status=policy.OPEN,
            reason=reason_code,
            details=details_text,
            refund_amount=amount,
            currency=order.currency,
            return_item=return_item,
            opened_at=now,
            respond_by=now + timedelta(days=settings.ORDERS["DISPUTE_RESPONSE_DAYS"]),
        )
        try:
            with transaction.atomic():
                dispute.save()
        except IntegrityError:  # a concurrent open won the one-open-dispute constraint
            raise InvalidState("This order already has an open dispute.") from None
        full = "a full" if amount == order.amount else "a partial"
        body = (
            f"The buyer opened a dispute ({policy.REASON_LABELS[reason_code]}) asking for {full} refund of "
            f"{money(amount)} {order.currency}" + (", returning the item." if return_item else ".")
        )
        _event(
            thread=locked.thread,
            dispute=dispute,
            change="opened",
            body=body,
            author_id=user_id,
            author_role=locked.role,
        )
        outbox_enqueue(
            action="dispute.opened",
            order_id=order.pk,
            payload={
                "dispute_id": str(dispute.pk),
                "reason": reason_code,
                "refund_amount": money(amount),
                "currency": order.currency,
                "return_item": return_item,
                "details": details_text,
            },
        )
    return dispute


def dispute_respond(
    *, user_id: str, dispute_id: str, action: object, refund_amount: object = None, note: object = None
) -> Dispute:
    """The seller accepts, rejects or counters (with another amount) an open dispute."""
    if action not in ("accept", "reject", "counter"):
        raise BadRequest("action must be accept, reject or counter.", field="action")
    note_text = policy.dispute_text(note, field="note", max_chars=policy.DETAILS_MAX_CHARS)
    with transaction.atomic():
        dispute, locked = dispute_locked(dispute_id=dispute_id, user_id=user_id)
        now, paid = timezone.now(), locked.order.amount
        target = policy.dispute_action(
            action=str(action),
            status=dispute.status,
            actor=locked.actor,
            return_item=dispute.return_item,
            refund=dispute.refund_amount,
        )
        dispute.seller_note = note_text
        if action == "counter":
            counter = policy.refund_amount(value=refund_amount, paid=paid, currency=locked.order.currency)
            if counter >= dispute.refund_amount:
                raise BadRequest(
                    "A counter offer must refund less than the buyer asked for; accept instead.", field="refund_amount"
                )
            dispute.counter_amount, dispute.status = counter, target
            body = f"The seller offered a refund of {money(counter)} {dispute.currency} instead."
        elif action == "accept":
            _settle(dispute, dispute.refund_amount, target, now)
            body = f"The seller accepted the refund of {money(dispute.refund_amount)} {dispute.currency}."
        else:
            dispute.status = target
            body = "The seller rejected the dispute."
        if note_text:
            body += f" “{note_text}”"
        dispute.respond_by = None
        dispute.save()
        _event(
            thread=locked.thread,
            dispute=dispute,
            change=f"seller_{action}ed",
            body=body,
            author_id=user_id,
            author_role=locked.role,
        )
        outbox_enqueue(
            action="dispute.answered",
            order_id=dispute.order_id,
            payload={
                "dispute_id": str(dispute.pk),
                "answer": action,
                "counter_amount": money(dispute.counter_amount),
                "status": dispute.status,
                "note": note_text,
            },
        )
    return dispute


def dispute_accept_counter(*, user_id: str, dispute_id: str) -> Dispute:
    """The buyer settles for the seller's counter amount."""
    with transaction.atomic():
        dispute, locked = dispute_locked(dispute_id=dispute_id, user_id=user_id)
        target = policy.dispute_action(
            action="accept_counter",
            status=dispute.status,
            actor=locked.actor,
            return_item=dispute.return_item,
            refund=dispute.counter_amount,
        )
        assert dispute.counter_amount is not None
        _settle(dispute, dispute.counter_amount, target, timezone.now())
        dispute.save()
        _event(
            thread=locked.thread,
            dispute=dispute,
            change="counter_accepted",
            author_id=user_id,
            author_role=locked.role,
            body=f"The buyer accepted the refund of {money(dispute.counter_amount)} {dispute.currency}.",
        )
        outbox_enqueue(
            action="dispute.counter_accepted",
            order_id=dispute.order_id,
            payload={"dispute_id": str(dispute.pk), "agreed_amount": money(dispute.agreed_amount)},
        )
    return dispute


def dispute_escalate(*, user_id: str, dispute_id: str) -> Dispute:
    """The buyer asks the platform to decide."""
    return _buyer_step(
        user_id=user_id,
        dispute_id=dispute_id,
        action="escalate",
        outbox="dispute.escalated",
        body="The buyer asked the marketplace to decide the dispute.",
    )


def dispute_cancel(*, user_id: str, dispute_id: str) -> Dispute:
    """The buyer withdraws the dispute."""
    return _buyer_step(
        user_id=user_id,
        dispute_id=dispute_id,
        action="cancel",
        outbox="dispute.cancelled",
        body="The buyer cancelled the dispute.",
    )


def _buyer_step(*, user_id: str, dispute_id: str, action: str, outbox: str, body: str) -> Dispute:
    with transaction.atomic():
        dispute, locked = dispute_locked(dispute_id=dispute_id, user_id=user_id)
        dispute.status = policy.dispute_action(
            action=action, status=dispute.status, actor=locked.actor, return_item=dispute.return_item
        )
        if dispute.status in policy.CLOSED:
            dispute.closed_at = timezone.now()
        dispute.respond_by = None
        dispute.save()
        _event(
            thread=locked.thread,
            dispute=dispute,
            change=dispute.status,
            body=body,
            author_id=user_id,
            author_role=locked.role,
        )
        outbox_enqueue(action=outbox, order_id=dispute.order_id, payload={"dispute_id": str(dispute.pk)})
    return dispute


def dispute_add_return_tracking(*, user_id: str, dispute_id: str, tracking_number: object) -> Dispute:
    """The buyer sends the item back and gives its tracking number."""
    tracking = policy.dispute_text(
        tracking_number, field="tracking_number", max_chars=policy.TRACKING_MAX_CHARS, required=True
    ).strip()
    with transaction.atomic():
        dispute, locked = dispute_locked(dispute_id=dispute_id, user_id=user_id)
        dispute.status = policy.dispute_action(
            action="add_return_tracking", status=dispute.status, actor=locked.actor, return_item=dispute.return_item
        )
        dispute.return_tracking_number = tracking
        dispute.save()
        _event(
            thread=locked.thread,
            dispute=dispute,
            change="return_shipped",
            author_id=user_id,
            author_role=locked.role,
            body=f"The buyer sent the item back — tracking {tracking}.",
        )
        outbox_enqueue(
            action="dispute.return_shipped",
            order_id=dispute.order_id,
            payload={"dispute_id": str(dispute.pk), "tracking_number": tracking},
        )
    return dispute


def dispute_confirm_return(*, user_id: str, dispute_id: str) -> Dispute:
    """The seller confirms the returned item arrived; the refund is due."""
    with transaction.atomic():
        dispute, locked = dispute_locked(dispute_id=dispute_id, user_id=user_id)
        dispute.status = policy.dispute_action(
            action="confirm_return", status=dispute.status, actor=locked.actor, return_item=dispute.return_item
        )
        dispute.closed_at = timezone.now()
        dispute.save()
        _event(
            thread=locked.thread,
            dispute=dispute,
            change="return_received",
            author_id=user_id,
            author_role=locked.role,
            body=f"The seller received the returned item; {money(dispute.agreed_amount)} {dispute.currency} "
            "will be refunded.",
        )
        outbox_enqueue(
            action="dispute.return_received",
            order_id=dispute.order_id,
            payload={"dispute_id": str(dispute.pk), "refund_amount": money(dispute.agreed_amount)},
        )
    return dispute


def dispute_decide(*, dispute_id: str, refund_amount: object, note: object = None) -> Dispute:
    """The platform's decision, from the order system's webhook. Validates the amount."""
    note_text = policy.dispute_text(note, field="note", max_chars=policy.DETAILS_MAX_CHARS)
    with transaction.atomic():
        order_id = Dispute.objects.filter(pk=dispute_id).values_list("order_id", flat=True).first()
        if order_id is None:
            raise NotFound("There is no dispute with that id.")
        order, thread = order_locked_by_system(order_id=order_id)
        dispute = Dispute.objects.select_for_update().get(pk=dispute_id)
        amount = policy.refund_amount(value=refund_amount, paid=order.amount, currency=order.currency, allow_zero=True)
        target = policy.dispute_action(
            action="decide",
            status=dispute.status,
            actor=Actor.ORDER_SYSTEM,
            return_item=dispute.return_item,
            refund=amount,
        )
        _settle(dispute, amount, target, timezone.now())
        dispute.decision_note, dispute.respond_by = note_text, None
        dispute.save()
        outcome = f"a refund of {money(amount)} {dispute.currency}" if amount > 0 else "no refund"
        _event(
            thread=thread,
            dispute=dispute,
            change="decided",
            author_id=None,
            author_role=Role.SYSTEM,
            body=f"The marketplace decided the dispute: {outcome}." + (f" “{note_text}”" if note_text else ""),
        )
    return dispute


def disputes_escalate_overdue(*, now: datetime | None = None, limit: int = 200) -> int:
    """Escalate open disputes whose seller response window ended (worker job; safe with
    several workers: each is claimed under its locks and re-checked)."""
    now = now or timezone.now()
    due = list(
        Dispute.objects.filter(status=policy.OPEN, respond_by__lte=now)
        .order_by("respond_by")
        .values_list("pk", "order_id")[:limit]
    )
    escalated = 0
    for dispute_id, order_id in due:
        with transaction.atomic():
            _, thread = order_locked_by_system(order_id=order_id)
            dispute = (
                Dispute.objects.select_for_update()
                .filter(pk=dispute_id, status=policy.OPEN, respond_by__lte=now)
                .first()
            )
            if dispute is None:
                continue
            dispute.status = policy.dispute_action(
                action="escalate", status=dispute.status, actor=Actor.WORKER, return_item=dispute.return_item
            )
            dispute.respond_by = None
            dispute.save()
            _event(
                thread=thread,
                dispute=dispute,
                change="escalated",
                author_id=None,
                author_role=Role.SYSTEM,
                body="The seller did not answer in time, so the marketplace will decide the dispute.",
            )
            outbox_enqueue(
                action="dispute.escalated", order_id=order_id, payload={"dispute_id": str(dispute.pk), "by": "deadline"}
            )
            escalated += 1
    return escalated
