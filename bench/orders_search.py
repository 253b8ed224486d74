"""Order search at a marketplace's volume: one million orders in PostgreSQL.

Run (from the repository root; PostgreSQL on 127.0.0.1:5432 as in tests/settings.py):

    .venv/bin/python bench/orders_search.py            # create + load bench_orders, then measure
    .venv/bin/python bench/orders_search.py --reuse    # measure again on the loaded database

It creates its own database (``bench_orders``; the name must start with "bench"), never
the dev or test one: set BENCH_DATABASE_URL to point elsewhere. Loading takes a few
minutes on two cores (COPY of 1M orders + 1M threads, then migration 0003 builds the
search indexes on the loaded table, CONCURRENTLY as in production); --reuse skips it.
``--orders`` loads fewer for a quick try.

What it measures: the latency of one page (20 orders) of the Manage Orders list, through
the real selector (chat_service.commerce.selectors.orders_search, items and allowed actions
included) and, for the indexed side, also through the HTTP view (Django's test client:
auth, parsing, JSON). Each scenario (a tab, a title or supplier substring, a date range, a
tracking number, the next and previous page by cursor, ...) runs for random users of three
kinds: typical buyers (~45 orders), heavy buyers (2,000-10,000 orders) and sellers (up to
~80,000). The same requests then run against baselines in the same run, in a transaction
that is rolled back: "before 0003" drops the indexes migration 0003 adds (what the tables
had before), "no index" also drops every other index on orders but the primary key. It
prints p50/p99/max in milliseconds side by side, with the p99 ratio, and the p99 over all
filtered pages per kind of user. Bounded in time (``--seconds``, default 420): each row
stops at its share of the budget. Target (issue 7): p99 <= 20 ms per page.

Two cores shared with other work inflate every figure; the database's own execution time
of a page's queries is mostly well under a millisecond (``--explain`` prints plans).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_orders"

# --- data shape ----------------------------------------------------------------------------------
BUYERS = 20_000
HEAVY_BUYERS = 20  # with 2,000-10,000 orders each
SELLERS = 2_000
YEARS = 3
WORDS_ADJ = (
    "Wireless",
    "Portable",
    "Mini",
    "Smart",
    "Waterproof",
    "Magnetic",
    "Vintage",
    "Foldable",
    "Rechargeable",
    "Stainless",
    "Bamboo",
    "Silicone",
    "Leather",
    "Cotton",
    "Ceramic",
    "Ergonomic",
    "Adjustable",
    "Heavy Duty",
    "Ultra Thin",
    "LED",
    "Solar",
    "Bluetooth",
    "Handmade",
    "Retro",
    "Anti-slip",
    "Quick Dry",
    "Thermal",
    "Compact",
    "Luxury",
    "Universal",
)
WORDS_PRODUCT = (
    "Earbuds",
    "Phone Case",
    "Charging Cable",
    "Desk Lamp",
    "Backpack",
    "Water Bottle",
    "Watch Band",
    "Keyboard",
    "Mouse Pad",
    "Sunglasses",
    "Wallet",
    "Yoga Mat",
    "Coffee Grinder",
    "Tea Set",
    "Hair Clipper",
    "Power Bank",
    "Camping Tent",
    "Fishing Reel",
    "Drone",
    "Tripod",
    "Speaker",
    "Smartwatch",
    "Sneakers",
    "Hoodie",
    "Dress",
    "Jeans",
    "Necklace",
    "Ring",
    "Bracelet",
    "Earrings",
    "Curtains",
    "Bed Sheets",
    "Pillow",
    "Rug",
    "Planter",
    "Garden Hose",
    "Drill Bits",
    "Screwdriver Set",
    "Bike Light",
    "Helmet",
    "Car Charger",
    "Dash Cam",
    "Tablet Stand",
    "Laptop Sleeve",
    "Router",
    "USB Hub",
    "Microphone",
    "Webcam",
    "Ring Light",
    "Toy Blocks",
)
WORDS_DETAIL = (
    "for iPhone 15",
    "for Samsung",
    "2 Pack",
    "Set of 4",
    "Black",
    "White",
    "Rose Gold",
    "Navy Blue",
    "XL",
    "Large",
    "Kids",
    "Women",
    "Men",
    "Outdoor",
    "Kitchen",
    "Office",
    "Travel",
    "Gift Box",
    "USB-C",
    "Type-C",
    "5000mAh",
    "20000mAh",
    "1080P",
    "4K",
    "Noise Cancelling",
    "with Stand",
)
CITIES = (
    "Shenzhen",
    "Guangzhou",
    "Yiwu",
    "Ningbo",
    "Hangzhou",
    "Dongguan",
    "Xiamen",
    "Suzhou",
    "Istanbul",
    "Lodz",
    "Porto",
    "Valencia",
    "Izmir",
    "Bursa",
    "Hanoi",
    "Bangkok",
    "Jakarta",
    "Manila",
)
SHOP_WORDS = (
    "Bright",
    "Golden",
    "Happy",
    "Star",
    "Ocean",
    "Lucky",
    "Prime",
    "Smart",
    "Green",
    "Dragon",
    "Phoenix",
    "Sunny",
    "Silver",
    "Blue Sky",
    "Maple",
    "Unicorn",
    "Rainbow",
    "Eagle",
)
SHOP_KIND = (
    "Electronics",
    "Lighting",
    "Trading",
    "Apparel",
    "Home",
    "Outdoor",
    "Jewelry",
    "Tools",
    "Toys",
    "Digital",
    "Fashion",
    "Sports",
)
SUFFIX = ("Co., Ltd.", "Store", "Official Store", "Factory", "Shop", "Flagship Store")
TRACKING_PREFIX = ("LP", "YT", "UB", "CNE", "RR", "LX")
STATUS_RECENT = (
    ("awaiting_payment", 8),
    ("awaiting_shipment", 20),
    ("awaiting_acceptance", 30),
    ("completed", 32),
    ("cancelled", 10),
)
STATUS_OLD = (("completed", 88), ("cancelled", 12))
REASONS = ("not_as_described", "wrong_colour", "wrong_size", "works_poorly", "low_quality", "not_received")


def main() -> None:
    args = _arguments()
    url = _bench_url(args)
    _configure_django(url)
    import django

    if not args.reuse:
        _recreate_database(url)
    django.setup()
    from django.conf import settings

    settings.DEBUG = False
    started = time.monotonic()
    if args.reuse:
        meta = _reuse(url)
    else:
        meta = _load(args)
    print(
        f"ready in {time.monotonic() - started:.0f} s: {meta['orders']:,} orders, {meta['disputes']:,} disputes, "
        f"{meta['offers']:,} live offers",
        flush=True,
    )
    if args.explain:
        _explain(meta, random.Random(args.seed))
    _measure(args, meta)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", action="store_true", help="use the already loaded database")
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders to load (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=150, help="requests per scenario and user kind")
    parser.add_argument("--naive-requests", type=int, default=8, help="the same for the no-index baseline")
    parser.add_argument("--seconds", type=float, default=420, help="time budget of the measurements")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="print the plans of a few typical queries")
    parser.add_argument("--skip-naive", action="store_true", help="skip the no-index baseline")
    return parser.parse_args()


def _bench_url(args: argparse.Namespace) -> str:
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    name = urlparse(url).path.lstrip("/")
    if not name.startswith("bench"):
        sys.exit(f"refusing to use database {name!r}: the bench database's name must start with 'bench'")
    return url


def _configure_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)  # pushes go nowhere; the bench only reads
    # Local use: development secrets are fine. DEBUG goes off again after setup (see main),
    # or every query would be kept in memory and timed twice.
    os.environ["DEBUG"] = "1"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "chat_service.settings"


def _recreate_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


# --- loading --------------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    rng = random.Random(args.seed)
    t = time.monotonic()
    # Everything but 0003 first: the search indexes are built on the loaded table, as
    # they would be on a live marketplace's.
    call_command("migrate", "orders_bridge", "0002", verbosity=0)
    call_command("migrate", "chat_service", verbosity=0)
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("SET synchronous_commit = off")
    meta = _copy_rows(raw, rng, args.orders)
    print(f"  loaded rows in {time.monotonic() - t:.0f} s", flush=True)
    t = time.monotonic()
    raw.execute("SET maintenance_work_mem = '256MB'")
    call_command("migrate", verbosity=0)  # 0003 and whatever else is new
    meta["index_build_s"] = round(time.monotonic() - t, 1)
    print(f"  built the search indexes (migration 0003, concurrently) in {meta['index_build_s']:.0f} s", flush=True)
    t = time.monotonic()
    raw.execute("VACUUM ANALYZE orders_bridge_order")
    raw.execute("VACUUM ANALYZE chat_service_thread")
    raw.execute("VACUUM ANALYZE orders_bridge_dispute")
    raw.execute("VACUUM ANALYZE orders_bridge_offer")
    print(f"  vacuum analyze in {time.monotonic() - t:.0f} s", flush=True)
    raw.execute("CREATE TABLE bench_meta (value jsonb NOT NULL)")
    raw.execute("INSERT INTO bench_meta (value) VALUES (%s)", [json.dumps(meta)])
    return meta


def _reuse(url: str) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)  # picks up new migrations; a no-op otherwise
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT value FROM bench_meta")
            row = cursor.fetchone()
    except Exception:  # noqa: BLE001
        row = None
    if row is None:
        sys.exit(f"{url} has no loaded bench data: run without --reuse first")
    return row[0] if isinstance(row[0], dict) else json.loads(row[0])


def _copy_rows(raw: Any, rng: random.Random, total: int) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    heavy_sizes = [rng.randint(2_000, 10_000) for _ in range(HEAVY_BUYERS)]
    scale = min(1.0, total / 1_000_000)
    heavy_sizes = [max(50, int(s * scale)) for s in heavy_sizes]
    heavy = [f"B{i:07d}" for i in range(HEAVY_BUYERS)]
    normal = [f"B{i:07d}" for i in range(HEAVY_BUYERS, BUYERS)]
    buyers = [b for b, n in zip(heavy, heavy_sizes, strict=True) for _ in range(n)]
    buyers += rng.choices(normal, k=max(0, total - len(buyers)))
    buyers = buyers[:total]
    rng.shuffle(buyers)
    sellers = [f"S{i:05d}" for i in range(SELLERS)]
    seller_weights = [1 / (rank + 1) ** 0.9 for rank in range(SELLERS)]
    seller_of = rng.choices(sellers, weights=seller_weights, k=total)
    shop = {
        s: f"{rng.choice(CITIES)} {rng.choice(SHOP_WORDS)} {rng.choice(SHOP_KIND)} {rng.choice(SUFFIX)}"
        for s in sellers
    }
    # Times: over YEARS years, denser towards now; ascending, so ids grow with time.
    span = YEARS * 365 * 86_400
    ages = sorted((span * rng.random() ** 1.6 for _ in range(total)), reverse=True)

    order_cols = (
        "order_id",
        "buyer_id",
        "seller_id",
        "supplier_name",
        "item_title",
        "properties",
        "quantity",
        "amount",
        "currency",
        "status",
        "tracking_number",
        "ordered_at",
        "version",
        "updated_at",
        "completed_at",
        "receipt_confirmed_at",
        "feedback_rating",
        "feedback_comment",
        "feedback_at",
    )
    thread_cols = (
        "order_id",
        "buyer_id",
        "seller_id",
        "last_seq",
        "buyer_read_seq",
        "seller_read_seq",
        "buyer_unread",
        "seller_unread",
        "last_event_at",
        "created_at",
    )
    dispute_cols = (
        "order_id",
        "status",
        "reason",
        "details",
        "refund_amount",
        "counter_amount",
        "agreed_amount",
        "currency",
        "return_item",
        "seller_note",
        "return_tracking_number",
        "decision_note",
        "respond_by",
        "reminded_at",
        "opened_at",
        "closed_at",
        "updated_at",
    )
    offer_cols = (
        "order_id",
        "status",
        "price",
        "currency",
        "previous_amount",
        "request_note",
        "note",
        "requested_at",
        "made_at",
        "expires_at",
        "closed_at",
        "created_at",
        "updated_at",
    )
    _check_columns(raw, "orders_bridge_order", order_cols)
    threads: list[tuple[Any, ...]] = []
    disputes: list[tuple[Any, ...]] = []
    offers: list[tuple[Any, ...]] = []
    recent_statuses, recent_w = zip(*STATUS_RECENT, strict=True)
    old_statuses, old_w = zip(*STATUS_OLD, strict=True)
    colours = ("black", "white", "red", "blue", "green", "pink")
    sizes = ("S", "M", "L", "XL")
    rand = rng.random
    with raw.cursor() as cursor, cursor.copy(f"COPY orders_bridge_order ({', '.join(order_cols)}) FROM STDIN") as copy:
        for n in range(total):
            age = ages[n]
            at = now - timedelta(seconds=age, microseconds=rng.randrange(1_000_000))
            recent = age < 45 * 86_400
            status = rng.choices(recent_statuses, recent_w)[0] if recent else rng.choices(old_statuses, old_w)[0]
            order_id = f"O{n + 1:010d}"
            buyer, seller = buyers[n], seller_of[n]
            amount = round(1 + rand() * rand() * 400, 2)
            shipped = status in ("awaiting_acceptance", "completed")
            tracking = f"{rng.choice(TRACKING_PREFIX)}{n + 1:011d}CN" if shipped else ""
            completed_at = at + timedelta(days=8 + 10 * rand()) if status == "completed" else None
            feedback = status == "completed" and rand() < 0.4
            title = f"{rng.choice(WORDS_ADJ)} {rng.choice(WORDS_PRODUCT)} {rng.choice(WORDS_DETAIL)}"
            properties = f'{{"colour": "{rng.choice(colours)}", "size": "{rng.choice(sizes)}"}}'
            copy.write_row(
                (
                    order_id,
                    buyer,
                    seller,
                    shop[seller],
                    title,
                    properties,
                    1 + int(rand() ** 4 * 5),
                    f"{amount:.2f}",
                    "USD",
                    status,
                    tracking,
                    at,
                    1 + int(shipped) * 2,
                    at,
                    completed_at,
                    completed_at,
                    rng.randint(3, 5) if feedback else None,
                    "",
                    completed_at if feedback else None,
                )
            )
            # Threads: most are quiet; a few per user have unread events, more so recent ones.
            unread_p = 0.15 if recent else 0.01
            last_seq = rng.randint(1, 12) if recent or rand() < 0.3 else 0
            buyer_unread = rng.randint(1, min(3, last_seq)) if last_seq and rand() < unread_p else 0
            seller_unread = rng.randint(1, min(3, last_seq)) if last_seq and rand() < unread_p * 1.5 else 0
            threads.append(
                (
                    order_id,
                    buyer,
                    seller,
                    last_seq,
                    last_seq - buyer_unread,
                    last_seq - seller_unread,
                    buyer_unread,
                    seller_unread,
                    at + timedelta(hours=1) if last_seq else None,
                    at,
                )
            )
            if (status == "awaiting_acceptance" and rand() < 0.05) or (status == "completed" and rand() < 0.01):
                is_open = status == "awaiting_acceptance" or rand() < 0.2
                d_status = (
                    rng.choice(("open", "open", "countered", "rejected", "escalated"))
                    if is_open
                    else rng.choice(("resolved", "cancelled"))
                )
                opened = at + timedelta(days=10)
                disputes.append(
                    (
                        order_id,
                        d_status,
                        rng.choice(REASONS),
                        "",
                        f"{amount / 2:.2f}",
                        None,
                        None,
                        "USD",
                        rand() < 0.3,
                        "",
                        "",
                        "",
                        opened + timedelta(days=5) if d_status == "open" else None,
                        None,
                        opened,
                        None if is_open else opened + timedelta(days=7),
                        opened,
                    )
                )
            if status == "awaiting_payment" and rand() < 0.2:
                made = at + timedelta(hours=2)
                offers.append(
                    (
                        order_id,
                        "open",
                        f"{amount * 0.9:.2f}",
                        "USD",
                        f"{amount:.2f}",
                        "",
                        "",
                        None,
                        made,
                        made + timedelta(hours=48),
                        None,
                        made,
                        made,
                    )
                )
    _copy(raw, "chat_service_thread", thread_cols, threads)
    _copy(raw, "orders_bridge_dispute", dispute_cols, disputes)
    _copy(raw, "orders_bridge_offer", offer_cols, offers)
    return {
        "orders": total,
        "disputes": len(disputes),
        "offers": len(offers),
        "heavy_buyers": heavy,
        "normal_buyers": [normal[0], normal[-1]],
        "sellers": [sellers[0], sellers[-1]],
        "loaded_at": now.isoformat(),
    }


def _check_columns(raw: Any, table: str, known: tuple[str, ...]) -> None:
    rows = raw.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND is_nullable = 'NO' "
        "AND column_default IS NULL AND identity_generation IS NULL",
        [table],
    ).fetchall()
    missing = sorted({r[0] for r in rows} - set(known))
    if missing:
        sys.exit(f"{table} has required columns this bench does not fill: {', '.join(missing)}")


def _copy(raw: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    _check_columns(raw, table, columns)
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


# --- requests ------------------------------------------------------------------------------------------


@dataclass
class Request:
    user_id: str
    params: dict[str, Any]  # orders_search keywords (parsed values)
    query: dict[str, str]  # the same as an HTTP query string


@dataclass
class Row:
    scenario: str
    kind: str
    requests: list[Request]
    call: str = "search"  # search | counts | disputes
    results: dict[str, list[float]] = field(default_factory=dict)


def _users(meta: dict[str, Any], rng: random.Random, kind: str, k: int) -> list[str]:
    if kind == "heavy":
        return [rng.choice(meta["heavy_buyers"]) for _ in range(k)]
    if kind == "typical":
        lo, hi = (int(x[1:]) for x in meta["normal_buyers"])
        return [f"B{rng.randint(lo, hi):07d}" for _ in range(k)]
    lo, hi = (int(x[1:]) for x in meta["sellers"])
    return [f"S{rng.randint(lo, hi):05d}" for _ in range(k)]


def _samples(user_id: str, rng: random.Random) -> dict[str, Any] | None:
    """A few facts about one of the user's orders, to search for it as a user would."""
    from django.db.models import Q

    from chat_service.commerce.models import Order

    rows = list(
        Order.objects.filter(Q(buyer_id=user_id) | Q(seller_id=user_id))
        .order_by("-ordered_at")
        .values("order_id", "item_title", "supplier_name", "tracking_number", "ordered_at")[:300]
    )
    if len(rows) <= 25:  # too few for a second page
        return None
    tracked = [r for r in rows if r["tracking_number"]]
    if not tracked:
        return None
    pick, with_tracking = rng.choice(rows), rng.choice(tracked)
    product = next(p for p in WORDS_PRODUCT if p in pick["item_title"])
    return {
        "order_id": pick["order_id"],
        "q": product.split()[-1].lower()[:6],  # "earbud", "lamp", "cable" ...
        "supplier": pick["supplier_name"].split()[1].lower(),  # a shop word: "bright", "golden" ...
        "tracking": with_tracking["tracking_number"].lower(),
        "day": pick["ordered_at"].date(),
    }


