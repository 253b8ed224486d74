from django.apps import AppConfig


class ChatServiceConfig(AppConfig):
    name = "chat_service"
    verbose_name = "Order threads"
