"""POST /bridge/events/ over real HTTP to real Daphne processes: the signature matrix, and
storms of repeated and reordered deliveries spread over three processes at once.

tests/orders_bridge/test_webhook.py covers the same rules in-process (Django's test client,
one thread per request); here the requests go through Daphne, concurrently into separate
processes whose transactions really race, and the effects are read back from PostgreSQL
and from a socket that joined the thread. The request bodies come from that module's
helpers; the signatures are computed here, independently of chat_service.machinery.signatures.

* Every bad signature (wrong, retired or no secret, stale or future timestamp, tampered
  body or timestamp, malformed or missing header) is a 401 with a JSON error code and
  writes nothing; the current secret and, during a rotation, the previous one are accepted.
* The same event delivered 60 times at once has one effect and one push.
* 100 orders' lifecycles (600 in the ``heavy`` run) delivered shuffled, with repeats and
  forged copies, over three processes, end exactly as in-order delivery ends: every order
  at its highest version, every thread gapless.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from chat_service.client import ChatClient
from chat_service.commerce.models import InboxEvent, Order
from chat_service.threads.models import Event, Thread
from tests.e2e.conftest import DaphneFactory
from tests.e2e.servers import DaphneServer, spawn
from tests.factories import token_for
from tests.orders_bridge.test_webhook import BUYER, ORDER_FIELDS, event, lifecycle, raw_of, snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = settings.BRIDGE["SECRET"]  # the servers inherit BRIDGE_SECRET from this process
PREVIOUS = "bridge-previous-secret-" + "p" * 32  # still accepted: the rotation is under way
RETIRED = "bridge-retired-secret-" + "r" * 32  # the one before: no longer accepted
WINDOW_S = 300
SERVERS = 3
THREADS = 24
REPEATS = 60
ORDERS, HEAVY_ORDERS = 100, 600  # lifecycles (4 events each) in the shuffled storm


@pytest.fixture(scope="module")
def bridge_daphnes(django_db_setup: None) -> Iterator[DaphneFactory]:
    """SERVERS processes for the module (a DaphneFactory: a failed test shows their logs)."""
    started = [spawn(f"bridge-{i}", {"BRIDGE_SECRET_PREVIOUS": PREVIOUS}) for i in range(SERVERS)]
    try:
        for server in started:
            asyncio.run(server.wait_healthy())
        yield DaphneFactory(started)
    finally:
        for server in started:
            server.terminate()
        for server in started:
            server.cleanup()


@pytest.fixture
def servers(bridge_daphnes: DaphneFactory) -> list[DaphneServer]:
    return bridge_daphnes.servers


def sign(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


Http = Callable[..., Any]  # the ``http`` fixture: one plain HTTP request


def deliver(http: Http, server: DaphneServer, body: bytes, header: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-Bridge-Signature"] = header
    return http("POST", f"{server.http_url}/bridge/events/", body=body, headers=headers)


def outcome_of(answer: Any) -> str:
    assert answer.status == 200 and answer.is_json, answer
    assert answer.json["ok"] is True, answer
    return answer.json["outcome"]


def refused(answer: Any, message: str, what: str) -> None:
    """A 401 with the JSON error body of docs/protocol.md."""
    assert answer.status == 401 and answer.is_json, (what, answer)
    assert answer.json == {"error": {"code": "unauthorized", "message": message}}, (what, answer.json)


# --- The signature matrix -------------------------------------------------------------------------

INVALID = "The request signature is invalid."
EXPIRED = "The request signature has expired."
MISSING = "The request signature is missing."


def bad_signatures(body: bytes, now: int) -> dict[str, tuple[bytes, str | None, str]]:
    """name -> (body sent, X-Bridge-Signature or None, the error message)."""
    good = sign(SECRET, body, now)
    mac = good.split("v1=")[1]
    other = raw_of(json.loads(body) | {"event_id": "evt-other"})
    return {
        "wrong secret": (body, sign("not-our-secret-" + "x" * 32, body, now), INVALID),
        "retired secret": (body, sign(RETIRED, body, now), INVALID),
        "empty secret": (body, sign("", body, now), INVALID),
        "stale by 301 s": (body, sign(SECRET, body, now - WINDOW_S - 1), EXPIRED),
        "stale by a day": (body, sign(SECRET, body, now - 86400), EXPIRED),
        "future by 301 s": (body, sign(SECRET, body, now + WINDOW_S + 1), EXPIRED),
        "previous secret, stale": (body, sign(PREVIOUS, body, now - 400), EXPIRED),
        "tampered body": (body.replace(b"19.90", b"0.01"), good, INVALID),
        "signature of another body": (body, sign(SECRET, other, now), INVALID),
        "tampered timestamp": (body, f"t={now + 1},v1={mac}", INVALID),
        "MAC without the timestamp": (
            body,
            f"t={now},v1={hmac.new(SECRET.encode(), body, 'sha256').hexdigest()}",
            INVALID,
        ),
        "SHA-1 MAC": (
            body,
            f"t={now},v1={hmac.new(SECRET.encode(), f'{now}.'.encode() + body, 'sha1').hexdigest()}",
            INVALID,
        ),
        "MAC of the wrong length": (body, f"t={now},v1={mac[:-2]}", INVALID),
        "MAC not hex": (body, f"t={now},v1={'z' * 64}", INVALID),
        "no v1": (body, f"t={now}", INVALID),
        "no t": (body, f"v1={mac}", INVALID),
        "two t": (body, f"t={now},t={now},v1={mac}", INVALID),
        "t not a number": (body, f"t=now,v1={mac}", INVALID),
        "semicolons": (body, f"t={now};v1={mac}", INVALID),
        "unknown scheme only": (body, f"t={now},v0={mac}", INVALID),
        "huge header": (body, f"t={now}," + ",".join([f"v1={mac}"] * 40), INVALID),
        "empty header": (body, "", MISSING),
        "blank header": (body, "   ", MISSING),
        "no header": (body, None, MISSING),
    }


def test_signature_matrix_over_http(servers, http, db_state):
    server = servers[0]
    now = int(time.time())
    body = raw_of(event(snapshot("W1"), type="order.created", event_id="evt-w1"))
    before = db_state.snapshot()
    cases = bad_signatures(body, now)
    for name, (sent, header, message) in cases.items():
        refused(deliver(http, server, sent, header), message, name)
    assert db_state.changed_since(before) == {}, "a refused webhook wrote something"
    print(f"\n[bridge signatures] {len(cases)} bad signatures: all 401 unauthorized, nothing written")

    # Accepted: the current secret, the previous one during a rotation, either edge of the
    # window, several v1 values of which one matches, upper-case hex.
    accepted = {
        "current secret": (SECRET, now, None),
        "previous secret": (PREVIOUS, now, None),
        "250 s old": (SECRET, now - 250, None),
        "250 s ahead": (SECRET, now + 250, None),
        "one of several v1": (SECRET, now, "several"),
        "upper-case hex": (SECRET, now, "upper"),
    }
    for index, (name, (secret, t, variant)) in enumerate(accepted.items()):
        raw = raw_of(event(snapshot(f"W{index + 2}"), type="order.created", event_id=f"evt-w{index + 2}"))
        header = sign(secret, raw, t)
        if variant == "several":
            header = f"t={t},v1={'0' * 64},{header.split(',')[1]},v1={'f' * 64}"
        elif variant == "upper":
            header = header.upper().replace("T=", "t=").replace("V1=", "v1=")
        assert outcome_of(deliver(http, server, raw, header)) == "applied", name
    assert Order.objects.count() == len(accepted)

    # The oversized and the non-POST are refused with a JSON error too, before any check.
    big = raw_of(event(snapshot("W9", properties={"note": "x" * (256 * 1024)})))
    too_large = deliver(http, server, big, sign(SECRET, big, now))
    assert too_large.status == 413 and too_large.json["error"]["code"] == "too_large", too_large
    get = http("GET", f"{server.http_url}/bridge/events/")
    assert get.status == 405 and get.json["error"]["code"] == "method_not_allowed", get


def test_replayed_request_is_acknowledged_and_has_no_second_effect(servers, http):
    now = int(time.time())
    first = raw_of(event(snapshot("R1"), type="order.created", event_id="evt-r1-1"))
    assert outcome_of(deliver(http, servers[0], first, sign(SECRET, first, now))) == "applied"
    paid = raw_of(event(snapshot("R1", version=2, status="awaiting_shipment"), event_id="evt-r1-2"))
    header = sign(SECRET, paid, now)
    assert outcome_of(deliver(http, servers[0], paid, header)) == "applied"
    # The captured request, replayed as is (inside the window) to every process: no effect.
    for server in servers:
        assert outcome_of(deliver(http, server, paid, header)) == "duplicate"
    # Re-signed later with a new event id but the same version: stale, no effect either.
    again = raw_of(event(snapshot("R1", version=2, status="cancelled"), event_id="evt-r1-2b"))
    assert outcome_of(deliver(http, servers[1], again, sign(SECRET, again, now + 5))) == "stale"
    order = Order.objects.get(pk="R1")
    assert (order.version, order.status) == (2, "awaiting_shipment")
    assert [e.body for e in Event.objects.filter(thread_id="R1").order_by("seq")] == [
        "Paid — the seller will ship soon"
    ]
    assert InboxEvent.objects.filter(order_id="R1").count() == 3


# --- Storms --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """A request, signed when it is sent (a storm outlasts no window then): with ``secret``,
    dated ``age_s`` ago, over ``signed`` (the body itself unless it was tampered with)."""

    body: bytes
    secret: str = SECRET
    age_s: int = 0
    signed: bytes | None = None

    def header(self) -> str:
        return sign(self.secret, self.signed if self.signed is not None else self.body, int(time.time()) - self.age_s)


def storm(http: Http, servers: list[DaphneServer], deliveries: list[Delivery]) -> list[Any]:
    """Every delivery at once from THREADS threads, spread over the processes."""

    def send(item: tuple[int, Delivery]) -> Any:
        index, delivery = item
        return deliver(http, servers[index % len(servers)], delivery.body, delivery.header())

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(send, enumerate(deliveries)))


async def test_one_event_delivered_60_times_at_once_has_one_effect_and_one_push(servers, http):
    now = int(time.time())
    created = raw_of(event(snapshot("S1"), type="order.created", event_id="evt-s1-1"))
    answer = await asyncio.to_thread(deliver, http, servers[0], created, sign(SECRET, created, now))
    assert outcome_of(answer) == "applied"
    buyer = await ChatClient.open(servers[2].ws_url, token_for(BUYER))
    try:
        await buyer.request("thread.join", order_id="S1")
        paid = raw_of(event(snapshot("S1", version=2, status="awaiting_shipment"), event_id="evt-s1-2"))
        # The same event, each copy signed at its own moment (the order system's retries).
        deliveries = [Delivery(paid, age_s=i % 5) for i in range(REPEATS)]
        answers = await asyncio.to_thread(storm, http, servers, deliveries)
        outcomes = Counter(outcome_of(a) for a in answers)
        await asyncio.sleep(1.0)  # any duplicate push would have arrived by now
        pushed = [f for f in buyer.drain() if f.get("type") == "thread.event"]
    finally:
        await buyer.close()
    events = await database_sync_to_async(
        lambda: list(Event.objects.filter(thread_id="S1").values_list("seq", "body"))
    )()
    inbox = await database_sync_to_async(InboxEvent.objects.filter(order_id="S1").count)()
    figures = (
        f"deliveries {REPEATS} over {len(servers)} processes, outcomes {dict(outcomes)}, "
        f"thread events {len(events)}, pushes {len(pushed)}, inbox rows {inbox}"
    )
    print(f"\n[bridge storm, one event] {figures}")
    assert outcomes == {"applied": 1, "duplicate": REPEATS - 1}, figures
    assert events == [(1, "Paid — the seller will ship soon")], figures
    assert [f["event"]["seq"] for f in pushed] == [1], figures
    assert inbox == 2, figures


def renamed(body: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The same event about a twin order (prefix + its id), under its own event id."""
    twin = copy.deepcopy(body)
    twin["order"]["order_id"] = prefix + twin["order"]["order_id"]
    twin["event_id"] = prefix + twin["event_id"]
    return twin


