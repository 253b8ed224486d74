"""``manage.py seed_demo [--reset]``: write the demo's orders and conversations.

The data lives in ``chat_service.demo_data``; this command only feeds it through the
services, so the result is exactly what real traffic would have produced: orders come
with their threads (``order_create``), messages get gapless seqs and unread counts
(``message_send``).

Idempotent: an existing demo order is left as it is (the demo may have moved it on), and
a message whose fixed ``client_msg_id`` is already stored is not stored again.
``--reset`` first deletes the demo orders, and with them their threads and everything in
them, so the demo starts over. Orders that are not the demo's are never touched.
All of it is one transaction: an interrupted seed leaves nothing half-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from chat_service import demo_data
from chat_service.commerce.models import Order
from chat_service.commerce.services import order_create
from chat_service.threads.services import message_send


@dataclass(frozen=True, slots=True)
class SeedOutcome:
    orders_deleted: int
    orders_created: int
    orders_kept: int
    messages_created: int
    messages_kept: int


def demo_seed(*, reset: bool = False, now: datetime | None = None) -> SeedOutcome:
    """Write the demo data; see the module docstring. Does not validate (the data is ours)."""
    now = now or timezone.now()
    seller_names = {seller.id: seller.name for seller in demo_data.SELLERS}
    with transaction.atomic():
        orders_deleted = 0
        if reset:
            _, per_model = Order.objects.filter(order_id__in=demo_data.ORDER_IDS).delete()
            orders_deleted = per_model.get(Order._meta.label, 0)
        existing = set(Order.objects.filter(order_id__in=demo_data.ORDER_IDS).values_list("order_id", flat=True))
        for demo in demo_data.ORDERS:
            if demo.order_id in existing:
                continue
            order_create(
                order_id=demo.order_id,
                buyer_id=demo_data.BUYER.id,
                seller_id=demo.seller_id,
                supplier_name=seller_names[demo.seller_id],
                item_title=demo.item_title,
                category=demo.category,
                properties=demo.properties,
                quantity=demo.quantity,
                amount=demo.amount,
                currency=demo.currency,
                status=demo.status,
                tracking_number=demo.tracking_number,
                ordered_at=now - timedelta(days=demo.ordered_days_ago),
            )
        messages_created = 0
        for message in demo_data.MESSAGES:
            # The service's idempotency key does the de-duplication; the repeat's
            # savepoint rolls back on its own, the rest of the seed carries on.
            outcome = message_send(
                user_id=message.author_id,
                order_id=message.order_id,
                client_msg_id=message.client_msg_id,
                body=message.body,
            )
            messages_created += outcome.created
    orders_created = len(demo_data.ORDERS) - len(existing)
    return SeedOutcome(
        orders_deleted=orders_deleted,
        orders_created=orders_created,
        orders_kept=len(existing),
        messages_created=messages_created,
        messages_kept=len(demo_data.MESSAGES) - messages_created,
    )


class Command(BaseCommand):
    help = "Create the demo's buyer, sellers, orders and chat messages (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="delete the demo orders (with their threads) first, so the demo starts over",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        outcome = demo_seed(reset=options["reset"])
        if options["verbosity"] < 1:
            return
        if options["reset"]:
            self.stdout.write(f"Deleted {outcome.orders_deleted} demo orders and their threads.")
        buyer, sellers = demo_data.BUYER.id, len(demo_data.SELLERS)
        self.stdout.write(
            f"Demo data: {len(demo_data.ORDERS)} orders of {buyer} from {sellers} sellers "
            f"({outcome.orders_created} created, {outcome.orders_kept} already there), "
            f"{len(demo_data.MESSAGES)} messages "
            f"({outcome.messages_created} created, {outcome.messages_kept} already there)."
        )
