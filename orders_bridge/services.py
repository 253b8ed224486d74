"""Writes to the order mirror. Each service is one transaction.

Invariant: an order never exists without its thread. ``order_create`` writes both in the
same transaction, so a reader that finds the order also finds the thread it chats in.

These services do not validate: the order system is the source of truth, and its payloads
are checked (signature, version, fields) by the adapter that calls them — the webhook of
issue 4, the built-in local order system, the demo seed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction

from chat_service.services import thread_open
from orders_bridge.models import Order


def order_create(
    *,
    order_id: str,
    buyer_id: str,
    seller_id: str,
    supplier_name: str,
    item_title: str,
    properties: dict[str, Any],
    quantity: int,
    amount: Decimal,
    currency: str,
    status: str,
    tracking_number: str,
    ordered_at: datetime,
    version: int = 1,
) -> Order:
    """Create an order and its thread in one transaction. Does not validate.

    Raises IntegrityError when ``order_id`` exists; deciding between "new", "newer
    version" and "stale" is the caller's job (the bridge compares ``version``).
    This is the seam the webhook bridge extends with its upsert.
    """
    with transaction.atomic():
        order = Order.objects.create(
            order_id=order_id,
            buyer_id=buyer_id,
            seller_id=seller_id,
            supplier_name=supplier_name,
            item_title=item_title,
            properties=properties,
            quantity=quantity,
            amount=amount,
            currency=currency,
            status=status,
            tracking_number=tracking_number,
            ordered_at=ordered_at,
            version=version,
        )
        thread_open(order=order)
    return order
