"""Delivering the outbox to the order system: at least once, in order per order, from any
number of workers at the same time.

``outbox_deliver_due`` is one pass of chat_service.machinery.delivery.leased (claim with a
lease, send with no transaction open, record; what happens when a worker dies at each
step is written there) over the outbox, sending each row through a ``Transport``
(orders_bridge.transport: HTTP to ORDER_SYSTEM_URL, or the embedded local order system).

Order per order: a row is not claimed while an earlier row of the same order is pending
(waiting, backing off or in flight), so the order system sees "dispute.opened" before
"dispute.answered" even when the first attempt failed. A row that ended ``failed`` no
longer holds its order's later rows back.
"""

from __future__ import annotations

import random
from datetime import datetime

from django.db.models import Exists, OuterRef

from chat_service.commerce.models import OutboxMessage, OutboxStatus
from chat_service.machinery.delivery.leased import DeliveryCounts, deliver_leased
from orders_bridge.config import OutboxConfig, outbox_config
from orders_bridge.local_order_system import LocalOrderSystem
from orders_bridge.transport import HttpTransport, Transport

_random = random.Random()


def transport_from_settings(config: OutboxConfig | None = None) -> Transport:
    """HTTP to ORDER_SYSTEM_URL when it is set; the built-in local order system otherwise."""
    config = config or outbox_config()
    if config.order_system_url:
        assert config.signing_secret  # outbox_config refuses a URL without a secret
        return HttpTransport(config.order_system_url, config.signing_secret, timeout_s=config.timeout_s)
    return LocalOrderSystem()


def outbox_deliver_due(
    *,
    transport: Transport,
    now: datetime | None = None,
    batch: int = 50,
    config: OutboxConfig | None = None,
    rng: random.Random = _random,
) -> DeliveryCounts:
    """Deliver up to ``batch`` due outbox rows (see the module docstring).

    ``now`` fixes the clock for the whole pass (tests); by default each step reads it.
    Safe to run in any number of threads and processes at once.
    """
    config = config or outbox_config()
    # Actions of one order go out in order: a row waits while an earlier one is pending.
    earlier_pending = OutboxMessage.objects.filter(
        order_id=OuterRef("order_id"), status=OutboxStatus.PENDING, pk__lt=OuterRef("pk")
    )
    return deliver_leased(
        due=OutboxMessage.objects.filter(~Exists(earlier_pending)),
        send=transport.deliver,
        batch=batch,
        lease_s=config.lease_s,
        max_attempts=config.max_attempts,
        backoff_base_s=config.backoff_base_s,
        backoff_max_s=config.backoff_max_s,
        now=now,
        rng=rng,
        describe=lambda row: f"outbox action={row.action} order={row.order_id}",
    )
