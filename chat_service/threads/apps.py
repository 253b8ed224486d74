from django.apps import AppConfig


class ThreadsConfig(AppConfig):
    """Order threads and their events. Labelled ``chat_service``, the app that first held
    them, so that the table names and the migration history stay as they are."""

    name = "chat_service.threads"
    label = "chat_service"
    verbose_name = "Order threads"
