"""Outbox delivery against a real HTTP receiver on loopback.

The receiver stands in for the order system: it checks every request's signature with
its own HMAC (not the code under test), records the Idempotency-Key and body of every
request, notices two requests for the same key in flight at once, and fails a share of
requests (503, 500, 429, or a dropped connection) from a seeded random generator.

Clocks: in-process passes get ``now`` so retries become due without waiting; the
concurrent and killed-worker runs use the real clock with millisecond backoffs. Nothing
asserts on elapsed time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from chat_service.commerce.models import OutboxMessage, OutboxStatus
from chat_service.commerce.outbox import outbox_enqueue
from chat_service.commerce.services import disputes, offers, orders
from chat_service.machinery.delivery.leased import backoff_s
from orders_bridge.config import OutboxConfig
from orders_bridge.delivery import outbox_deliver_due
from orders_bridge.transport import DeliveryResult, HttpTransport
from tests.factories import make_order
from tests.signing import signature_ok

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-order-system-secret-" + "z" * 32

pytestmark = pytest.mark.django_db(transaction=True)


# --- the receiver ------------------------------------------------------------------------------


@dataclass
class Received:
    key: str
    body: bytes
    status: int | None  # None: the connection was dropped without an answer
    run: int = 0  # which worker process sent it (killed-worker test)


@dataclass
class Receiver:
    """A fake order system on 127.0.0.1 (see the module docstring)."""

    fail_rate: float = 0.0
    seed: int = 0
    secret: str = SECRET
    hold_first_until_concurrent: bool = False
    forced_status: dict[str, int] = field(default_factory=dict)  # key -> status, always
    on_request: Callable[[Received], bool] | None = None  # True: do not answer
    received: list[Received] = field(default_factory=list)
    bad_signatures: int = 0
    overlaps: list[str] = field(default_factory=list)
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = defaultdict(int)
        self.second_arrived = threading.Event()
        self.run = 0

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                receiver.handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (timeout test, killed worker) is expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/bridge/actions/"

    def signature_ok(self, header: str | None, body: bytes) -> bool:
        return signature_ok(self.secret, header, body)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", "0")))
        key = request.headers.get("Idempotency-Key", "")
        signed = self.signature_ok(request.headers.get("X-Bridge-Signature"), body)
        with self.lock:
            self.in_flight[key] += 1
            if self.in_flight[key] > 1:
                self.overlaps.append(key)
            self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
            if self.max_in_flight >= 2:
                self.second_arrived.set()
            first = len(self.received) == 0
            if not signed:
                self.bad_signatures += 1
                status: int | None = 401
            elif key in self.forced_status:
                status = self.forced_status[key]
            elif self.rng.random() < self.fail_rate:
                status = self.rng.choice([503, 500, 429, None])
            else:
                status = 200
            record = Received(key=key, body=body, status=status, run=self.run)
            self.received.append(record)
        try:
            if first and self.hold_first_until_concurrent:
                self.second_arrived.wait(timeout=10)
            if self.on_request is not None and self.on_request(record):
                record.status = None
                request.close_connection = True
                return
            if status is None:
                request.close_connection = True  # drop it: the client sees no answer at all
                return
            answers = {200: b'{"ok":true}', 401: b'{"error":"bad signature"}'}
            answer = answers.get(status, b'{"error":"unknown dispute"}')
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(answer)))
            request.end_headers()
            request.wfile.write(answer)
        finally:
            with self.lock:
                self.in_flight[key] -= 1

    # what it saw
    def by_key(self) -> dict[str, list[Received]]:
        grouped: dict[str, list[Received]] = defaultdict(list)
        for record in self.received:
            grouped[record.key].append(record)
        return grouped

    def accepted_keys(self) -> list[str]:
        return [r.key for r in self.received if r.status == 200]


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(**options: object) -> Receiver:
        receiver = Receiver(**options)  # type: ignore[arg-type]
        receiver.start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


def config(**overrides: object) -> OutboxConfig:
    values: dict[str, object] = {
        "order_system_url": None,
        "signing_secret": SECRET,
        "timeout_s": 5.0,
        "lease_s": 60.0,
        "max_attempts": 12,
        "backoff_base_s": 1.0,
        "backoff_max_s": 3600.0,
        "batch": 50,
    }
    values.update(overrides)
    return OutboxConfig(**values)  # type: ignore[arg-type]


def pending_count() -> int:
    return OutboxMessage.objects.filter(status=OutboxStatus.PENDING).count()


def deliver_until_done(transport: HttpTransport, cfg: OutboxConfig, max_passes: int = 200) -> int:
    """Run passes, moving the clock to the next due row each time, until nothing is pending."""
    now = timezone.now()
    for passes in range(1, max_passes + 1):
        counts = outbox_deliver_due(transport=transport, now=now, config=cfg, rng=random.Random(passes))
        pending = OutboxMessage.objects.filter(status=OutboxStatus.PENDING)
        if not pending.exists():
            return passes
        if counts.claimed == 0:  # everything left waits for a retry time (or behind one)
            now = pending.filter(next_attempt_at__gt=now).order_by("next_attempt_at")[0].next_attempt_at
    raise AssertionError(f"still {pending_count()} pending after {max_passes} passes")


# --- actions, through the real services ---------------------------------------------------------


def queue_actions_through_services() -> None:
    """50 actions of every kind, several per order, as buyers and sellers would cause them."""
    for _ in range(8):  # offer accepted, then the order cancelled: 16
        order = make_order(buyer_id="b", seller_id="s", amount=Decimal("25.00"))
        offer = offers.offer_make(user_id="s", order_id=order.pk, price="21.50")
        offers.offer_accept(user_id="b", offer_id=str(offer.pk))
        orders.order_cancel(user_id="b", order_id=order.pk)
    for answer in ["counter"] * 6 + ["reject"] * 4:  # opened, answered, then settled or escalated: 30
        order = make_order(buyer_id="b", seller_id="s", amount=Decimal("25.00"), status="awaiting_acceptance")
        dispute = disputes.dispute_open(
            user_id="b",
            order_id=order.pk,
            reason="wrong_size",
            refund_amount="20.00",
            return_item=False,
            details="Too small",
        )
        if answer == "counter":
            disputes.dispute_respond(user_id="s", dispute_id=str(dispute.pk), action="counter", refund_amount="10.00")
            disputes.dispute_accept_counter(user_id="b", dispute_id=str(dispute.pk))
        else:
            disputes.dispute_respond(user_id="s", dispute_id=str(dispute.pk), action="reject")
            disputes.dispute_escalate(user_id="b", dispute_id=str(dispute.pk))
    for _ in range(2):  # receipt, then feedback: 4
        order = make_order(buyer_id="b", seller_id="s", status="awaiting_acceptance")
        orders.order_confirm_receipt(user_id="b", order_id=order.pk)
        orders.order_leave_feedback(user_id="b", order_id=order.pk, rating=5, comment="Great")


def queue_actions_directly(count: int, *, per_order: int = 1) -> None:
    with transaction.atomic():
        for n in range(count):
            outbox_enqueue(
                action="order.receipt_confirmed", order_id=f"D{n // per_order:05d}", payload={"by": "b", "n": n}
            )


def assert_every_row_delivered_with_one_key_and_body(receiver: Receiver) -> dict[str, list[Received]]:
    rows = {row.idempotency_key: row for row in OutboxMessage.objects.all()}
    assert {row.status for row in rows.values()} == {OutboxStatus.DELIVERED}
    seen = receiver.by_key()
    assert set(seen) == set(rows), "a request carried a key no row has, or a row was never sent"
    assert set(receiver.accepted_keys()) == set(rows), "some row was never accepted: lost"
    for key, requests in seen.items():
        payload = rows[key].payload
        assert {r.body for r in requests} == {requests[0].body}, f"{key}: retries changed the body"
        assert json.loads(requests[0].body) == payload and payload["idempotency_key"] == key
    assert receiver.bad_signatures == 0
    return seen


# --- the whole path, with failures ---------------------------------------------------------------


def test_every_action_reaches_a_receiver_that_fails_30_percent_with_one_key_and_body_per_action(
    receiver_factory,
):
    receiver = receiver_factory(fail_rate=0.3, seed=20240611)
    queue_actions_through_services()
    assert OutboxMessage.objects.count() == 50

    deliver_until_done(HttpTransport(receiver.url, SECRET), config())

    seen = assert_every_row_delivered_with_one_key_and_body(receiver)
    failures = [r for r in receiver.received if r.status != 200]
    assert len(failures) >= 10 and {r.status for r in failures} >= {503, 500, 429, None}
    assert any(len(requests) > 1 for requests in seen.values())
    # Once accepted, a row is never sent again.
    assert sorted(receiver.accepted_keys()) == sorted(set(receiver.accepted_keys()))
    for row in OutboxMessage.objects.all():
        assert row.attempts == len(seen[row.idempotency_key]) and row.last_error == ""


def test_the_actions_of_one_order_are_accepted_in_the_order_they_were_made(receiver_factory):
    receiver = receiver_factory(fail_rate=0.3, seed=7)
    queue_actions_through_services()

    deliver_until_done(HttpTransport(receiver.url, SECRET), config())

    order_of_key = dict(OutboxMessage.objects.values_list("idempotency_key", "order_id"))
    id_of_key = dict(OutboxMessage.objects.values_list("idempotency_key", "id"))
    accepted_per_order: dict[str, list[int]] = defaultdict(list)
    for key in receiver.accepted_keys():
        accepted_per_order[order_of_key[key]].append(id_of_key[key])
    assert accepted_per_order and all(ids == sorted(ids) for ids in accepted_per_order.values())
    # And a later action was never even tried while an earlier one of its order was pending.
    first_try: dict[str, int] = {}
    accepted_at: dict[str, int] = {}
    for index, record in enumerate(receiver.received):
        first_try.setdefault(record.key, index)
        if record.status == 200:
            accepted_at[record.key] = index
    for key, index in first_try.items():
        earlier = [k for k in order_of_key if order_of_key[k] == order_of_key[key] and id_of_key[k] < id_of_key[key]]
        assert all(accepted_at[k] < index for k in earlier)


# --- refusals, the admin's retry, backoff -------------------------------------------------------


def test_a_refused_action_ends_failed_with_its_error_and_the_admin_retries_it(receiver_factory, client):
    receiver = receiver_factory()
    queue_actions_directly(3)
    refused, fine, _ = OutboxMessage.objects.order_by("id")
    receiver.forced_status[refused.idempotency_key] = 422

    deliver_until_done(HttpTransport(receiver.url, SECRET), config())

    refused.refresh_from_db()
    assert refused.status == OutboxStatus.FAILED and refused.attempts == 1  # not retried
    assert "422" in refused.last_error and "unknown dispute" in refused.last_error
    assert OutboxMessage.objects.filter(status=OutboxStatus.DELIVERED).count() == 2

    # The order system is fixed; an operator retries from the admin.
    del receiver.forced_status[refused.idempotency_key]
    admin = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(admin)
    listing = client.get("/admin/orders_bridge/outboxmessage/?status__exact=failed")
    assert listing.status_code == 200 and refused.action in listing.content.decode()
    response = client.post(
        "/admin/orders_bridge/outboxmessage/",
        {
            "action": "retry_delivery",
            "_selected_action": [refused.pk, fine.pk],
        },
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "1 failed message(s) put back for delivery" in page and "1 selected message(s) were not failed" in page
    refused.refresh_from_db()
    fine.refresh_from_db()
    assert (refused.status, refused.attempts) == (OutboxStatus.PENDING, 0)
    assert fine.status == OutboxStatus.DELIVERED

    deliver_until_done(HttpTransport(receiver.url, SECRET), config())

    refused.refresh_from_db()
    assert refused.status == OutboxStatus.DELIVERED
    tries = receiver.by_key()[refused.idempotency_key]
    assert [r.status for r in tries] == [422, 200] and tries[0].body == tries[1].body
    assert len(receiver.by_key()[fine.idempotency_key]) == 1  # the delivered one was not sent again


def test_a_staff_user_without_the_change_permission_cannot_retry(client):
    queue_actions_directly(1)
    row = OutboxMessage.objects.get()
    OutboxMessage.objects.filter(pk=row.pk).update(status=OutboxStatus.FAILED, last_error="HTTP 422")
    from django.contrib.auth.models import Permission

    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_outboxmessage"))
    client.force_login(viewer)

    listing = client.get("/admin/orders_bridge/outboxmessage/")
    assert listing.status_code == 200 and "retry_delivery" not in listing.content.decode()
    client.post("/admin/orders_bridge/outboxmessage/", {"action": "retry_delivery", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.status == OutboxStatus.FAILED


@pytest.mark.parametrize("path", ["order", "offer", "dispute", "inboxevent", "outboxmessage"])
def test_the_admin_lists_the_bridge_tables(client, path):
    order = make_order(buyer_id="b", seller_id="s", status="awaiting_acceptance")
    disputes.dispute_open(
        user_id="b", order_id=order.pk, reason="wrong_size", refund_amount="5.00", return_item=False, details=""
    )
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    response = client.get(f"/admin/orders_bridge/{path}/?q=x")
    assert response.status_code == 200
    assert client.get(f"/admin/orders_bridge/{path}/").status_code == 200


@pytest.mark.parametrize("path", ["thread", "event"])
def test_the_admin_lists_threads_and_events_read_only(client, path):
    order = make_order(buyer_id="b", seller_id="s")
    orders.order_cancel(user_id="b", order_id=order.pk)
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    listing = client.get(f"/admin/chat_service/{path}/")
    assert listing.status_code == 200 and order.pk in listing.content.decode()
    assert client.get(f"/admin/chat_service/{path}/add/").status_code == 403


class AlwaysBusy:
    def __init__(self) -> None:
        self.calls = 0

    def deliver(self, message: OutboxMessage) -> DeliveryResult:
        self.calls += 1
        return DeliveryResult(accepted=False, status=503, error="HTTP 503: busy", retryable=True)


def test_retries_back_off_exponentially_up_to_the_cap_then_the_row_fails():
    queue_actions_directly(1)
    row = OutboxMessage.objects.get()
    cfg = config(max_attempts=7, backoff_base_s=1.0, backoff_max_s=40.0)
    transport, now, delays = AlwaysBusy(), row.next_attempt_at, []

    for attempt in range(1, 8):
        # Not due yet: a pass a moment before the retry time sends nothing.
        outbox_deliver_due(transport=transport, now=now - timedelta(milliseconds=1), config=cfg)
        assert transport.calls == attempt - 1
        counts = outbox_deliver_due(transport=transport, now=now, config=cfg, rng=random.Random(attempt))
        assert transport.calls == attempt
        row.refresh_from_db()
        assert row.attempts == attempt and row.last_error == "HTTP 503: busy"
        if attempt < 7:
            assert counts.retrying == 1 and row.status == OutboxStatus.PENDING
            delays.append((row.next_attempt_at - now).total_seconds())
            now = row.next_attempt_at
        else:
            assert counts.failed == 1 and row.status == OutboxStatus.FAILED

    # base·2^n, jittered down to half of it, capped: 2, 4, 8, 16, 32, 40 at most.
    for n, delay in enumerate(delays, start=1):
        full = min(40.0, 2.0**n)
        assert min(full, 2.0**n / 2) <= delay <= full, (n, delay)
    assert delays == sorted(delays) and delays[-1] > 4 * delays[0]
    assert outbox_deliver_due(transport=transport, now=now + timedelta(days=1), config=cfg).claimed == 0


def test_backoff_never_shrinks_from_one_attempt_to_the_next_whatever_the_jitter():
    rng = random.Random(3)
    for _ in range(2000):
        n = rng.randint(1, 20)
        before = backoff_s(n, base_s=1.0, max_s=3600.0, rng=random.Random(rng.random()))
        after = backoff_s(n + 1, base_s=1.0, max_s=3600.0, rng=random.Random(rng.random()))
        assert after >= before and after <= 3600.0


# --- the transport's answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, retryable",
    [
        (408, True),
        (409, True),
        (425, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
        (301, False),
    ],
)
def test_http_answers_are_classified(receiver_factory, status, retryable):
    receiver = receiver_factory()
    queue_actions_directly(1)
    row = OutboxMessage.objects.get()
    receiver.forced_status[row.idempotency_key] = status

    result = HttpTransport(receiver.url, SECRET).deliver(row)

    assert (result.accepted, result.status, result.retryable) == (False, status, retryable)
    assert str(status) in result.error
    request = receiver.received[0]
    assert request.key == row.idempotency_key and receiver.bad_signatures == 0


def test_a_signed_request_carries_the_key_and_the_stored_payload(receiver_factory):
    receiver = receiver_factory()
    queue_actions_directly(1)
    row = OutboxMessage.objects.get()

    assert HttpTransport(receiver.url, SECRET).deliver(row) == DeliveryResult(accepted=True, status=200)
    assert HttpTransport(receiver.url, "another-secret-" + "q" * 32).deliver(row).status == 401

    good, forged = receiver.received
    assert json.loads(good.body) == row.payload and good.key == row.idempotency_key
    assert receiver.bad_signatures == 1 and forged.status == 401


def test_refused_connections_and_timeouts_are_retryable(receiver_factory):
    queue_actions_directly(1)
    row = OutboxMessage.objects.get()
    closed = receiver_factory()
    url = closed.url
    closed.stop()
    refused = HttpTransport(url, SECRET, timeout_s=1).deliver(row)
    assert not refused.accepted and refused.retryable and refused.status is None and refused.error

    slow = receiver_factory()
    answer = threading.Event()
    slow.on_request = lambda record: not answer.wait(timeout=5)  # hold the request until told
    try:
        timed_out = HttpTransport(slow.url, SECRET, timeout_s=0.2).deliver(row)
    finally:
        answer.set()
    assert not timed_out.accepted and timed_out.retryable and "timed out" in timed_out.error.lower()


def test_a_transport_that_raises_costs_one_attempt_not_the_worker():
    queue_actions_directly(1)

    class Broken:
        def deliver(self, message: OutboxMessage) -> DeliveryResult:
            raise RuntimeError("boom")

    counts = outbox_deliver_due(transport=Broken(), config=config())
    row = OutboxMessage.objects.get()
    assert counts.retrying == 1 and row.status == OutboxStatus.PENDING and "boom" in row.last_error


# --- several deliverers at once ------------------------------------------------------------------


def test_two_deliverers_at_once_never_send_the_same_row_concurrently_and_deliver_all(receiver_factory):
    receiver = receiver_factory(fail_rate=0.3, seed=11, hold_first_until_concurrent=True)
    queue_actions_directly(60)
    cfg = config(backoff_base_s=0.001, backoff_max_s=0.01)
    transport = HttpTransport(receiver.url, SECRET)
    counts: dict[str, int] = defaultdict(int)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def deliverer(name: str) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(2000):  # a bound, so a broken claim fails instead of hanging
                got = outbox_deliver_due(transport=transport, config=cfg, batch=5)
                counts[name] += got.delivered
                if got.claimed == 0 and pending_count() == 0:
                    return
                if got.claimed == 0:
                    time.sleep(0.005)  # a retry is due in a few ms
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliverer, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == [] and not any(thread.is_alive() for thread in threads)
    assert receiver.max_in_flight >= 2, "the deliverers never overlapped; the test proved nothing"
    assert receiver.overlaps == [], "one row was sent by both deliverers at the same time"
    assert_every_row_delivered_with_one_key_and_body(receiver)
    accepted = receiver.accepted_keys()
    assert len(accepted) == len(set(accepted)) == 60  # exactly one accepted request per row
    assert counts["one"] > 0 and counts["two"] > 0 and counts["one"] + counts["two"] == 60


def test_a_row_another_claimer_holds_locked_is_skipped_not_waited_for(receiver_factory):
    receiver = receiver_factory()
    queue_actions_directly(3)
    held = OutboxMessage.objects.order_by("id").first()
    locked, release, errors = threading.Event(), threading.Event(), []

    def other_claimer() -> None:  # sits inside its claim transaction, holding the row lock
        try:
            with transaction.atomic():
                OutboxMessage.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(timeout=30)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=other_claimer)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        with connection.cursor() as cursor:  # waiting on the lock would fail, not hang
            cursor.execute("SET lock_timeout = '3s'")
        counts = outbox_deliver_due(transport=HttpTransport(receiver.url, SECRET), config=config())
    finally:
        release.set()
        thread.join(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    assert errors == [] and counts.delivered == 2
    assert held.idempotency_key not in receiver.by_key()
    assert OutboxMessage.objects.get(pk=held.pk).status == OutboxStatus.PENDING


@pytest.mark.parametrize(
    "late_answer, later_claim_answer, final_status",
    [
        # The first worker's lease ran out while its request hung; a second worker claimed and
        # delivered the row. The first one's late failure must not undo that.
        (
            DeliveryResult(accepted=False, status=422, error="HTTP 422", retryable=False),
            DeliveryResult.ok(200),
            OutboxStatus.DELIVERED,
        ),
        # The second worker's attempt failed and scheduled a retry; the first one's late
        # "not retryable" must not mark the row failed over the second's claim.
        (
            DeliveryResult(accepted=False, status=422, error="HTTP 422", retryable=False),
            DeliveryResult(accepted=False, status=503, error="HTTP 503", retryable=True),
            OutboxStatus.PENDING,
        ),
        # An acceptance is the truth, even late: the order system has the action.
        (
            DeliveryResult.ok(200),
            DeliveryResult(accepted=False, status=503, error="HTTP 503", retryable=True),
            OutboxStatus.DELIVERED,
        ),
    ],
)
def test_an_answer_after_the_lease_ended_does_not_overwrite_the_next_claim(
    late_answer, later_claim_answer, final_status
):
    queue_actions_directly(1)
    cfg = config(lease_s=30.0)
    start = OutboxMessage.objects.get().next_attempt_at

    class Answer:
        def __init__(self, result: DeliveryResult) -> None:
            self.result = result

        def deliver(self, message: OutboxMessage) -> DeliveryResult:
            return self.result

    class HungPastItsLease:
        def deliver(self, message: OutboxMessage) -> DeliveryResult:
            later = outbox_deliver_due(
                transport=Answer(later_claim_answer), config=cfg, now=start + timedelta(seconds=31)
            )
            assert later.claimed == 1  # the lease had ended, so another worker took the row
            return late_answer

    first = outbox_deliver_due(transport=HungPastItsLease(), config=cfg, now=start)

    row = OutboxMessage.objects.get()
    assert row.status == final_status and row.attempts == 2
    if late_answer.accepted:
        assert first.delivered == 1
    else:
        assert first.superseded == 1 and row.last_error == later_claim_answer.error


# --- a worker killed mid-delivery ----------------------------------------------------------------


def test_a_worker_killed_mid_delivery_loses_nothing_and_resends_with_the_same_key(receiver_factory, tmp_path):
    receiver = receiver_factory(fail_rate=0.3, seed=99)
    queue_actions_directly(50, per_order=2)
    kills_wanted, killed_keys = 4, []
    state: dict[str, object] = {"process": None, "kills": 0, "requests_in_run": 0}

    def kill_mid_request(record: Received) -> bool:
        """Kill the worker while its request is in flight: the order system got the action,
        the worker never learns it did."""
        state["requests_in_run"] = int(state["requests_in_run"]) + 1  # type: ignore[call-overload]
        if int(state["kills"]) < kills_wanted and state["requests_in_run"] == 5:  # type: ignore[call-overload]
            process = state["process"]
            assert isinstance(process, subprocess.Popen)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            state["kills"] = int(state["kills"]) + 1  # type: ignore[call-overload]
            killed_keys.append(record.key)
            return True
        return False

    receiver.on_request = kill_mid_request
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chat_service.settings",
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        "DEBUG": "0",
        "ORDER_SYSTEM_URL": receiver.url,
        "BRIDGE_SECRET": SECRET,
        "ORDER_SYSTEM_TIMEOUT_S": "1",
        "ORDERS_OUTBOX_LEASE_S": "2",
        "ORDERS_OUTBOX_BACKOFF_BASE_S": "0.01",
        "ORDERS_OUTBOX_BACKOFF_MAX_S": "0.2",
        "PYTHONUNBUFFERED": "1",
    }
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    log_path = tmp_path / "worker.log"

    def start_worker() -> subprocess.Popen[bytes]:
        receiver.run += 1
        state["requests_in_run"] = 0
        with log_path.open("ab") as log:  # a file, not a pipe: a full pipe would stall the worker
            process = subprocess.Popen(
                [sys.executable, "manage.py", "worker"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        state["process"] = process
        return process

    process = start_worker()
    try:
        for _ in range(600):  # polls of 0.2 s, a bound against a hang
            if process.poll() is not None:
                assert process.returncode == -signal.SIGKILL, log_path.read_text()[-3000:]
                process = start_worker()
            elif pending_count() == 0:
                break
            time.sleep(0.2)
        assert pending_count() == 0, "the worker never finished the outbox: " + log_path.read_text()[-3000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log_path.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert state["kills"] == kills_wanted and receiver.run == kills_wanted + 1
    seen = assert_every_row_delivered_with_one_key_and_body(receiver)  # lost: 0
    for key in killed_keys:
        # The request the worker died in was sent again, by a later worker, unchanged.
        runs = [r.run for r in seen[key]]
        assert len(runs) >= 2 and max(runs) > min(runs)
    duplicates = [key for key, requests in seen.items() if len(requests) > 1]
    assert set(killed_keys) <= set(duplicates)