def _build_rows(meta: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    from chat_service.commerce.selectors import orders_search

    rng = random.Random(args.seed)
    n = args.requests
    rows: list[Row] = []
    for kind in ("typical", "heavy", "seller"):
        picked: list[tuple[str, dict[str, Any]]] = []
        for user_id in _users(meta, rng, kind, n * 3):
            facts = _samples(user_id, rng)
            if facts is not None:
                picked.append((user_id, facts))
            if len(picked) == n:
                break
        scenarios: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
            "all orders, first page": lambda u, f: {},
            "tab awaiting_shipment": lambda u, f: {"status": "awaiting_shipment"},
            "tab completed": lambda u, f: {"status": "completed"},
            "tab unread": lambda u, f: {"status": "unread"},
            "tab disputes": lambda u, f: {"status": "disputes"},
            "q title substring": lambda u, f: {"q": f["q"]},
            "q matching nothing": lambda u, f: {"q": "xylophone"},
            "supplier substring": lambda u, f: {"supplier": f["supplier"]},
            "supplier matching nothing": lambda u, f: {"supplier": "zanzibar"},
            "date range 30 days": lambda u, f: {
                "date_from": f["day"] - timedelta(days=15),
                "date_to": f["day"] + timedelta(days=15),
            },
            "tracking number": lambda u, f: {"tracking": f["tracking"]},
            "order id": lambda u, f: {"order_id": f["order_id"]},
            "completed + q + 1 year": lambda u, f: {
                "status": "completed",
                "q": f["q"],
                "date_from": f["day"] - timedelta(days=365),
            },
        }
        for name, make in scenarios.items():
            rows.append(Row(name, kind, [_request(u, make(u, f)) for u, f in picked]))
        # Cursors: page 2 by `next`, and back to page 1 by page 2's `prev`.
        second, back = [], []
        for user_id, _ in picked:
            first = orders_search(user_id=user_id, limit=20)
            if first.next is None:
                continue
            second.append(_request(user_id, {"cursor": first.next}))
            page2 = orders_search(user_id=user_id, cursor=_cursor(first.next), limit=20)
            if page2.prev:
                back.append(_request(user_id, {"cursor": page2.prev}))
        rows.append(Row("next page (cursor)", kind, second))
        rows.append(Row("prev page (cursor)", kind, back))
        rows.append(Row("tab counts", kind, [_request(u, {}) for u, _ in picked], call="counts"))
        rows.append(Row("disputes list", kind, [_request(u, {}) for u, _ in picked], call="disputes"))
    return rows


