from django.apps import AppConfig


class OrderSystemBridgeConfig(AppConfig):
    """The order system's adapter: its signed webhook in, the outbox delivered out, and the
    worker jobs that drive them. It owns no tables (the commerce domain's app, labelled
    ``orders_bridge`` for its table names, holds the inbox and outbox)."""

    name = "orders_bridge"
    label = "order_system_bridge"
    verbose_name = "Order system bridge"
