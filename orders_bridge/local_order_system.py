"""The built-in order system: the Transport used when ORDER_SYSTEM_URL is unset.

In the embedded demo there is no marketplace to confirm anything, so this plays its part:
``deliver`` applies an action the way the real order system would answer it (with a new
order version) and accepts. Per action:

* ``offer.accepted``: the order's amount becomes the offer's price and its version goes
  up by one, recorded in the thread as an order event "Price changed to X (was Y)". If
  the order no longer awaits payment (cancelled or paid before the action arrived), the
  price is left alone and the thread says so; the action is still accepted, as a real
  order system would acknowledge it with a refusal rather than ask for a retry.
* ``order.cancelled``, ``order.receipt_confirmed``, ``order.feedback_left`` and every
  ``dispute.*`` action: the service that queued them already changed the local mirror
  (status, dispute state, feedback), so there is nothing left to apply. Accepted as is.
  (The platform's decision on an escalated dispute has no local stand-in: it comes from
  the real order system's webhook, or from an operator.)

Idempotent: the outbox delivers at least once, so the same message may arrive twice.
An applied message leaves an InboxEvent ``local:<idempotency_key>`` written in the same
transaction as its effect; a repeat finds it under the same locks and changes nothing.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import transaction

from chat_service.commerce.models import InboxEvent, Order, OrderStatus, OutboxMessage
from chat_service.commerce.services.access import order_locked_by_system
from chat_service.commerce.services.orders import order_event
from chat_service.protocol.commerce import money
from chat_service.threads.models import Role, Thread
from orders_bridge.transport import DeliveryResult

log = logging.getLogger(__name__)

INBOX_PREFIX = "local:"


class LocalOrderSystem:
    """A Transport that is its own order system (see the module docstring)."""

    def __repr__(self) -> str:
        return "LocalOrderSystem()"

    def deliver(self, message: OutboxMessage) -> DeliveryResult:
        if message.action != "offer.accepted":
            return DeliveryResult.ok()
        try:
            self._apply_price(message)
        except (Order.DoesNotExist, Thread.DoesNotExist):
            # What a real order system answers with a 404: retrying will not help.
            return DeliveryResult(accepted=False, retryable=False, error=f"order {message.order_id} does not exist")
        return DeliveryResult.ok()

    def _apply_price(self, message: OutboxMessage) -> None:
        with transaction.atomic():
            # Thread, then order: the lock order of every writer (services.access).
            order, thread = order_locked_by_system(order_id=message.order_id)
            event_id = INBOX_PREFIX + message.idempotency_key
            if InboxEvent.objects.filter(pk=event_id).exists():
                log.info("local order system: repeat ignored key=%s", message.idempotency_key)
                return
            price = Decimal(message.payload["price"])
            if order.status != OrderStatus.AWAITING_PAYMENT:
                outcome = "stale"
                order_event(
                    thread=thread,
                    order=order,
                    change="price_change_refused",
                    author_id=None,
                    author_role=Role.SYSTEM,
                    body=f"The price was not changed to {money(price)} {order.currency}: "
                    "the order no longer awaits payment.",
                )
            else:
                outcome = "applied"
                previous = order.amount
                order.amount, order.version = price, order.version + 1
                order.save(update_fields=["amount", "version", "updated_at"])
                order_event(
                    thread=thread,
                    order=order,
                    change="price_changed",
                    author_id=None,
                    author_role=Role.SYSTEM,
                    body=f"Price changed to {money(price)} {order.currency} (was {money(previous)} {order.currency}).",
                )
            InboxEvent.objects.create(event_id=event_id, type=message.action, order_id=order.pk, outcome=outcome)
