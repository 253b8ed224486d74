"""The demo's people, orders and conversations, as plain data.

``manage.py seed_demo`` writes this into the database; tests, ``manage.py demo`` and the
web UI import the ids from here, so that there is one list of who and what the demo has.

Invariants:
* Everything is deterministic except ``ordered_at``, which is relative to the moment of
  seeding (``ordered_days_ago``) so that the demo always looks recent.
* One buyer, five sellers; every order is the buyer's, and every status occurs.
* Orders that left the seller (awaiting acceptance, completed) have a tracking number;
  the others have none.
* Message ``client_msg_id`` s are fixed (``demo-<order>-<n>``): seeding again finds them
  and stores nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chat_service.commerce.models import OrderStatus


@dataclass(frozen=True, slots=True)
class DemoUser:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class DemoOrder:
    order_id: str
    seller_id: str
    item_title: str
    properties: dict[str, Any]
    quantity: int
    amount: Decimal
    status: OrderStatus
    ordered_days_ago: float
    tracking_number: str = ""
    currency: str = "USD"

    @property
    def category(self) -> str:
        """The order system's category of the item: each demo seller sells one kind."""
        return SELLER_CATEGORIES[self.seller_id]


@dataclass(frozen=True, slots=True)
class DemoMessage:
    order_id: str
    author_id: str
    client_msg_id: str
    body: str


BUYER = DemoUser("buyer-ann", "Ann Buyer")
SELLERS = (
    DemoUser("seller-lumen", "Lumen Electronics"),
    DemoUser("seller-tessa", "Tessa Textiles"),
    DemoUser("seller-kite", "Kite Outdoor"),
    DemoUser("seller-mori", "Mori Home"),
    DemoUser("seller-vega", "Vega Audio"),
)
USERS: dict[str, DemoUser] = {user.id: user for user in (BUYER, *SELLERS)}

_LUMEN, _TESSA, _KITE, _MORI, _VEGA = (seller.id for seller in SELLERS)
SELLER_CATEGORIES = {_LUMEN: "electronics", _VEGA: "electronics", _TESSA: "apparel", _KITE: "outdoor", _MORI: "home"}
_S = OrderStatus

# One order per row: id, seller, title / properties, quantity, amount / status, days ago,
# tracking number.
# fmt: off
ORDERS = (
    DemoOrder("A10001", _LUMEN, "USB-C GaN Fast Charger 65W, 3 Ports",
              {"colour": "white", "plug": "US"}, 1, Decimal("24.99"),
              _S.AWAITING_PAYMENT, 0.2),
    DemoOrder("A10002", _TESSA, "Linen Blend Summer Shirt, Relaxed Fit",
              {"colour": "sage green", "size": "L"}, 2, Decimal("38.40"),
              _S.AWAITING_PAYMENT, 1.1),
    DemoOrder("A10003", _KITE, "Ultralight Camping Hammock with Tree Straps",
              {"colour": "forest green"}, 1, Decimal("29.90"),
              _S.AWAITING_PAYMENT, 2.4),
    DemoOrder("A10004", _VEGA, "Wireless Earbuds with Noise Cancelling, 30 h Battery",
              {"colour": "black"}, 1, Decimal("45.00"),
              _S.AWAITING_SHIPMENT, 3.2),
    DemoOrder("A10005", _MORI, "Ceramic Pour-Over Coffee Dripper Set",
              {"colour": "matte white", "size": "2 cups"}, 1, Decimal("19.80"),
              _S.AWAITING_SHIPMENT, 4.5),
    DemoOrder("A10006", _LUMEN, "Mechanical Keyboard, 75% Layout, Hot-Swap",
              {"colour": "grey", "switches": "brown"}, 1, Decimal("62.50"),
              _S.AWAITING_SHIPMENT, 5.3),
    DemoOrder("A10007", _TESSA, "Merino Wool Crew Socks, 3 Pairs",
              {"colour": "charcoal", "size": "EU 42-44"}, 3, Decimal("27.00"),
              _S.AWAITING_SHIPMENT, 6.7),
    DemoOrder("A10008", _KITE, "Waterproof Hiking Backpack 35 L",
              {"colour": "orange", "size": "35 L"}, 1, Decimal("54.99"),
              _S.AWAITING_ACCEPTANCE, 9.1, "LP00412873905126"),
    DemoOrder("A10009", _VEGA, "Bluetooth Bookshelf Speakers (Pair)",
              {"colour": "walnut"}, 1, Decimal("89.00"),
              _S.AWAITING_ACCEPTANCE, 11.6, "LP00412990137784"),
    DemoOrder("A10010", _MORI, "Bamboo Bath Towel Set, 4 Pieces",
              {"colour": "stone grey"}, 1, Decimal("33.60"),
              _S.AWAITING_ACCEPTANCE, 13.4, "LP00413125564019"),
    DemoOrder("A10011", _LUMEN, "LED Desk Lamp with Wireless Charger",
              {"colour": "black"}, 1, Decimal("31.25"),
              _S.AWAITING_ACCEPTANCE, 15.8, "LP00413302871143"),
    DemoOrder("A10012", _TESSA, "Cotton Hooded Sweatshirt",
              {"colour": "navy", "size": "M"}, 1, Decimal("41.90"),
              _S.COMPLETED, 20.2, "LP00409886120457"),
    DemoOrder("A10013", _KITE, "Carbon Trekking Poles, Pair",
              {"colour": "black", "length": "110-135 cm"}, 1, Decimal("48.75"),
              _S.COMPLETED, 24.5, "LP00409541278830"),
    DemoOrder("A10014", _VEGA, "Over-Ear Studio Headphones",
              {"colour": "silver"}, 1, Decimal("72.00"),
              _S.COMPLETED, 29.3, "LP00408977345216"),
    DemoOrder("A10015", _MORI, "Linen Duvet Cover",
              {"colour": "oat", "size": "Queen"}, 1, Decimal("64.30"),
              _S.COMPLETED, 35.6, "LP00408120659371"),
    DemoOrder("A10016", _LUMEN, "Portable Power Bank 20000 mAh",
              {"colour": "blue"}, 2, Decimal("43.98"),
              _S.COMPLETED, 42.1, "LP00407461838092"),
    DemoOrder("A10017", _KITE, "Insulated Steel Water Bottle 1 L",
              {"colour": "moss", "size": "1 L"}, 1, Decimal("18.50"),
              _S.CANCELLED, 7.4),
    DemoOrder("A10018", _TESSA, "Wide-Leg Denim Jeans",
              {"colour": "light wash", "size": "W30 L32"}, 1, Decimal("52.00"),
              _S.CANCELLED, 18.9),
    DemoOrder("A10019", _VEGA, "USB Audio Interface, 2 Inputs",
              {"colour": "black"}, 1, Decimal("99.00"),
              _S.CANCELLED, 47.2),
    DemoOrder("A10020", _MORI, "Hand-Thrown Stoneware Mug",
              {"colour": "speckled blue", "size": "350 ml"}, 4, Decimal("46.00"),
              _S.COMPLETED, 58.4, "LP00405233917648"),
)
# fmt: on
ORDER_IDS = tuple(order.order_id for order in ORDERS)
ORDERS_BY_ID: dict[str, DemoOrder] = {order.order_id: order for order in ORDERS}

