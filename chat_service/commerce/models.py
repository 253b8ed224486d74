"""The local mirror of an order in the marketplace's order system.

The order system is the source of truth; rows here are written only from its webhooks
(and, in the embedded demo, by the built-in local order system). ``version`` is the order
system's own counter: a change with a lower version than the stored one is stale.
"""

from __future__ import annotations

from django.db import models

from chat_service.commerce.policies import order as order_policy
from chat_service.machinery.delivery.leased import DeliveryStatus, LeasedDelivery

# The states and their names are the order policy's (chat_service.commerce.policies.order).
OrderStatus = models.TextChoices(  # type: ignore[call-overload]  # django-stubs does not type the functional API
    "OrderStatus", [(status.upper(), (status, name)) for status, name in order_policy.STATUS_NAMES.items()]
)


class Order(models.Model):
    order_id = models.CharField(max_length=64, primary_key=True)
    buyer_id = models.CharField(max_length=64)
    seller_id = models.CharField(max_length=64)
    supplier_name = models.CharField(max_length=200)
    item_title = models.CharField(max_length=300)
    # The order system's product category ("electronics", "phones", "apparel", …); empty
    # when it sends none (chat_service.commerce.policies.order.is_electronics falls back
    # to the title).
    category = models.CharField(max_length=64, blank=True, default="")
    properties = models.JSONField(default=dict, blank=True)
    quantity = models.PositiveIntegerField(default=1)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(max_length=32, choices=OrderStatus.choices)
    tracking_number = models.CharField(max_length=64, blank=True, default="")
    ordered_at = models.DateTimeField()
    version = models.PositiveBigIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)
    # After-sale facts the dispute and feedback rules need (chat_service.commerce.policies.order).
    completed_at = models.DateTimeField(null=True, blank=True)
    receipt_confirmed_at = models.DateTimeField(null=True, blank=True)
    feedback_rating = models.PositiveSmallIntegerField(null=True, blank=True)
    feedback_comment = models.TextField(blank=True, default="")
    feedback_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["buyer_id", "-ordered_at"], name="order_buyer_recent"),
            models.Index(fields=["seller_id", "-ordered_at"], name="order_seller_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} · {self.item_title}"


class Offer(models.Model):
    """A price offer on an order awaiting payment (chat_service.commerce.policies.offer).

    At most one live offer (requested or open) per order, enforced by the database too.
    """

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="offers")
    status = models.CharField(max_length=16)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3)
    previous_amount = models.DecimalField(max_digits=12, decimal_places=2)
    request_note = models.CharField(max_length=500, blank=True, default="")
    note = models.CharField(max_length=500, blank=True, default="")
    requested_at = models.DateTimeField(null=True, blank=True)
    made_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["order"], condition=models.Q(status__in=["requested", "open"]), name="offer_one_live_per_order"
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="offer_due")]

    def __str__(self) -> str:
        return f"offer {self.pk} on {self.order_id} ({self.status})"


class Dispute(models.Model):
    """A buyer's refund claim on an order (chat_service.commerce.policies.dispute).

    At most one open (not resolved, not cancelled) dispute per order, enforced by the
    database too.
    """

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="disputes")
    status = models.CharField(max_length=16)
    reason = models.CharField(max_length=32)
    details = models.TextField(blank=True, default="")
    refund_amount = models.DecimalField(max_digits=12, decimal_places=2)
    counter_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    agreed_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3)
    return_item = models.BooleanField(default=False)
    seller_note = models.TextField(blank=True, default="")
    return_tracking_number = models.CharField(max_length=64, blank=True, default="")
    decision_note = models.TextField(blank=True, default="")
    respond_by = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["order"],
                condition=~models.Q(status__in=["resolved", "cancelled"]),
                name="dispute_one_open_per_order",
            ),
        ]
        indexes = [models.Index(fields=["status", "respond_by"], name="dispute_due")]

    def __str__(self) -> str:
        return f"dispute {self.pk} on {self.order_id} ({self.status})"


class InboxEvent(models.Model):
    """An order-system webhook already applied: written in the transaction that applied
    it, so a redelivery is recognised and acknowledged without effect."""

    event_id = models.CharField(max_length=128, primary_key=True)
    type = models.CharField(max_length=64)
    order_id = models.CharField(max_length=64, blank=True, default="")
    outcome = models.CharField(max_length=16)  # applied | stale
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.event_id} ({self.type}, {self.outcome})"


OutboxStatus = DeliveryStatus  # pending / delivered / failed, as every leased delivery


class OutboxMessage(LeasedDelivery):
    """An action the order system must learn about, written in the same transaction as the
    change itself and delivered by the worker (at least once, with ``idempotency_key``)."""

    action = models.CharField(max_length=64)
    order_id = models.CharField(max_length=64)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outbox_due")]

    def __str__(self) -> str:
        return f"{self.action} {self.order_id} ({self.status})"
