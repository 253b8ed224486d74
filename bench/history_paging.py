"""History paging in a long thread: one thread of 100,000 events in PostgreSQL (S4b).

Run (from the repository root; PostgreSQL on 127.0.0.1:5432 as in tests/settings.py):

    .venv/bin/python bench/history_paging.py            # create + load bench_history, then measure
    .venv/bin/python bench/history_paging.py --reuse    # measure again on the loaded database

It creates its own database (``bench_history``; the name must start with "bench"), never
the dev or test one: set BENCH_DATABASE_URL to point elsewhere. It refuses to recreate a
database that holds another bench's data (orders_search.py reads the same variable).
Loading takes well under a minute: COPY of one order thread with 100,000 events plus
1,000 other threads of 20-180 events each, interleaved in time as a live service writes
them, so the big thread's rows are spread over the table. Events are mostly messages
(one phrase to a long paragraph, a client_msg_id each) with some order, offer, dispute
and system events whose data is built by the real wire functions. --reuse skips it;
``--events`` and ``--other-threads`` load fewer for a quick try.

What it measures: the latency of reading one page of the big thread, at random
positions spread over the whole thread, through the real code:
  * the newest page and an older page by ``before_seq`` (selectors.events_before_seq; the
    page the browser asks for when the user scrolls up: 50 events, also the API default),
  * a newer page by ``after_seq`` (selectors.events_after_seq: catching up after a
    reconnect), also in the consumer's catch-up page of 200,
  * the same three 50-event pages through the HTTP view (GET /api/threads/<order>/events/,
    Django's test client with a real token: auth, thread lookup, JSON),
  * thread.join's snapshot (selectors.thread_join_snapshot with CHAT_JOIN_MAX_EVENTS, 500):
    the newest events, and the events after a random since_seq.
The same pages then run against baselines in the same run: "offset" reads the same page
as page k of the thread ordered by seq with OFFSET/LIMIT (what paging by page number
does; it checks first that both read the same events), "no index" runs the real selector
with the (thread, seq) unique index dropped, and "offset, no index" both. The drops
happen in a transaction that is rolled back. It prints p50/p99/max in milliseconds side
by side, with the p99 ratio to the indexed selector. Bounded in time (``--seconds``,
default 120): each row stops at its share of the budget. Target (S4b): p99 <= 20 ms per
page of 50. ``--explain`` prints the plans of a page at the middle of the thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.orders_search import (  # noqa: E402 - needs ROOT on the path
    _configure_django,
    _copy,
    _pct,
    _recreate_database,
    _reuse,
    _timed,
)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_history"
BENCH = "history_paging"  # in bench_meta: the data is this bench's

# --- data shape ----------------------------------------------------------------------------------
ORDER_ID = "H0000000000"  # the long thread
BUYER, SELLER = "B0000001", "S00001"
PAGE = 50  # the browser's page (order-chat.js asks before_seq=...&limit=50) and the API default
CATCH_UP_PAGE = 200  # chat_service.transport.socket.consumer.CATCH_UP_PAGE
SPAN = timedelta(days=2 * 365)  # the long thread's age
KINDS = (("message", 900), ("order", 30), ("offer", 40), ("dispute", 10), ("system", 20))  # per mille
PHRASES = (
    "Hello, is this item still available?",
    "Yes, it is in stock.",
    "Thank you!",
    "OK",
    "When will you ship my order?",
    "We ship within 48 hours after payment.",
    "Can you send it in the black colour instead of the white one?",
    "The tracking number does not work yet, it usually updates after two or three days.",
    "Could you give me a better price if I buy five of them?",
    "I have adjusted the price for you, please pay within 24 hours.",
    "The parcel arrived but the box was damaged, the item itself looks fine.",
    "Please check the size chart before ordering, our sizes run small.",
    "Does it come with a USB-C cable or do I need to buy one separately?",
    "It includes a 1 m braided USB-C cable and a quick start guide in English.",
    "My package has been stuck in customs for a week, what should I do?",
    "Sorry for the delay, the logistics company has a backlog because of the holidays.",
    "Received, everything works, five stars from me.",
    "Can you add a small gift box? It is a present for my sister.",
    "Of course, we will pack it as a gift and add a card.",
    "The left earbud does not charge, I tried two different cables.",
    "Please try to reset it: hold both buttons for ten seconds until the light flashes red.",
    "It worked, thanks a lot for the quick help!",
    "We will send you a replacement with the next shipment, no need to return the old one.",
    "Is the battery capacity really 20000mAh? Mine shows much less.",
    "Can you ship to a PO box in Lodz?",
    "We can, but delivery to PO boxes takes about five more days.",
    "Please confirm receipt when you get the parcel so that the order can be completed.",
    "I will leave feedback as soon as I have tested it properly.",
)
EVENT_BODIES = {
    "order": (
        "The seller shipped the order.",
        "The order was paid.",
        "The buyer confirmed receipt.",
        "The order was completed.",
        "The seller updated the tracking number.",
    ),
    "offer": (
        "The buyer asked for a better price.",
        "The seller offered a new price.",
        "The buyer accepted the offer.",
        "The offer expired.",
    ),
    "dispute": (
        "The buyer opened a dispute: item not as described.",
        "The seller proposed a partial refund.",
        "The dispute was resolved with a refund.",
    ),
    "system": (
        "Reminder: please confirm receipt within 5 days.",
        "The buyer's protection period ends soon.",
        "This conversation is monitored for your safety: never pay outside the marketplace.",
    ),
}


def main() -> None:
    args = _arguments()
    url = _bench_url()
    _configure_django(url)
    import django

    if not args.reuse:
        _refuse_foreign(url)
        _recreate_database(url)
    django.setup()
    from django.conf import settings

    settings.DEBUG = False
    started = time.monotonic()
    if args.reuse:
        meta = _reuse(url)
        if meta.get("bench") != BENCH:
            sys.exit(f"{url} holds another bench's data: run without --reuse against a database of its own")
    else:
        meta = _load(args)
    print(
        f"ready in {time.monotonic() - started:.0f} s: {meta['last_seq']:,} events in the thread, "
        f"{meta['events']:,} events in {meta['threads']:,} threads",
        flush=True,
    )
    if args.explain:
        _explain(meta)
    _measure(args, meta)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", action="store_true", help="use the already loaded database")
    parser.add_argument("--events", type=int, default=100_000, help="events in the long thread (default 100,000)")
    parser.add_argument("--other-threads", type=int, default=1_000, help="other threads, 20-180 events each")
    parser.add_argument("--requests", type=int, default=1_000, help="requests per scenario (indexed, http)")
    parser.add_argument("--naive-requests", type=int, default=200, help="the same for the baselines")
    parser.add_argument("--seconds", type=float, default=120, help="time budget of the measurements")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="print the plans of a page in the middle")
    args = parser.parse_args()
    if args.events < 2 * CATCH_UP_PAGE:
        parser.error(f"--events must be at least {2 * CATCH_UP_PAGE}")
    return args


def _bench_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    name = urlparse(url).path.lstrip("/")
    if not name.startswith("bench"):
        sys.exit(f"refusing to use database {name!r}: the bench database's name must start with 'bench'")
    return url


def _refuse_foreign(url: str) -> None:
    """Exit rather than drop a database loaded by another bench (a shared BENCH_DATABASE_URL)."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT value FROM bench_meta").fetchone()
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return  # no such database, or nothing loaded
    if row is not None and row[0].get("bench") != BENCH:
        sys.exit(f"refusing to recreate {url}: another bench loaded it; point BENCH_DATABASE_URL elsewhere")


