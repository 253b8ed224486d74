"""Django admin for notifications: read only, except that failed deliveries can be put
back ("Retry delivery", same key and payload: to the receiver it is the same push)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chat_service.threads.admin import ReadOnlyAdmin
from chat_service.threads.notifications.models import (
    Notification,
    NotificationDelivery,
    NotificationProfile,
    ThreadMute,
)
from chat_service.threads.notifications.services import notifications_retry_failed


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("id", "user_id", "thread_id", "event_seq", "kind", "status", "reason", "due_at", "digest_key")
    list_filter = ("status", "reason", "kind")
    search_fields = ("=user_id", "=thread__order_id", "=digest_key")
    ordering = ("-id",)


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "channel",
        "user_id",
        "order_id",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "delivered_at",
    )
    list_filter = ("status", "channel")
    search_fields = ("=user_id", "=order_id", "=idempotency_key")
    ordering = ("-id",)
    actions = ("retry_delivery",)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.change_notificationdelivery")

    @admin.action(description="Retry delivery", permissions=["retry"])
    def retry_delivery(self, request: HttpRequest, queryset: QuerySet[NotificationDelivery]) -> None:
        reset = notifications_retry_failed(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{reset} failed deliveries put back.", messages.SUCCESS)


@admin.register(NotificationProfile)
class NotificationProfileAdmin(ReadOnlyAdmin):
    list_display = ("user_id", "email_enabled", "push_enabled", "last_online_at", "updated_at")
    search_fields = ("=user_id",)


@admin.register(ThreadMute)
class ThreadMuteAdmin(ReadOnlyAdmin):
    list_display = ("user_id", "thread_id", "created_at")
    search_fields = ("=user_id", "=thread__order_id")
