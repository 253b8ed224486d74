from django.apps import AppConfig


class CommerceConfig(AppConfig):
    """Orders, offers and disputes. Labelled ``orders_bridge``, the app that first held them,
    so that the table names and the migration history stay as they are."""

    name = "chat_service.commerce"
    label = "orders_bridge"
    verbose_name = "Orders, offers and disputes"

    def ready(self) -> None:
        # Commerce's reminders are described by commerce (threads import no commerce code).
        from chat_service.commerce import reminders

        reminders.register()
