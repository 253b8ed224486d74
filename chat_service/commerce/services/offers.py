"""Price offers on an order awaiting payment (rules: chat_service.commerce.policies.offer).

Every change is a thread event of kind "offer" with the offer's new state in ``data``.
Accepting sends ``offer.accepted`` to the order system through the outbox; the order's
amount changes only when the order system confirms with a new order version (the
built-in local order system confirms at once).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat_service.commerce.models import Offer
from chat_service.commerce.outbox import outbox_enqueue
from chat_service.commerce.policies import Actor
from chat_service.commerce.policies import offer as policy
from chat_service.commerce.services.access import offer_locked, order_locked, order_locked_by_system
from chat_service.protocol.commerce import money, offer_wire
from chat_service.protocol.errors import BadRequest, InvalidState
from chat_service.threads.models import EventKind, Role, Thread
from chat_service.threads.services import event_append


def _offer_event(
    *, thread: Thread, offer: Offer, change: str, body: str, author_id: str | None, author_role: Role
) -> None:
    event_append(
        thread=thread,
        kind=EventKind.OFFER,
        author_id=author_id,
        author_role=author_role,
        body=body,
        data={"change": change, "offer": offer_wire(offer)},
    )


def _live_offer(order_id: str) -> Offer | None:
    return Offer.objects.select_for_update().filter(order_id=order_id, status__in=policy.LIVE).first()


def offer_request(*, user_id: str, order_id: str, note: object = None) -> Offer:
    """The buyer asks the seller for a better price. Authorizes and validates."""
    note_text = _note(note)
    with transaction.atomic():
        locked = order_locked(order_id=order_id, user_id=user_id)
        live = _live_offer(order_id)
        # The specific refusal ("withdraw it first") before the generic one of the table.
        policy.live_offer_conflict(action="request", live_status=live.status if live else None, actor=locked.actor)
        policy.offer_action(
            action="request",
            offer_status=policy.NONE if live is None else live.status,
            order_status=locked.order.status,
            actor=locked.actor,
        )
        now = timezone.now()
        offer = _create(
            Offer(
                order=locked.order,
                status=policy.REQUESTED,
                currency=locked.order.currency,
                previous_amount=locked.order.amount,
                request_note=note_text,
                requested_at=now,
                expires_at=now + timedelta(seconds=policy.DEFAULT_EXPIRY_S),
            )
        )
        body = "The buyer asked for a better price." + (f" “{note_text}”" if note_text else "")
        _offer_event(
            thread=locked.thread, offer=offer, change="requested", body=body, author_id=user_id, author_role=locked.role
        )
    return offer


def offer_make(
    *,
    user_id: str,
    order_id: str,
    price: object,
    currency: object = None,
    note: object = None,
    expires_in_s: object = None,
) -> Offer:
    """The seller offers a price, answering the buyer's request if there is one."""
    note_text = _note(note)
    expiry = policy.offer_expiry(expires_in_s)
    with transaction.atomic():
        locked = order_locked(order_id=order_id, user_id=user_id)
        order = locked.order
        live = _live_offer(order_id)
        # The specific refusal ("withdraw it first") before the generic one of the table.
        policy.live_offer_conflict(action="make", live_status=live.status if live else None, actor=locked.actor)
        policy.offer_action(
            action="make",
            offer_status=policy.NONE if live is None else live.status,
            order_status=order.status,
            actor=locked.actor,
        )
        value = policy.offer_price(price=price, currency=currency, order_currency=order.currency)
        now = timezone.now()
        offer = live or Offer(order=order, currency=order.currency, previous_amount=order.amount)
        offer.status, offer.price, offer.note = policy.OPEN, value, note_text
        offer.made_at, offer.expires_at = now, now + timedelta(seconds=expiry)
        offer = _create(offer) if offer.pk is None else _saved(offer)
        body = f"The seller offered {money(value)} {order.currency} (was {money(order.amount)})."
        if note_text:
            body += f" “{note_text}”"
        _offer_event(
            thread=locked.thread, offer=offer, change="made", body=body, author_id=user_id, author_role=locked.role
        )
    return offer