def _cursor(token: str) -> Any:
    from chat_service.commerce.selectors import ORDERS, Cursor

    return Cursor.decode(token, kind=ORDERS)


def _request(user_id: str, params: dict[str, Any]) -> Request:
    query = {k: (v.isoformat() if isinstance(v, date) else str(v)) for k, v in params.items()}
    parsed = {k: (_cursor(v) if k == "cursor" else v) for k, v in params.items()}
    return Request(user_id, parsed, query)


# --- measuring ------------------------------------------------------------------------------------------


def _call(row: Row, request: Request) -> None:
    from chat_service.commerce import selectors

    if row.call == "counts":
        selectors.orders_counts(user_id=request.user_id)
    elif row.call == "disputes":
        selectors.disputes_for_user(user_id=request.user_id, limit=20)
    else:
        selectors.orders_search(user_id=request.user_id, limit=20, **request.params)


def _http(row: Row, request: Request, client: Any, tokens: dict[str, str]) -> None:
    path = {"counts": "/api/orders/counts/", "disputes": "/api/disputes/"}.get(row.call, "/api/orders/")
    token = tokens.get(request.user_id)
    if token is None:
        from chat_service.transport.identity import token_mint

        token = tokens[request.user_id] = token_mint(user_id=request.user_id, name=request.user_id, ttl_s=86_400)
    query = "?" + urlencode(request.query) if request.query and row.call == "search" else ""
    response = client.get(path + query, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")
    if response.status_code != 200:
        raise RuntimeError(f"{path}{query} answered {response.status_code}: {response.content[:200]!r}")


def _timed(requests: list[Request], run: Callable[[Request], None], deadline: float, warm: int) -> list[float]:
    for request in requests[:warm]:  # warm the caches this row touches
        run(request)
    timings = []
    for request in requests:
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        run(request)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def _dropped(names: tuple[str, ...]) -> Iterator[None]:
    """Inside a transaction that is rolled back: these indexes are gone for its duration."""
    from django.db import connection, transaction

    with transaction.atomic():
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f"DROP INDEX {name}")
        yield
        transaction.set_rollback(True)