# --- loading --------------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    rng = random.Random(args.seed)
    t = time.monotonic()
    call_command("migrate", verbosity=0)
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("SET synchronous_commit = off")
    meta = _copy_rows(raw, rng, args.events, args.other_threads)
    print(f"  loaded {meta['events']:,} events in {time.monotonic() - t:.0f} s", flush=True)
    t = time.monotonic()
    for table in ("orders_bridge_order", "chat_service_thread", "chat_service_event"):
        raw.execute(f"VACUUM ANALYZE {table}")
    print(f"  vacuum analyze in {time.monotonic() - t:.0f} s", flush=True)
    raw.execute("CREATE TABLE bench_meta (value jsonb NOT NULL)")
    raw.execute("INSERT INTO bench_meta (value) VALUES (%s)", [json.dumps(meta)])
    return meta


def _copy_rows(raw: Any, rng: random.Random, events: int, others: int) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - SPAN
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
    event_cols = ("thread_id", "seq", "kind", "author_id", "author_role", "body", "data", "client_msg_id", "created_at")
    # Threads: the long one (a trade relationship of two years), then short ones scattered
    # over the same two years, each a burst of a few days as most order chats are.
    threads = [(ORDER_ID, BUYER, SELLER, start, [start + SPAN * (i + rng.random()) / events for i in range(events)])]
    for n in range(1, others + 1):
        opened = start + (SPAN - timedelta(days=7)) * rng.random()
        times = sorted(opened + timedelta(days=7) * rng.random() for _ in range(rng.randint(20, 180)))
        threads.append((f"H{n:010d}", f"B{rng.randint(2, 20_000):07d}", f"S{rng.randint(2, 2_000):05d}", opened, times))
    orders = [
        (
            order_id,
            buyer,
            seller,
            "Shenzhen Golden Electronics Co., Ltd.",
            "Wireless Earbuds USB-C 2 Pack",
            '{"colour": "black", "size": "M"}',
            2,
            "39.80",
            "USD",
            "awaiting_acceptance",
            "LP00000000001CN",
            opened,
            3,
            opened,
            None,
            None,
            None,
            "",
            None,
        )
        for order_id, buyer, seller, opened, _ in threads
    ]
    _copy(raw, "orders_bridge_order", order_cols, orders)
    _copy(
        raw,
        "chat_service_thread",
        thread_cols,
        [
            (order_id, buyer, seller, len(times), len(times), len(times) - 1, 0, 1, times[-1], opened)
            for order_id, buyer, seller, opened, times in threads
        ],
    )
    data = _event_data(rng)
    kinds, weights = zip(*KINDS, strict=True)
    rows: list[tuple[Any, ...]] = []
    for order_id, buyer, seller, _, times in threads:
        speaker = (buyer, "buyer")
        for seq, at in enumerate(times, start=1):
            kind = rng.choices(kinds, weights)[0]
            if kind == "message":
                if rng.random() < 0.35:  # conversations come in runs of one party's messages
                    speaker = (seller, "seller") if speaker[1] == "buyer" else (buyer, "buyer")
                rows.append(
                    (
                        at,
                        order_id,
                        seq,
                        kind,
                        speaker[0],
                        speaker[1],
                        _message(rng),
                        "{}",
                        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        at,
                    )
                )
            else:
                author, role = (
                    (None, "system")
                    if kind in ("order", "system")
                    else rng.choice(((buyer, "buyer"), (seller, "seller")))
                )
                payload = rng.choice(data[kind]).replace(ORDER_ID, order_id) if kind in data else "{}"
                rows.append((at, order_id, seq, kind, author, role, rng.choice(EVENT_BODIES[kind]), payload, None, at))
    # In the table as a live service writes them: in time order, the threads interleaved.
    rows.sort(key=lambda row: row[0])
    _copy(raw, "chat_service_event", event_cols, [row[1:] for row in rows])
    return {
        "bench": BENCH,
        "thread": ORDER_ID,
        "buyer": BUYER,
        "seller": SELLER,
        "last_seq": events,
        "threads": len(threads),
        "events": len(rows),
        "loaded_at": now.isoformat(),
    }


