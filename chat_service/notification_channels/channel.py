"""Delivery channels: one method, ``send(delivery) -> DeliveryResult``, one file each.

``chat_service.notification_channels.delivery`` hands every claimed delivery row to the channel
named by its ``channel`` field and records the answer; it never talks HTTP or SMTP
itself. A channel never raises for a delivery error: it answers whether the message was
accepted and, if not, whether another attempt can help (``retryable``). Tests replace
channels the same way (``channels={"webhook": ..., "email": ...}``).
"""

from __future__ import annotations

from typing import Protocol

from chat_service.machinery.delivery.signed_http import DeliveryResult
from chat_service.threads.notifications.models import NotificationDelivery

__all__ = ["Channel", "DeliveryResult", "channels_from_settings"]


class Channel(Protocol):
    def send(self, delivery: NotificationDelivery) -> DeliveryResult:
        """Hand ``delivery`` over once; never raises for delivery errors."""
        ...


def channels_from_settings() -> dict[str, Channel]:
    from chat_service.notification_channels.email import EmailChannel
    from chat_service.notification_channels.webhook import WebhookChannel
    from chat_service.threads.notifications.config import notify_config

    config = notify_config()
    channels: dict[str, Channel] = {"email": EmailChannel(from_email=config.email_from)}
    if config.webhook_url:
        channels["webhook"] = WebhookChannel(config.webhook_url, config.signing_secret, timeout_s=config.timeout_s)
    return channels
