"""Delivering composed notifications through their channels: at least once, from any
number of workers at the same time. The design of ``orders_bridge.delivery``:

1. **Claim** (one short transaction): the oldest due pending delivery, ``SELECT … FOR
   UPDATE SKIP LOCKED``; ``attempts`` + 1 and ``next_attempt_at`` = the end of a lease.
   COMMIT. The row stays ``pending``; the lease hides it from other workers.
2. **Send**, with no transaction open: ``channel.send(row)``, carrying the row's stored
   payload and ``idempotency_key``, the same on every attempt.
3. **Record**: accepted → ``delivered``; retryable with attempts left → ``next_attempt_at``
   = now + backoff (base·2ⁿ, jittered, capped); otherwise ``failed`` with ``last_error``.
   A failure is recorded only by the holder of the current lease.

A worker killed anywhere loses nothing: before the record the row is still ``pending``
and any worker sends it again, with the same key, once the lease ends. That resend is
the only duplicate there can be, and it always carries the same key.

Unlike the bridge there is no order to keep between rows: each row backs off on its own,
so a user whose endpoint or mailbox keeps failing delays nobody else's notifications
(no head-of-line blocking).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime

from chat_service.machinery.delivery.leased import DeliveryCounts, deliver_leased
from chat_service.notification_channels.channel import Channel, DeliveryResult
from chat_service.threads.notifications.config import NotifyConfig, notify_config
from chat_service.threads.notifications.models import NotificationDelivery

_random = random.Random()


def notifications_deliver_due(
    *,
    channels: Mapping[str, Channel],
    now: datetime | None = None,
    batch: int | None = None,
    config: NotifyConfig | None = None,
    rng: random.Random = _random,
) -> DeliveryCounts:
    """Send up to ``batch`` due deliveries (see the module docstring). ``now`` fixes the
    clock for the pass (tests). Safe in any number of threads and processes at once."""
    config = config or notify_config()
    return deliver_leased(
        due=NotificationDelivery.objects.all(),
        send=lambda row: _send(channels, row),
        batch=batch or config.batch,
        lease_s=config.lease_s,
        max_attempts=config.max_attempts,
        backoff_base_s=config.backoff_base_s,
        backoff_max_s=config.backoff_max_s,
        now=now,
        rng=rng,
        describe=lambda row: f"notification channel={row.channel} user={row.user_id}",
    )


def _send(channels: Mapping[str, Channel], row: NotificationDelivery) -> DeliveryResult:
    channel = channels.get(row.channel)
    if channel is None:
        # Configuration changed since the row was composed (NOTIFY_WEBHOOK_URL removed):
        # keep it, a later configuration may deliver it.
        return DeliveryResult(accepted=False, retryable=True, error=f"channel {row.channel} is not configured")
    return channel.send(row)