def offer_accept(*, user_id: str, offer_id: str) -> Offer:
    """The buyer accepts the open offer; the new price goes to the order system."""
    return _answer(
        user_id=user_id, offer_id=offer_id, action="accept", body="The buyer accepted the offer of {price} {currency}."
    )


def offer_decline(*, user_id: str, offer_id: str) -> Offer:
    return _answer(
        user_id=user_id, offer_id=offer_id, action="decline", body="The buyer declined the offer of {price} {currency}."
    )


def offer_withdraw(*, user_id: str, offer_id: str) -> Offer:
    return _answer(
        user_id=user_id,
        offer_id=offer_id,
        action="withdraw",
        body="The seller withdrew the offer of {price} {currency}.",
    )


def _answer(*, user_id: str, offer_id: str, action: str, body: str) -> Offer:
    with transaction.atomic():
        offer, locked = offer_locked(offer_id=offer_id, user_id=user_id)
        offer.status = policy.offer_action(
            action=action, offer_status=offer.status, order_status=locked.order.status, actor=locked.actor
        )
        if offer.status == policy.ACCEPTED and offer.expires_at is not None and offer.expires_at <= timezone.now():
            raise InvalidState("This offer has expired.")
        offer.closed_at = timezone.now()
        _saved(offer)
        _offer_event(
            thread=locked.thread,
            offer=offer,
            change=offer.status,
            body=body.format(price=money(offer.price), currency=offer.currency),
            author_id=user_id,
            author_role=locked.role,
        )
        if offer.status == policy.ACCEPTED:
            outbox_enqueue(
                action="offer.accepted",
                order_id=offer.order_id,
                payload={
                    "offer_id": str(offer.pk),
                    "price": money(offer.price),
                    "currency": offer.currency,
                    "previous_amount": money(offer.previous_amount),
                },
            )
    return offer


def offer_close(*, offer: Offer, thread: Thread, now: datetime, action: str, body: str) -> None:
    """Close a live offer for the system (expiry; the order moved on). Caller holds the locks."""
    offer.status = policy.offer_action(
        action=action, offer_status=offer.status, order_status=offer.order.status, actor=Actor.WORKER
    )
    offer.closed_at = now
    _saved(offer)
    _offer_event(thread=thread, offer=offer, change=offer.status, body=body, author_id=None, author_role=Role.SYSTEM)


def offers_expire_due(*, now: datetime | None = None, limit: int = 200) -> int:
    """Expire live offers past their deadline (worker job). Safe with several workers:
    each offer is claimed under its row locks and re-checked."""
    now = now or timezone.now()
    due = list(
        Offer.objects.filter(status__in=policy.LIVE, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", "order_id")[:limit]
    )
    expired = 0
    for offer_id, order_id in due:
        with transaction.atomic():
            _, thread = order_locked_by_system(order_id=order_id)
            offer = (
                Offer.objects.select_for_update(skip_locked=True)
                .filter(pk=offer_id, status__in=policy.LIVE, expires_at__lte=now)
                .first()
            )
            if offer is None:
                continue
            what = "request for a better price" if offer.status == policy.REQUESTED else "offer"
            offer_close(offer=offer, thread=thread, now=now, action="expire", body=f"The {what} expired.")
            expired += 1
    return expired


def _note(note: object) -> str:
    if note is None:
        return ""
    if not isinstance(note, str) or len(note) > policy.NOTE_MAX_CHARS or "\x00" in note:
        raise BadRequest(f"note must be text of at most {policy.NOTE_MAX_CHARS} characters.", field="note")
    return note.strip()


def _create(offer: Offer) -> Offer:
    try:
        with transaction.atomic():
            offer.save()
    except IntegrityError:  # a concurrent request/make won the one-live-offer constraint
        raise InvalidState("There is already an open offer or request for this order.") from None
    return offer


def _saved(offer: Offer) -> Offer:
    offer.save()
    return offer
