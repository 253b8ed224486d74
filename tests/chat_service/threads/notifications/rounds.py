"""A worker's round in a test: the notification jobs run in process with a given clock."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.utils import timezone

from chat_service.notification_channels.channel import channels_from_settings
from chat_service.notification_channels.delivery import notifications_deliver_due
from chat_service.threads.notifications.models import NotificationDelivery
from chat_service.threads.notifications.services import notification_profile_connected, notifications_compose_due


def seen_long_ago(user_id: str, *, email: str | None = None) -> None:
    """The user connected once, an hour ago, with this address in their token."""
    notification_profile_connected(user_id=user_id, email=email, now=timezone.now() - timedelta(hours=1))


def compose_and_deliver(now: datetime) -> None:
    """One worker round at ``now``: compose what is due, then send until nothing is due."""
    notifications_compose_due(now=now)
    channels = channels_from_settings()
    for passes in range(50):
        counts = notifications_deliver_due(channels=channels, now=now, rng=random.Random(passes))
        if counts.claimed == 0:
            return


def deliveries(**filters: object) -> list[NotificationDelivery]:
    return list(NotificationDelivery.objects.filter(**filters).order_by("pk"))


def later(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)
