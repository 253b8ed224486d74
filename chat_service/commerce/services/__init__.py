"""Writes to orders, offers and disputes: one transaction each, events and outbox rows
scheduled inside it. ``orders`` (order lifecycle, receipt, feedback), ``offers``, ``disputes``."""

from chat_service.commerce.services.orders import order_create

__all__ = ["order_create"]
