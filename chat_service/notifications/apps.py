from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "chat_service.notifications"
    label = "notifications"
    verbose_name = "Notifications"
