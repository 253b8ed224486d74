"""Django admin for the order mirror, offers, disputes, the inbox and the outbox.

Everything is read only except one thing: failed outbox rows can be put back for
delivery ("Retry delivery"). Orders are the order system's (written from its webhooks),
offers and disputes change through services that also write the thread event and the
outbox row; editing them here would skip both.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chat_service.commerce.models import Dispute, InboxEvent, Offer, Order, OutboxMessage
from chat_service.commerce.outbox import outbox_retry_failed
from chat_service.threads.admin import ReadOnlyAdmin


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "order_id",
        "item_title",
        "supplier_name",
        "buyer_id",
        "seller_id",
        "status",
        "amount",
        "currency",
        "tracking_number",
        "version",
        "ordered_at",
    )
    list_filter = ("status", "currency")
    search_fields = ("=order_id", "item_title", "supplier_name", "=buyer_id", "=seller_id", "=tracking_number")
    ordering = ("-ordered_at",)


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    list_display = ("id", "order_id", "status", "price", "currency", "previous_amount", "expires_at", "closed_at")
    list_filter = ("status",)
    search_fields = ("=order__order_id",)
    ordering = ("-id",)


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "order_id",
        "status",
        "reason",
        "refund_amount",
        "counter_amount",
        "agreed_amount",
        "currency",
        "return_item",
        "respond_by",
        "opened_at",
        "closed_at",
    )
    list_filter = ("status", "reason", "return_item")
    search_fields = ("=order__order_id",)
    ordering = ("-id",)


@admin.register(InboxEvent)
class InboxEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "order_id", "outcome", "received_at")
    list_filter = ("outcome", "type")
    search_fields = ("=event_id", "=order_id")
    ordering = ("-received_at",)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "action",
        "order_id",
        "status",
        "attempts",
        "next_attempt_at",
        "short_error",
        "created_at",
        "delivered_at",
    )
    list_filter = ("status", "action")
    search_fields = ("=order_id", "=idempotency_key")
    ordering = ("-id",)
    actions = ("retry_delivery",)

    @admin.display(description="last error")
    def short_error(self, message: OutboxMessage) -> str:
        return message.last_error if len(message.last_error) <= 80 else message.last_error[:79] + "…"

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Retrying changes the rows, so it needs the change permission the form never gets.
        return request.user.has_perm("orders_bridge.change_outboxmessage")

    @admin.action(description="Retry delivery", permissions=["retry"])
    def retry_delivery(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        reset = outbox_retry_failed(ids=ids)
        if reset:
            self.message_user(request, f"{reset} failed message(s) put back for delivery.", messages.SUCCESS)
        if reset < len(ids):
            self.message_user(
                request,
                f"{len(ids) - reset} selected message(s) were not failed and were left alone.",
                messages.WARNING,
            )
