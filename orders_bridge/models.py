"""The local mirror of an order in the marketplace's order system.

The order system is the source of truth; rows here are written only from its webhooks
(and, in the embedded demo, by the built-in local order system). ``version`` is the order
system's own counter: a change with a lower version than the stored one is stale.
"""

from __future__ import annotations

from django.db import models


class OrderStatus(models.TextChoices):
    AWAITING_PAYMENT = "awaiting_payment", "Awaiting payment"
    AWAITING_SHIPMENT = "awaiting_shipment", "Awaiting shipment"
    AWAITING_ACCEPTANCE = "awaiting_acceptance", "Goods awaiting acceptance"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class Order(models.Model):
    order_id = models.CharField(max_length=64, primary_key=True)
    buyer_id = models.CharField(max_length=64)
    seller_id = models.CharField(max_length=64)
    supplier_name = models.CharField(max_length=200)
    item_title = models.CharField(max_length=300)
    properties = models.JSONField(default=dict, blank=True)
    quantity = models.PositiveIntegerField(default=1)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(max_length=32, choices=OrderStatus.choices)
    tracking_number = models.CharField(max_length=64, blank=True, default="")
    ordered_at = models.DateTimeField()
    version = models.PositiveBigIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["buyer_id", "-ordered_at"], name="order_buyer_recent"),
            models.Index(fields=["seller_id", "-ordered_at"], name="order_seller_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} · {self.item_title}"

    def summary(self) -> dict[str, object]:
        """The order as the wire shows it (amounts as decimal strings, ISO times)."""
        return {
            "order_id": self.order_id,
            "buyer_id": self.buyer_id,
            "seller_id": self.seller_id,
            "supplier_name": self.supplier_name,
            "item_title": self.item_title,
            "properties": self.properties,
            "quantity": self.quantity,
            "amount": f"{self.amount:.2f}",
            "currency": self.currency,
            "status": self.status,
            "tracking_number": self.tracking_number,
            "ordered_at": self.ordered_at.isoformat().replace("+00:00", "Z"),
            "version": self.version,
        }
