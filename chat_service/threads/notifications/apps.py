from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "chat_service.threads.notifications"
    label = "notifications"
    verbose_name = "Notifications"