def _message(rng: random.Random) -> str:
    """Mostly a phrase or two; now and then a long paragraph (max_body_chars is 4,000)."""
    roll = rng.random()
    count = 1 if roll < 0.7 else rng.randint(2, 4) if roll < 0.96 else rng.randint(8, 20)
    return " ".join(rng.choice(PHRASES) for _ in range(count))


def _event_data(rng: random.Random) -> dict[str, list[str]]:
    """A few ``data`` payloads per kind, as the bridge's services write them (real wire functions)."""
    from chat_service.commerce.models import Dispute, Offer, Order, OrderStatus
    from chat_service.protocol.commerce import dispute_wire, offer_wire, order_wire

    order = Order.objects.get(pk=ORDER_ID)
    at = order.ordered_at
    payloads: dict[str, list[str]] = {"order": [], "offer": [], "dispute": []}
    for n, status in enumerate(OrderStatus.values):
        order.status, order.version = status, n + 1
        if status == OrderStatus.COMPLETED:
            order.completed_at = order.receipt_confirmed_at = order.feedback_at = at + timedelta(days=12)
            order.feedback_rating, order.feedback_comment = 5, "Fast shipping, works as described."
        payloads["order"].append(json.dumps({"change": "status", "order": order_wire(order)}))
    for n, status in enumerate(("requested", "open", "accepted", "declined", "expired")):
        offer = Offer(
            pk=n + 1,
            order_id=ORDER_ID,
            status=status,
            price=Decimal("35.00"),
            currency="USD",
            previous_amount=Decimal("39.80"),
            request_note="Two more if the price is right?",
            note="Best I can do.",
            requested_at=at,
            made_at=at + timedelta(hours=3),
            expires_at=at + timedelta(hours=51),
            closed_at=None if status == "open" else at,
        )
        payloads["offer"].append(json.dumps({"change": status, "offer": offer_wire(offer)}))
    for n, status in enumerate(("open", "countered", "resolved")):
        dispute = Dispute(
            pk=n + 1,
            order_id=ORDER_ID,
            status=status,
            reason="not_as_described",
            details="The colour is different from the photos.",
            refund_amount=Decimal("19.90"),
            counter_amount=Decimal("10.00") if status != "open" else None,
            agreed_amount=Decimal("10.00") if status == "resolved" else None,
            currency="USD",
            return_item=rng.random() < 0.3,
            seller_note="We can refund half.",
            respond_by=at + timedelta(days=5),
            opened_at=at,
            closed_at=at + timedelta(days=3) if status == "resolved" else None,
        )
        payloads["dispute"].append(json.dumps({"change": status, "dispute": dispute_wire(dispute)}))
    return payloads