# The thread `manage.py demo` points both terminals at.
CHAT_ORDER = ORDERS[0]


def _conversation(order_id: str, *lines: tuple[str, str]) -> tuple[DemoMessage, ...]:
    """``(author_id, body)`` lines of one thread, numbered into fixed client_msg_ids."""
    return tuple(
        DemoMessage(order_id, author_id, f"demo-{order_id}-{n}", body)
        for n, (author_id, body) in enumerate(lines, start=1)
    )


_ANN = BUYER.id

# Oldest first within a thread. Some threads end with the seller (the buyer has unread
# messages), some with the buyer (the seller has), so both consoles show unread badges.
MESSAGES: tuple[DemoMessage, ...] = (
    *_conversation(
        "A10001",
        (_ANN, "Hi! Would you take $22 if I pay today?"),
        (_LUMEN, "Hello Ann, I can do $23.50 including shipping."),
    ),
    *_conversation(
        "A10002",
        (_ANN, "Does the L fit true to size? I'm usually between M and L."),
    ),
    *_conversation(
        "A10004",
        (_ANN, "When will the earbuds ship?"),
        (_VEGA, "They leave our warehouse tomorrow morning."),
        (_ANN, "Great, thank you!"),
    ),
    *_conversation(
        "A10006",
        (_ANN, "Could you swap the brown switches for red ones?"),
        (_LUMEN, "Yes, no extra charge. I've updated the order note."),
    ),
    *_conversation(
        "A10008",
        (_KITE, "Shipped! Tracking number LP00412873905126."),
        (_ANN, "Thanks. The tracking hasn't updated for four days, is that normal?"),
        (_KITE, "It's in customs, that usually takes 3-5 days. I'll keep an eye on it."),
    ),
    *_conversation(
        "A10010",
        (_ANN, "The towels arrived but one is a darker grey than the others."),
        (_MORI, "Sorry about that! Could you send a photo?"),
    ),
    *_conversation(
        "A10012",
        (_ANN, "Received, it's lovely. Thanks!"),
        (_TESSA, "Glad you like it! Enjoy."),
    ),
    *_conversation(
        "A10017",
        (_ANN, "I ordered the wrong size by mistake, I'll cancel and reorder."),
        (_KITE, "No problem, see you on the next order."),
    ),
)
