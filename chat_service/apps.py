from django.apps import AppConfig


class ChatSiteConfig(AppConfig):
    """The wiring: management commands, static files and templates of the service's pages."""

    name = "chat_service"
    label = "chat_site"
    verbose_name = "Chat service"