# --- requests ------------------------------------------------------------------------------------------


@dataclass
class Page:
    user_id: str
    before_seq: int | None = None
    after_seq: int | None = None
    since_seq: int | None = None  # thread.join


@dataclass
class Row:
    scenario: str
    call: str  # events (the selectors) | join (thread_join_snapshot)
    limit: int
    requests: list[Page]
    http: bool = False
    results: dict[str, list[float]] = field(default_factory=dict)


def _build_rows(meta: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    from django.conf import settings

    rng = random.Random(args.seed)
    last, n = meta["last_seq"], args.requests
    join = settings.CHAT["JOIN_MAX_EVENTS"]

    def user() -> str:
        return rng.choice((meta["buyer"], meta["seller"]))

    return [
        Row("newest page", "events", PAGE, [Page(user()) for _ in range(n)], http=True),
        Row(
            "older page (before_seq)",
            "events",
            PAGE,
            [Page(user(), before_seq=rng.randint(PAGE + 1, last + 1)) for _ in range(n)],
            http=True,
        ),
        Row(
            "newer page (after_seq)",
            "events",
            PAGE,
            [Page(user(), after_seq=rng.randint(0, last - PAGE)) for _ in range(n)],
            http=True,
        ),
        Row(
            "catch-up page (after_seq)",
            "events",
            CATCH_UP_PAGE,
            [Page(user(), after_seq=rng.randint(0, last - CATCH_UP_PAGE)) for _ in range(n)],
        ),
        Row("thread.join (newest)", "join", join, [Page(user()) for _ in range(n)]),
        Row(
            "thread.join (since_seq)",
            "join",
            join,
            [Page(user(), since_seq=rng.randint(0, last - 1)) for _ in range(n)],
        ),
    ]


# --- measuring ------------------------------------------------------------------------------------------


def _call(row: Row, page: Page, thread_id: str) -> list[Any]:
    from chat_service.threads import selectors

    if row.call == "join":
        return selectors.thread_join_snapshot(
            order_id=thread_id, user_id=page.user_id, since_seq=page.since_seq, limit=row.limit
        ).events
    if page.after_seq is not None:
        return selectors.events_after_seq(thread_id=thread_id, after_seq=page.after_seq, limit=row.limit)
    return selectors.events_before_seq(thread_id=thread_id, before_seq=page.before_seq, limit=row.limit)


def _offset(row: Row, page: Page, thread_id: str, last_seq: int) -> list[Any]:
    """The same page as page k of the thread by seq, with OFFSET/LIMIT (seqs have no gaps)."""
    from chat_service.threads.models import Event
    from chat_service.threads.selectors import thread_for_participant

    if row.call == "join":  # the snapshot's own read of the thread, then its events
        thread, _ = thread_for_participant(order_id=thread_id, user_id=page.user_id, with_order=True)
        last_seq = thread.last_seq
    events = Event.objects.filter(thread_id=thread_id)
    forward = page.after_seq if page.after_seq is not None else page.since_seq
    if forward is not None:
        return list(events.order_by("seq")[forward : forward + row.limit])
    skip = 0 if page.before_seq is None else last_seq + 1 - page.before_seq
    return list(reversed(events.order_by("-seq")[skip : skip + row.limit]))


def _http(row: Row, page: Page, client: Any, tokens: dict[str, str], thread_id: str) -> None:
    token = tokens.get(page.user_id)
    if token is None:
        from chat_service.transport.identity import token_mint

        token = tokens[page.user_id] = token_mint(user_id=page.user_id, name=page.user_id, ttl_s=86_400)
    query = {"limit": row.limit}
    if page.before_seq is not None:
        query["before_seq"] = page.before_seq
    if page.after_seq is not None:
        query["after_seq"] = page.after_seq
    path = f"/api/threads/{thread_id}/events/?{urlencode(query)}"
    response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.content[:200]!r}")


