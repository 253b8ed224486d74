"""Model factories: orders come with their thread, as the bridge creates them."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from chat_service.commerce.models import Order, OrderStatus
from chat_service.threads.models import Thread
from chat_service.threads.services import thread_open
from chat_service.transport.identity import token_mint

_ids = itertools.count(1)


def make_order(*, buyer_id: str = "buyer-1", seller_id: str = "seller-1", **fields: Any) -> Order:
    n = next(_ids)
    defaults: dict[str, Any] = {
        "order_id": f"T{n:06d}",
        "supplier_name": f"Supplier {seller_id}",
        "item_title": f"Item {n}",
        "properties": {"colour": "black", "size": "M"},
        "quantity": 1,
        "amount": Decimal("19.90"),
        "currency": "USD",
        "status": OrderStatus.AWAITING_PAYMENT,
        "ordered_at": timezone.now() - timedelta(hours=n),
    }
    defaults.update(fields)
    order = Order.objects.create(buyer_id=buyer_id, seller_id=seller_id, **defaults)
    thread_open(order=order)
    return order


def thread_of(order: Order) -> Thread:
    return Thread.objects.get(pk=order.pk)


def token_for(user_id: str, *, ttl_s: int = 3600, name: str | None = None) -> str:
    return token_mint(user_id=user_id, name=name or user_id.title(), ttl_s=ttl_s)
