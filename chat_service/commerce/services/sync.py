"""Applying the order system's webhooks: the mirror follows the source of truth.

``order_sync`` is the one service behind POST /bridge/events/ (orders_bridge.webhook).
It validates the payload, then applies it in one transaction together with its inbox row.

Invariants:
* Idempotent by ``event_id``: the InboxEvent row is written in the transaction that applies
  the event, as its first write. A redelivery finds it and changes nothing; a concurrent
  redelivery blocks on that primary key until the first commits, then fails the insert
  (IntegrityError) and is answered "duplicate" with its whole transaction rolled back.
* Monotonic by ``version``: a snapshot whose version is not newer than the stored one is
  recorded as "stale" and changes nothing. Every ``order.*`` event carries the whole order,
  and a field missing from a snapshot means its default, never "keep what is stored"; so
  only the newest version decides the final state, whatever order deliveries come in.
* Locks: inbox key, then thread row, then order row (chat_service.commerce.services.access), as
  every other writer of an order does; two events for one order serialize on them.
* Every applied change that a person would notice is a thread event of kind "order"
  (author: system) with the new order in ``data``, pushed to both parties on commit.

Event types:
* ``order.created`` / ``order.updated``: a full order snapshot (``order``). Both upsert:
  an update for an order not seen yet creates it (its creation may arrive later, and is
  then stale), and a creation of a known order is an update.
* ``dispute.decided``: ``dispute: {dispute_id, refund_amount, note?}``, the platform's
  decision (services.disputes.dispute_decide). A decision on a dispute that is already
  settled, resolved or cancelled (the parties agreed, or the buyer withdrew, before the
  decision arrived) is acknowledged as "stale" and ignored: the order system's retries
  cannot change the outcome, so a 409 would only make it retry in vain.
Anything else is refused with UnknownEventType (422) and not recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat_service.commerce.models import Dispute, InboxEvent, Order
from chat_service.commerce.policies import order as order_policy
from chat_service.commerce.services.access import order_locked_by_system
from chat_service.commerce.services.disputes import dispute_decide
from chat_service.commerce.services.orders import _close_live_offers, order_create, order_event
from chat_service.protocol.commerce import money
from chat_service.protocol.errors import BadRequest, InvalidState, NotFound, UnknownType
from chat_service.protocol.frames import ID_RE, NUMERIC_ID_RE
from chat_service.threads.models import Role, Thread


class SyncOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this event_id was applied (or found stale) before
    STALE = "stale"  # acknowledged, changed nothing (older version; decision on a closed dispute)


class UnknownEventType(UnknownType):
    """An event type this service does not know: 422, so the order system sees that the
    request was understood (and authentic) but cannot be processed."""

    http_status = 422
    default_message = "Unknown event type."


ORDER_EVENT_TYPES = frozenset({"order.created", "order.updated"})
DISPUTE_DECIDED = "dispute.decided"
EVENT_TYPES = ORDER_EVENT_TYPES | {DISPUTE_DECIDED}

# Field bounds (the model's columns).
SUPPLIER_MAX_CHARS = 200
TITLE_MAX_CHARS = 300
CATEGORY_MAX_CHARS = 64
TRACKING_MAX_CHARS = 64
PROPERTIES_MAX_CHARS = 8192
PROPERTIES_MAX_DEPTH = 8
MAX_VERSION = 2**63 - 1
MAX_QUANTITY = 2**31 - 1
_AMOUNT_RE = re.compile(r"\d{1,10}(?:\.\d{1,2})?")  # at most 9999999999.99, the column's range
_CURRENCY_RE = re.compile(r"[A-Z]{3}")

# What a snapshot sets on a stored order (buyer and seller never change).
_SNAPSHOT_FIELDS = (
    "supplier_name",
    "item_title",
    "category",
    "properties",
    "quantity",
    "amount",
    "currency",
    "status",
    "tracking_number",
    "ordered_at",
    "version",
)
# The order's fields shown together as "details" when they change.
_DETAIL_LABELS = {
    "item_title": "item",
    "properties": "item options",
    "quantity": "quantity",
    "supplier_name": "supplier",
    "ordered_at": "order date",
}


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """A validated order payload: the whole order at ``version``."""

    order_id: str
    version: int
    buyer_id: str
    seller_id: str
    supplier_name: str
    item_title: str
    category: str
    properties: dict[str, Any]
    quantity: int
    amount: Decimal
    currency: str
    status: str
    tracking_number: str
    ordered_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class DisputeDecision:
    dispute_id: str
    refund_amount: object  # checked against what was paid by dispute_decide
    note: object


def order_sync(
    *, event_id: str, event_type: str, order: dict[str, Any] | None, extra: dict[str, Any] | None = None
) -> SyncOutcome:
    """Apply one webhook event, at most once. Validates; see the module docstring.

    Raises UnknownEventType, BadRequest (with ``field``), NotFound (a decision on a dispute
    this service never had).
    """
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(f"Unknown event type {event_type[:64]!r}.")
    # A redelivery of something already applied is answered before its payload is even
    # looked at: a stricter validation in a later release must not turn an acknowledged
    # event into a 400 the order system retries forever.
    if InboxEvent.objects.filter(pk=event_id).exists():
        return SyncOutcome.DUPLICATE
    apply: Callable[[InboxEvent], SyncOutcome]
    if event_type in ORDER_EVENT_TYPES:
        snapshot = order_snapshot(order)
        apply = lambda inbox: _apply_snapshot(snapshot, inbox)  # noqa: E731
    else:
        decision = dispute_decision((extra or {}).get("dispute"))
        apply = lambda inbox: _apply_decision(decision, inbox)  # noqa: E731
    try:
        with transaction.atomic():
            inbox = InboxEvent(event_id=event_id, type=event_type, outcome=SyncOutcome.APPLIED)
            outcome = apply(inbox)
            if outcome != SyncOutcome.APPLIED:
                inbox.outcome = outcome
                inbox.save(update_fields=["outcome"])
    except IntegrityError:
        # The inbox insert lost a race with a concurrent delivery of the same event (it
        # waited for that one's commit); everything this attempt did was rolled back.
        if InboxEvent.objects.filter(pk=event_id).exists():
            return SyncOutcome.DUPLICATE
        raise
    return outcome


# --- Validation (pure) ------------------------------------------------------------------------


def order_snapshot(payload: object) -> OrderSnapshot:
    """Validate an order payload; BadRequest naming the field (``order.<name>``)."""
    if not isinstance(payload, dict):
        raise BadRequest("order must be an object.", field="order")
    order_id = _id(payload, "order_id")
    buyer_id = _id(payload, "buyer_id")
    seller_id = _id(payload, "seller_id")
    if buyer_id == seller_id:
        raise BadRequest("seller_id must differ from buyer_id.", field="order.seller_id")
    status = payload.get("status")
    if status not in order_policy.STATUSES:
        raise BadRequest(f"status must be one of {', '.join(order_policy.STATUSES)}.", field="order.status")
    amount = payload.get("amount")
    if not isinstance(amount, str) or not _AMOUNT_RE.fullmatch(amount):
        raise BadRequest(
            'amount must be a decimal string of at least 0 with at most two decimals, such as "12.50".',
            field="order.amount",
        )
    currency = payload.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise BadRequest("currency must be a three-letter code such as USD.", field="order.currency")
    ordered_at = _moment(payload.get("ordered_at"), "ordered_at")
    if ordered_at is None:
        raise BadRequest("ordered_at is required.", field="order.ordered_at")
    tracking = _text(payload.get("tracking_number"), "tracking_number", TRACKING_MAX_CHARS, default="")
    return OrderSnapshot(
        order_id=order_id,
        version=_whole(payload.get("version"), "version", maximum=MAX_VERSION, default=None),
        buyer_id=buyer_id,
        seller_id=seller_id,
        supplier_name=_text(payload.get("supplier_name"), "supplier_name", SUPPLIER_MAX_CHARS, default=""),
        item_title=_text(payload.get("item_title"), "item_title", TITLE_MAX_CHARS, default=None),
        category=_text(payload.get("category"), "category", CATEGORY_MAX_CHARS, default="").strip(),
        properties=_properties(payload.get("properties")),
        quantity=_whole(payload.get("quantity"), "quantity", maximum=MAX_QUANTITY, default=1),
        amount=Decimal(amount).quantize(Decimal("0.01")),
        currency=currency,
        status=str(status),
        tracking_number=tracking.strip(),
        ordered_at=ordered_at,
        completed_at=_moment(payload.get("completed_at"), "completed_at"),
    )


def dispute_decision(payload: object) -> DisputeDecision:
    """Validate the ``dispute`` of a dispute.decided event (the amount is checked later,
    against what the buyer paid)."""
    if not isinstance(payload, dict):
        raise BadRequest("dispute must be an object.", field="dispute")
    dispute_id = payload.get("dispute_id")
    if not isinstance(dispute_id, str) or not NUMERIC_ID_RE.fullmatch(dispute_id):
        raise BadRequest("dispute_id must be a dispute's id, a string of digits.", field="dispute.dispute_id")
    if "refund_amount" not in payload:
        raise BadRequest("refund_amount is required.", field="dispute.refund_amount")
    return DisputeDecision(dispute_id=dispute_id, refund_amount=payload["refund_amount"], note=payload.get("note"))


def _id(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None:
        raise BadRequest(f"{name} is required.", field=f"order.{name}")
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise BadRequest(f"{name} must be 1-64 letters, digits, '-', '_' or '.'.", field=f"order.{name}")
    return value


def _whole(value: object, name: str, *, maximum: int, default: int | None) -> int:
    if value is None and default is not None:
        return default
    # bool is an int subclass in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise BadRequest(f"{name} must be a whole number of at least 1.", field=f"order.{name}")
    return value


def _clean(value: str) -> bool:
    """Storable text: PostgreSQL refuses NUL, and lone surrogates (legal in JSON's \\u
    escapes) cannot be encoded."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: object, name: str, max_chars: int, *, default: str | None) -> str:
    if value is None and default is not None:
        return default
    if (
        not isinstance(value, str)
        or len(value) > max_chars
        or not _clean(value)
        or (default is None and not value.strip())
    ):
        required = " non-empty" if default is None else ""
        raise BadRequest(f"{name} must be{required} text of at most {max_chars} characters.", field=f"order.{name}")
    return value


