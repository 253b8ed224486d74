"""Reads of notification state. No writes, no pushes."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync

from chat_service.threads.notifications.models import NotificationProfile, ThreadMute


def muted_order_ids(*, user_id: str) -> set[str]:
    return set(ThreadMute.objects.filter(user_id=user_id).values_list("thread_id", flat=True))


def notification_preferences(*, user_id: str) -> dict[str, Any]:
    """The user's preferences as the wire shows them (defaults for a user never seen)."""
    profile = NotificationProfile.objects.filter(pk=user_id).first() or NotificationProfile(user_id=user_id)
    return {
        "email": profile.email_enabled,
        "push": profile.push_enabled,
        "email_address_known": bool(profile.email),
        "muted_order_ids": sorted(muted_order_ids(user_id=user_id)),
    }


def users_connected(*, user_ids: list[str]) -> set[str]:
    """The users among ``user_ids`` with a live connection now, in any process (the
    presence store's connection registry). Sync: for the worker."""
    from chat_service.machinery.presence_store import get_presence_store

    async def count_all() -> set[str]:
        store = get_presence_store()
        return {user_id for user_id in user_ids if await store.connection_count(user_id) > 0}

    return async_to_sync(count_all)() if user_ids else set()