def _measure(args: argparse.Namespace, meta: dict[str, Any]) -> None:
    import contextlib

    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings

    t = time.monotonic()
    rows = _build_rows(meta, args)
    print(
        f"prepared {sum(len(r.requests) for r in rows):,} requests in {len(rows)} rows ({time.monotonic() - t:.0f} s)",
        flush=True,
    )
    migrations = "chat_service.commerce.migrations"
    search_indexes = {
        *importlib.import_module(f"{migrations}.0003_order_search_indexes").POSTGRESQL,
        *importlib.import_module(f"{migrations}.0004_order_search_prefix_indexes").CREATE,
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, indexname FROM pg_indexes"
            " WHERE tablename IN ('orders_bridge_order', 'chat_service_thread') AND indexname NOT LIKE '%%pkey'"
        )
        present = cursor.fetchall()
    # The search indexes (0003 and 0004, on orders and threads) that this database has:
    # "before 0003" hides them; "no index" hides every index on orders as well.
    added = tuple(sorted(search_indexes & {name for _, name in present}))
    every_index = tuple(sorted(set(added) | {name for table, name in present if table == "orders_bridge_order"}))
    sides: list[tuple[str, str, tuple[str, ...], int]] = [
        ("indexed", "search", (), args.requests),
        ("http", "http", (), args.requests),
        ("before 0003", "search", added, args.requests),
    ]
    if not args.skip_naive:
        sides.append(("no index", "search", every_index, args.naive_requests))
    weights = {"indexed": 1.0, "http": 1.2, "before 0003": 1.3, "no index": 3.0}
    per_row = args.seconds / len(rows) / sum(weights[s[0]] for s in sides)
    client, tokens = Client(), {}
    t = time.monotonic()
    # Row by row, every side in turn: a burst of other work on the machine then hits
    # the sides of a row alike instead of one whole side.
    with override_settings(ROOT_URLCONF="chat_service.transport.http.order_urls"):
        for n, row in enumerate(rows, start=1):
            for side, how, drop, count in sides:
                deadline = time.monotonic() + per_row * weights[side]
                if how == "http":

                    def run(request: Request, row: Row = row) -> None:
                        _http(row, request, client, tokens)
                else:

                    def run(request: Request, row: Row = row) -> None:
                        _call(row, request)

                context = contextlib.contextmanager(_dropped)(drop) if drop else contextlib.nullcontext()
                warm = 1 if drop == every_index else 3  # a scan of the whole table warms enough
                with context:
                    row.results[side] = _timed(row.requests[:count], run, deadline, warm)
            if n % 10 == 0 or n == len(rows):
                print(f"  measured {n}/{len(rows)} rows in {time.monotonic() - t:.0f} s", flush=True)
    _report(rows, [s[0] for s in sides], meta)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else float("nan")