def _moment(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    problem = f'{name} must be an ISO 8601 time with its timezone, such as "2026-03-01T12:00:00Z".'
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest(problem, field=f"order.{name}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(problem, field=f"order.{name}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise BadRequest(problem, field=f"order.{name}")
    return moment.astimezone(UTC)


def _properties(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    problem = f"properties must be an object of at most {PROPERTIES_MAX_CHARS} characters of JSON."
    if not isinstance(value, dict) or not _storable_json(value, PROPERTIES_MAX_DEPTH):
        raise BadRequest(problem, field="order.properties")
    if len(json.dumps(value, ensure_ascii=False)) > PROPERTIES_MAX_CHARS:
        raise BadRequest(problem, field="order.properties")
    return value


def _storable_json(value: object, depth: int) -> bool:
    if depth < 0:
        return False
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return all(_clean(k) and _storable_json(v, depth - 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable_json(v, depth - 1) for v in value)
    return value is None or isinstance(value, bool | int | float)


# --- Applying (one transaction, called by order_sync) -----------------------------------------


def _apply_snapshot(s: OrderSnapshot, inbox: InboxEvent) -> SyncOutcome:
    inbox.order_id = s.order_id
    inbox.save(force_insert=True)  # first write: concurrent duplicates wait here
    now = timezone.now()
    if not Order.objects.filter(pk=s.order_id).exists():
        try:
            order = order_create(
                order_id=s.order_id,
                buyer_id=s.buyer_id,
                seller_id=s.seller_id,
                supplier_name=s.supplier_name,
                item_title=s.item_title,
                category=s.category,
                properties=s.properties,
                quantity=s.quantity,
                amount=s.amount,
                currency=s.currency,
                status=s.status,
                tracking_number=s.tracking_number,
                ordered_at=s.ordered_at,
                version=s.version,
            )
        except IntegrityError:
            # Another event for this order created it meanwhile (we waited for its commit);
            # order_create's savepoint rolled back, so update the order it created.
            pass
        else:
            thread = Thread.objects.select_for_update().get(pk=order.pk)
            completed_at = s.completed_at or (now if s.status == order_policy.COMPLETED else None)
            if completed_at is not None:
                order.completed_at = completed_at
                order.save(update_fields=["completed_at", "updated_at"])
            # A new order awaiting payment starts with an empty thread; one that is
            # already further along (its creation arrived late) says where it is.
            if s.status != order_policy.AWAITING_PAYMENT:
                change, body = _status_change(order)
                _event(thread, order, change, body)
            return SyncOutcome.APPLIED

    order, thread = order_locked_by_system(order_id=s.order_id)
    if s.version <= order.version:
        return SyncOutcome.STALE
    for name in ("buyer_id", "seller_id"):
        if getattr(s, name) != getattr(order, name):
            # The thread's participants are fixed with the order; a new party is a new order.
            raise BadRequest(f"{name} of an existing order cannot change.", field=f"order.{name}")

    old_amount, old_currency = order.amount, order.currency
    old_status, old_tracking = order.status, order.tracking_number
    details = [label for name, label in _DETAIL_LABELS.items() if getattr(s, name) != getattr(order, name)]
    for name in _SNAPSHOT_FIELDS:
        setattr(order, name, getattr(s, name))
    if s.completed_at is not None:
        order.completed_at = s.completed_at
    elif order.status == order_policy.COMPLETED and order.completed_at is None:
        order.completed_at = now
    order.save()

    # One event per thing a person notices, in reading order: the price, the details,
    # the tracking number, then the status (which mentions the tracking when shipping).
    if (order.amount, order.currency) != (old_amount, old_currency):
        was = f"{old_amount:.2f}" + (f" {old_currency}" if old_currency != order.currency else "")
        _event(thread, order, "price_changed", f"Price changed to {money(order.amount)} {order.currency} (was {was})")
    if details:
        _event(thread, order, "details_changed", f"Order details updated: {', '.join(details)}")
    status_changed = order.status != old_status
    if order.tracking_number != old_tracking and not (
        status_changed and order.status == order_policy.AWAITING_ACCEPTANCE
    ):
        if not order.tracking_number:
            body = "Tracking number removed"
        elif old_tracking:
            body = f"Tracking number changed to {order.tracking_number}"
        else:
            body = f"Tracking number added: {order.tracking_number}"
        _event(thread, order, "tracking_changed", body)
    if status_changed:
        change, body = _status_change(order)
        _event(thread, order, change, body)
    if order.status != order_policy.AWAITING_PAYMENT:
        _close_live_offers(order=order, thread=thread, now=now)
    return SyncOutcome.APPLIED


def _apply_decision(d: DisputeDecision, inbox: InboxEvent) -> SyncOutcome:
    order_id = Dispute.objects.filter(pk=int(d.dispute_id)).values_list("order_id", flat=True).first()
    if order_id is None:
        raise NotFound("There is no dispute with that id.")
    inbox.order_id = order_id
    inbox.save(force_insert=True)
    try:
        dispute_decide(dispute_id=d.dispute_id, refund_amount=d.refund_amount, note=d.note)
    except InvalidState:
        # Settled, resolved or cancelled before the decision arrived (module docstring).
        return SyncOutcome.STALE
    return SyncOutcome.APPLIED


def _status_change(order: Order) -> tuple[str, str]:
    """The thread's words for the order's (new) status, and the change's name in ``data``."""
    status = order.status
    if status == order_policy.AWAITING_SHIPMENT:
        return "paid", "Paid — the seller will ship soon"
    if status == order_policy.AWAITING_ACCEPTANCE:
        tracking = f" — tracking {order.tracking_number}" if order.tracking_number else ""
        return "shipped", f"Shipped{tracking}. Please confirm receipt when it arrives"
    if status == order_policy.COMPLETED:
        # When the buyer confirmed receipt in the chat the status is already completed
        # here (and the thread says so), so this is the marketplace completing it:
        # delivery confirmed by the carrier, or the acceptance period ended.
        return "completed", "Delivered — the order is complete"
    if status == order_policy.CANCELLED:
        return "cancelled", "Cancelled"
    return "awaiting_payment", "Awaiting payment"


def _event(thread: Thread, order: Order, change: str, body: str) -> None:
    order_event(thread=thread, order=order, change=change, body=body, author_id=None, author_role=Role.SYSTEM)
