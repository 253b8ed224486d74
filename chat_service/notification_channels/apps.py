from django.apps import AppConfig


class NotificationChannelsConfig(AppConfig):
    """The notification channels (e-mail, signed webhook) and the worker jobs that drive them."""

    name = "chat_service.notification_channels"
    label = "notification_channels"
    verbose_name = "Notification channels"