def _report(rows: list[Row], sides: list[str], meta: dict[str, Any]) -> None:
    print()
    print(
        f"Order search, {meta['orders']:,} orders, PostgreSQL; latency of one page of 20 in ms (n = requests measured)"
    )
    head = (
        f"{'scenario':<26} {'users':<8} | {'indexed p50':>11} {'p99':>6} {'max':>6} {'n':>4} | "
        f"{'http p50':>8} {'p99':>6} | {'before-0003 p50':>15} {'p99':>6} {'x p99':>6}"
    )
    if "no index" in sides:
        head += f" | {'no-index p50':>12} {'p99':>7} {'x p99':>6} {'n':>3}"
    print(head)
    print("-" * len(head))
    for row in rows:
        r = row.results
        idx, http, pre = r.get("indexed", []), r.get("http", []), r.get("before 0003", [])
        line = (
            f"{row.scenario:<26} {row.kind:<8} | {_pct(idx, 0.5):>11.2f} {_pct(idx, 0.99):>6.2f} "
            f"{max(idx, default=float('nan')):>6.2f} {len(idx):>4} | {_pct(http, 0.5):>8.2f} "
            f"{_pct(http, 0.99):>6.2f} | {_pct(pre, 0.5):>15.2f} {_pct(pre, 0.99):>6.2f} "
            f"{_pct(pre, 0.99) / _pct(idx, 0.99):>5.1f}x"
        )
        if "no index" in sides:
            naive = r.get("no index", [])
            line += (
                f" | {_pct(naive, 0.5):>12.1f} {_pct(naive, 0.99):>7.1f} "
                f"{_pct(naive, 0.99) / _pct(idx, 0.99):>5.0f}x {len(naive):>3}"
            )
        print(line)
    print("-" * len(head))
    groups = {
        "buyers (Manage Orders)": [r for r in rows if r.call == "search" and r.kind != "seller"],
        "sellers": [r for r in rows if r.call == "search" and r.kind == "seller"],
        "everyone": [r for r in rows if r.call == "search"],
    }
    for side in sides:
        for name, group in groups.items():
            every = [v for row in group for v in row.results.get(side, [])]
            print(
                f"filtered pages, {side:<11} {name:<22}: p50 {_pct(every, 0.5):7.2f}  p99 {_pct(every, 0.99):7.2f}  "
                f"max {max(every, default=float('nan')):7.2f}  (n = {len(every):,})"
            )
    for name, group in groups.items():
        every = [v for row in group for v in row.results.get("indexed", [])]
        verdict = "meets" if _pct(every, 0.99) <= 20 else "MISSES"
        print(f"target p99 <= 20 ms per page (issue 7), {name}: {verdict} ({_pct(every, 0.99):.2f} ms, selector)")
    if meta.get("index_build_s"):
        print(f"migration 0003 on the loaded table: {meta['index_build_s']} s")