def _without_seq_index() -> Iterator[None]:
    """Inside a transaction that is rolled back: the (thread, seq) unique index is gone."""
    from django.db import connection, transaction

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE chat_service_event DROP CONSTRAINT event_thread_seq_unique")
        yield
        transaction.set_rollback(True)


def _check_same_pages(rows: list[Row], thread_id: str, last_seq: int) -> None:
    """The offset baseline must read the very pages the selectors read, or the ratio means nothing."""
    for row in rows:
        for page in row.requests[:5]:
            keyset = [e.seq for e in _call(row, page, thread_id)]
            offset = [e.seq for e in _offset(row, page, thread_id, last_seq)]
            if keyset != offset or not keyset:
                sys.exit(
                    f"{row.scenario}: the offset baseline reads another page ({offset[:3]}... "
                    f"instead of {keyset[:3]}...)"
                )


SIDES = ("indexed", "http", "offset", "no index", "offset, no index")
WEIGHTS = {"indexed": 1.0, "http": 1.2, "offset": 1.5, "no index": 2.0, "offset, no index": 2.0}


def _measure(args: argparse.Namespace, meta: dict[str, Any]) -> None:
    from django.test import Client

    thread_id, last_seq = meta["thread"], meta["last_seq"]
    rows = _build_rows(meta, args)
    _check_same_pages(rows, thread_id, last_seq)
    per_row = args.seconds / len(rows) / sum(WEIGHTS.values())
    client, tokens = Client(), {}
    t = time.monotonic()
    # Row by row, every side in turn: a burst of other work on the machine then hits
    # the sides of a row alike instead of one whole side.
    for row in rows:
        for side in SIDES:
            if side == "http" and not row.http:
                continue
            deadline = time.monotonic() + per_row * WEIGHTS[side]
            count = args.requests if side in ("indexed", "http") else args.naive_requests
            if side == "http":

                def run(page: Page, row: Row = row) -> None:
                    _http(row, page, client, tokens, thread_id)
            elif side.startswith("offset"):

                def run(page: Page, row: Row = row) -> None:
                    _offset(row, page, thread_id, last_seq)
            else:

                def run(page: Page, row: Row = row) -> None:
                    _call(row, page, thread_id)

            dropped = side.endswith("no index")
            context = contextlib.contextmanager(_without_seq_index)() if dropped else contextlib.nullcontext()
            with context:
                row.results[side] = _timed(row.requests[:count], run, deadline, warm=3)
        print(f"  measured {row.scenario} ({time.monotonic() - t:.0f} s)", flush=True)
    _report(rows, meta)