def final_rows(prefix: str) -> dict[str, dict[str, Any]]:
    fields = [f for f in ORDER_FIELDS if f != "order_id"]
    rows = Order.objects.filter(order_id__startswith=prefix).values("order_id", *fields)
    return {row.pop("order_id")[len(prefix) :]: row for row in rows}


def test_lifecycles_shuffled_with_repeats_and_forgeries_end_as_in_order_delivery(servers, http):
    shuffled_storm(servers, http, ORDERS)


@pytest.mark.heavy
def test_600_lifecycles_shuffled_with_repeats_and_forgeries_end_as_in_order_delivery(servers, http):
    shuffled_storm(servers, http, HEAVY_ORDERS)


def shuffled_storm(servers: list[DaphneServer], http: Http, orders: int) -> None:
    rng = random.Random(orders)
    per_order = [lifecycle(i) for i in range(orders)]

    # The reference: every event once, in order, about the "A" twins (orders side by side).
    def in_order(item: tuple[int, list[dict[str, Any]]]) -> list[str]:
        index, events = item
        raws = [raw_of(renamed(body, "A")) for body in events]
        return [outcome_of(deliver(http, servers[index % len(servers)], raw, Delivery(raw).header())) for raw in raws]

    with ThreadPoolExecutor(THREADS) as pool:
        assert set(itertools.chain.from_iterable(pool.map(in_order, enumerate(per_order)))) == {"applied"}
    expected = final_rows("A")
    assert len(expected) == orders

    # The storm, about the "B" twins: every event, a third of them again, shuffled; among
    # them forged copies (another secret, stale, tampered) that must change nothing.
    bodies = [raw_of(renamed(body, "B")) for events in per_order for body in events]
    genuine = [Delivery(raw, SECRET if i % 2 else PREVIOUS, age_s=i % 120) for i, raw in enumerate(bodies)]
    repeats = rng.sample(genuine, len(genuine) // 3)
    forged = [Delivery(raw, RETIRED) for raw in rng.sample(bodies, orders // 2)]
    forged += [Delivery(raw, age_s=3600) for raw in rng.sample(bodies, orders // 4)]
    forged += [
        Delivery(raw.replace(b'"version": ', b'"version": 9'), signed=raw) for raw in rng.sample(bodies, orders // 4)
    ]
    deliveries = genuine + repeats + forged
    rng.shuffle(deliveries)
    started = time.monotonic()
    answers = storm(http, servers, deliveries)
    elapsed = time.monotonic() - started

    outcomes = Counter(
        a.json["outcome"] if a.status == 200 else f"{a.status} {a.json['error']['code']}" for a in answers
    )
    actual = final_rows("B")
    # (A thread's key is its order: a foreign key, with no startswith lookup.)
    threads = {pk: last for pk, last in Thread.objects.values_list("pk", "last_seq") if pk.startswith("B")}
    events = [
        row
        for row in Event.objects.order_by("thread_id", "seq").values_list("thread_id", "seq", "data")
        if row[0].startswith("B")
    ]
    figures = (
        f"deliveries {len(deliveries)} ({len(genuine)} events, {len(repeats)} repeats, {len(forged)} "
        f"forged) over {len(servers)} processes x {THREADS} threads in {elapsed:.1f} s; "
        f"outcomes {dict(outcomes)}; orders {len(actual)}, thread events {len(events)}"
    )
    print(f"\n[bridge storm, shuffled] {figures}")
    assert outcomes["401 unauthorized"] == len(forged), figures
    assert outcomes["duplicate"] == len(repeats), figures
    assert outcomes["applied"] + outcomes["stale"] == len(genuine), figures
    assert outcomes["stale"] > 0, f"the shuffle delivered no older version after a newer one; {figures}"
    assert actual == expected, figures
    assert all(row["version"] == 4 for row in actual.values()), figures
    assert InboxEvent.objects.filter(event_id__startswith="B").count() == len(genuine), figures
    assert set(threads) == {f"B{order_id}" for order_id in expected}, figures
    # Each thread: seqs 1..n without gaps, and order versions only ever going up.
    by_thread: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for thread_id, seq, data in events:
        by_thread.setdefault(thread_id, []).append((seq, data))
    for thread_id, rows in by_thread.items():
        assert [seq for seq, _ in rows] == list(range(1, threads[thread_id] + 1)), (thread_id, rows)
        versions = [data["order"]["version"] for _, data in rows if "order" in data]
        assert versions == sorted(versions), (thread_id, versions)