def _explain(meta: dict[str, Any], rng: random.Random) -> None:
    """Print the plans of a few typical queries (the first per-role query of a page)."""
    from django.db import connection

    from chat_service.commerce.selectors import orders_search

    user = meta["heavy_buyers"][0]
    facts = _samples(user, rng) or {}
    for params in (
        {},
        {"status": "awaiting_shipment"},
        {"q": "xylophone"},
        {"tracking": facts.get("tracking")},
        {"status": "unread"},
        {"status": "disputes"},
        {"supplier": "golden"},
    ):
        with connection.execute_wrapper(_explainer(params)):
            orders_search(user_id=user, limit=20, **params)


def _explainer(params: dict[str, Any]) -> Callable[..., Any]:
    shown = []

    def wrapper(execute: Callable[..., Any], sql: str, sql_params: Any, many: bool, context: dict[str, Any]) -> Any:
        if not shown and sql.startswith("SELECT") and "orders_bridge_order" in sql:
            shown.append(True)
            cursor = context["cursor"].cursor  # the driver's cursor: no wrappers again
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, sql_params)
            print(f"\n-- {params or 'no filter'}\n" + "\n".join(r[0] for r in cursor.fetchall()))
        return execute(sql, sql_params, many, context)

    return wrapper


if __name__ == "__main__":
    main()
