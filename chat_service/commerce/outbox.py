"""The outbox: actions the order system must learn about.

``outbox_enqueue`` is called by services inside the transaction that makes the change,
so an action is sent if and only if the change committed. The worker delivers pending
rows (orders_bridge.delivery) at least once, each with its own stable
Idempotency-Key so the order system can drop repeats.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat_service.commerce.models import OutboxMessage
from chat_service.machinery.delivery.leased import retry_failed

# The actions the order system receives, and what they mean (docs/protocol.md, "Bridge out").
ACTIONS = frozenset(
    {
        "offer.accepted",
        "order.cancelled",
        "order.receipt_confirmed",
        "order.feedback_left",
        "dispute.opened",
        "dispute.answered",
        "dispute.counter_accepted",
        "dispute.escalated",
        "dispute.cancelled",
        "dispute.return_shipped",
        "dispute.return_received",
    }
)


def outbox_enqueue(*, action: str, order_id: str, payload: dict[str, Any]) -> OutboxMessage:
    """Queue ``action`` for delivery; must run inside the transaction of the change."""
    assert action in ACTIONS, action
    assert transaction.get_connection().in_atomic_block, "outbox_enqueue needs a transaction"
    key = uuid.uuid4().hex
    return OutboxMessage.objects.create(
        action=action,
        order_id=order_id,
        payload={"action": action, "order_id": order_id, "idempotency_key": key, **payload},
        idempotency_key=key,
        next_attempt_at=timezone.now(),
    )


def outbox_retry_failed(*, ids: list[int], now: datetime | None = None) -> int:
    """Put failed outbox rows back to pending with a fresh attempt budget (the admin's
    "Retry delivery"); see chat_service.machinery.delivery.leased.retry_failed. The
    Idempotency-Key and payload stay: to the order system it is the same action."""
    return retry_failed(OutboxMessage.objects.all(), ids=ids, now=now)
