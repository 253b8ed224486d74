"""Django admin for threads and their events: read only.

Events are the durable log every delivery guarantee rests on (seq per thread, unread
counters); they change only through chat_service.threads.services, which keeps those invariants
and pushes on commit. So the admin shows them and never edits them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from chat_service.threads.models import Event, Thread


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, not addable, changeable or deletable: the rows change only through services."""

    # Counting every row of a large table on each page costs a full scan.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Thread)
class ThreadAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "buyer_id", "seller_id", "last_seq", "buyer_unread", "seller_unread", "last_event_at")
    search_fields = ("=order__order_id", "=buyer_id", "=seller_id")
    ordering = ("-last_event_at",)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("thread_id", "seq", "kind", "author_role", "author_id", "short_body", "created_at")
    list_filter = ("kind", "author_role")
    search_fields = ("=thread__order__order_id", "=author_id", "=client_msg_id")
    ordering = ("-id",)

    @admin.display(description="body")
    def short_body(self, event: Event) -> str:
        return event.body if len(event.body) <= 80 else event.body[:79] + "…"
