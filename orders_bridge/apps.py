from django.apps import AppConfig


class OrdersBridgeConfig(AppConfig):
    name = "orders_bridge"
    verbose_name = "Orders bridge"