def _cell(values: list[float], width: int, digits: int = 2) -> str:
    return (
        f"{_pct(values, 0.5):>{width}.{digits}f} {_pct(values, 0.99):>7.{digits}f}"
        if values
        else f"{'-':>{width}} {'-':>7}"
    )


def _ratio(values: list[float], indexed: list[float]) -> str:
    return f"{_pct(values, 0.99) / _pct(indexed, 0.99):>6.1f}x" if values and indexed else f"{'-':>7}"


def _report(rows: list[Row], meta: dict[str, Any]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_table_size('chat_service_event'), pg_indexes_size('chat_service_event')")
        heap, indexes = cursor.fetchone()
    print()
    print(
        f"History paging, one thread of {meta['last_seq']:,} events ({meta['events']:,} events in "
        f"{meta['threads']:,} threads, table {heap / 2**20:.0f} MB + indexes {indexes / 2**20:.0f} MB), "
        f"PostgreSQL; latency of one page in ms (n = requests measured)"
    )
    head = (
        f"{'scenario':<26} {'page':>4} | {'indexed p50':>11} {'p99':>7} {'max':>7} {'n':>4} | "
        f"{'http p50':>8} {'p99':>7} | {'offset p50':>10} {'p99':>7} {'x p99':>7} | "
        f"{'no-index p50':>12} {'p99':>7} {'x p99':>7} | {'offset+no-index p50':>19} {'p99':>7} {'x p99':>7} "
        f"{'n':>3}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        r = row.results
        idx = r.get("indexed", [])
        print(
            f"{row.scenario:<26} {row.limit:>4} | {_cell(idx, 11)} {max(idx, default=float('nan')):>7.2f} "
            f"{len(idx):>4} | {_cell(r.get('http', []), 8)} | {_cell(r.get('offset', []), 10)} "
            f"{_ratio(r.get('offset', []), idx)} | {_cell(r.get('no index', []), 12)} "
            f"{_ratio(r.get('no index', []), idx)} | {_cell(r.get('offset, no index', []), 19)} "
            f"{_ratio(r.get('offset, no index', []), idx)} {len(r.get('offset, no index', [])):>3}"
        )
    print("-" * len(head))
    pages = [row for row in rows if row.limit == PAGE and row.call == "events"]
    for side in SIDES:
        every = [v for row in pages for v in row.results.get(side, [])]
        print(
            f"pages of {PAGE}, {side:<16}: p50 {_pct(every, 0.5):7.2f}  p99 {_pct(every, 0.99):7.2f}  "
            f"max {max(every, default=float('nan')):7.2f}  (n = {len(every):,})"
        )
    for side in ("indexed", "http"):
        every = [v for row in pages for v in row.results.get(side, [])]
        verdict = "meets" if _pct(every, 0.99) <= 20 else "MISSES"
        print(f"target p99 <= 20 ms per page of {PAGE} (S4b), {side}: {verdict} ({_pct(every, 0.99):.2f} ms)")


def _explain(meta: dict[str, Any]) -> None:
    """Print the plans of the page before the middle of the thread: by seq, by offset, without the index."""
    from django.db import connection

    from chat_service.threads.models import Event

    thread_id, middle = meta["thread"], meta["last_seq"] // 2
    events = Event.objects.filter(thread_id=thread_id)
    keyset = events.filter(seq__lt=middle).order_by("-seq")[:PAGE]
    offset = events.order_by("-seq")[meta["last_seq"] + 1 - middle :][:PAGE]
    for name, queryset, context in (
        ("before_seq (indexed)", keyset, contextlib.nullcontext()),
        ("offset (indexed)", offset, contextlib.nullcontext()),
        ("before_seq, no (thread, seq) index", keyset, contextlib.contextmanager(_without_seq_index)()),
    ):
        with context, connection.cursor() as cursor:
            sql, params = queryset.query.sql_with_params()
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            print(f"\n-- {name}\n" + "\n".join(r[0] for r in cursor.fetchall()))


if __name__ == "__main__":
    main()
