"""POST /bridge/events/ on the real database: signatures, validation, idempotency by
event_id, monotonic versions, thread events and their pushes, concurrent redelivery and
out-of-order delivery."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from chat_service import fanout
from chat_service.commerce.models import Dispute, InboxEvent, Offer, Order
from chat_service.commerce.services.disputes import dispute_cancel, dispute_open
from chat_service.commerce.services.offers import offer_request
from chat_service.commerce.services.orders import order_cancel
from chat_service.machinery.signatures import sign
from chat_service.threads.models import Event, EventKind, Thread
from orders_bridge.config import bridge_config
from tests.factories import make_order, thread_of
from tests.publications import counts_to, decoded, thread_events

pytestmark = pytest.mark.urls("tests.orders_bridge.urls")

URL = "/bridge/events/"
SECRET = "bridge-test-secret-" + "s" * 32
PREVIOUS = "bridge-previous-secret-" + "p" * 32
BUYER, SELLER = "b1", "s1"
ORDER_FIELDS = [f.name for f in Order._meta.fields if f.name != "updated_at"]


@pytest.fixture(autouse=True)
def bridge_secrets(settings):
    settings.BRIDGE = {"SECRET": SECRET, "SECRET_PREVIOUS": PREVIOUS, "WINDOW_S": 300}
    return settings.BRIDGE


@pytest.fixture(autouse=True)
def never_a_500(caplog):
    """No test may reach the webhook's last-resort 500 (it logs the exception)."""
    yield
    bugs = [r for r in caplog.get_records("call") if r.name == "orders_bridge.webhook" and r.levelname == "ERROR"]
    assert bugs == [], [r.getMessage() for r in bugs]


@pytest.fixture
def client():
    return Client()


def snapshot(order_id: str, version: int = 1, status: str = "awaiting_payment", **fields: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "version": version,
        "buyer_id": BUYER,
        "seller_id": SELLER,
        "supplier_name": "Acme Lamps",
        "item_title": "Desk lamp",
        "properties": {"colour": "black"},
        "quantity": 1,
        "amount": "19.90",
        "currency": "USD",
        "status": status,
        "tracking_number": "",
        "ordered_at": "2026-03-01T12:00:00Z",
        **fields,
    }


def existing(order_id: str, **fields: Any) -> Order:
    """An order already mirrored: ``snapshot(order_id)``, except for ``fields``."""
    base = snapshot(order_id)
    defaults = {
        "supplier_name": base["supplier_name"],
        "item_title": base["item_title"],
        "properties": base["properties"],
        "amount": Decimal(base["amount"]),
        "ordered_at": datetime.fromisoformat(base["ordered_at"]),
    }
    return make_order(order_id=order_id, buyer_id=BUYER, seller_id=SELLER, **{**defaults, **fields})


def event(
    order: dict[str, Any] | None = None,
    *,
    type: str = "order.updated",
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id or f"evt-{uuid.uuid4().hex}",
        "type": type,
        **extra,
    }
    if order is not None:
        body["order"] = order
    return body


def raw_of(body: dict[str, Any] | bytes) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def post(
    client: Client,
    body: dict[str, Any] | bytes,
    *,
    secret: str = SECRET,
    t: int | None = None,
    header: str | None = None,
):
    raw = raw_of(body)
    if header is None:
        header = sign(secret, raw, int(time.time()) if t is None else t)
    return client.post(URL, data=raw, content_type="application/json", HTTP_X_BRIDGE_SIGNATURE=header)


def ok(response, outcome: str = "applied") -> None:
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "outcome": outcome}


def error_of(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    return response.json()["error"]


def order_events(order_id: str) -> list[Event]:
    return list(Event.objects.filter(thread_id=order_id).order_by("seq"))


def nothing_stored() -> bool:
    return not Order.objects.exists() and not InboxEvent.objects.exists()


# --- Signatures -------------------------------------------------------------------------------

pytest_db = pytest.mark.django_db


@pytest_db
def test_signed_event_is_applied(client):
    ok(post(client, event(snapshot("A1"), type="order.created")))
    assert Order.objects.filter(pk="A1").exists()


@pytest_db
def test_the_order_systems_category_is_kept_and_can_change(client):
    ok(post(client, event(snapshot("A1", category="Electronics "), type="order.created")))
    assert Order.objects.get(pk="A1").category == "Electronics"
    ok(post(client, event(snapshot("A1", version=2, category="phones"))))
    assert Order.objects.get(pk="A1").category == "phones"
    ok(post(client, event(snapshot("A2"), type="order.created")))  # none sent: empty
    assert Order.objects.get(pk="A2").category == ""


@pytest_db
def test_a_category_that_is_not_short_text_is_400(client):
    response = post(client, event(snapshot("A1", category=["electronics"]), type="order.created"))
    assert response.status_code == 400 and response.json()["error"]["field"] == "order.category"
    assert not Order.objects.filter(pk="A1").exists()


@pytest_db
def test_tampered_body_is_401_and_changes_nothing(client):
    raw = raw_of(event(snapshot("A1"), type="order.created"))
    header = sign(SECRET, raw, int(time.time()))
    tampered = raw.replace(b"19.90", b"0.01")
    error = error_of(post(client, tampered, header=header), 401)
    assert error == {"code": "unauthorized", "message": "The request signature is invalid."}
    assert nothing_stored()


@pytest_db
def test_wrong_secret_is_401(client):
    error = error_of(post(client, event(snapshot("A1")), secret="not-our-secret-" + "x" * 32), 401)
    assert error == {"code": "unauthorized", "message": "The request signature is invalid."}
    assert nothing_stored()


@pytest_db
def test_missing_signature_header_is_401(client):
    response = client.post(URL, data=raw_of(event(snapshot("A1"))), content_type="application/json")
    assert error_of(response, 401) == {
        "code": "unauthorized",
        "message": "The request signature is missing.",
    }
    assert nothing_stored()


@pytest_db
@pytest.mark.parametrize("header", ["nonsense", "t=abc,v1=00", "v1=" + "a" * 64, f"t={int(time.time())}"])
def test_malformed_signature_header_is_401_invalid(client, header):
    error = error_of(post(client, event(snapshot("A1")), header=header), 401)
    assert error == {"code": "unauthorized", "message": "The request signature is invalid."}
    assert nothing_stored()


@pytest_db
@pytest.mark.parametrize("skew", [-400, +400])
def test_stale_and_future_timestamps_beyond_300_s_are_401_expired(client, skew):
    error = error_of(post(client, event(snapshot("A1")), t=int(time.time()) + skew), 401)
    assert error == {"code": "unauthorized", "message": "The request signature has expired."}
    assert nothing_stored()


@pytest_db
@pytest.mark.parametrize("skew", [-250, +250])
def test_timestamps_within_the_window_are_accepted(client, skew):
    ok(post(client, event(snapshot("A1")), t=int(time.time()) + skew))


@pytest_db
def test_previous_secret_is_accepted_during_rotation(client):
    ok(post(client, event(snapshot("A1")), secret=PREVIOUS))


@pytest_db
def test_previous_secret_is_refused_after_rotation(client, bridge_secrets):
    bridge_secrets["SECRET_PREVIOUS"] = None
    error_of(post(client, event(snapshot("A1")), secret=PREVIOUS), 401)
    assert nothing_stored()


@pytest_db
def test_replayed_request_is_200_duplicate_with_no_effect(client):
    order = existing("R1", version=1)
    raw = raw_of(event(snapshot("R1", version=2, status="awaiting_shipment")))
    header = sign(SECRET, raw, int(time.time()))
    ok(post(client, raw, header=header))
    before = Order.objects.get(pk=order.pk)
    ok(post(client, raw, header=header), "duplicate")  # the very same request, replayed
    assert len(order_events("R1")) == 1
    assert thread_of(order).last_seq == 1
    assert Order.objects.get(pk="R1").updated_at == before.updated_at
    assert InboxEvent.objects.count() == 1


def test_the_bridge_reads_its_secrets_from_settings(settings):
    settings.BRIDGE = {"SECRET": SECRET, "SECRET_PREVIOUS": PREVIOUS, "WINDOW_S": 120}
    config = bridge_config()
    assert (config.accepted_secrets, config.window_s) == ([SECRET, PREVIOUS], 120)


# --- Body, type and fields --------------------------------------------------------------------


@pytest_db
@pytest.mark.parametrize(
    "raw, field",
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'"text"', None),
        (json.dumps({"type": "order.updated", "order": {}}).encode(), "event_id"),
        (json.dumps({"event_id": "", "type": "order.updated"}).encode(), "event_id"),
        (json.dumps({"event_id": "x" * 129, "type": "order.updated"}).encode(), "event_id"),
        (json.dumps({"event_id": "has space", "type": "order.updated"}).encode(), "event_id"),
        (json.dumps({"event_id": 17, "type": "order.updated"}).encode(), "event_id"),
        (json.dumps({"event_id": "e1"}).encode(), "type"),
        (json.dumps({"event_id": "e1", "type": "order.updated"}).encode(), "order"),
        (json.dumps({"event_id": "e1", "type": "order.updated", "order": [1]}).encode(), "order"),
    ],
)
def test_malformed_body_is_400_bad_request(client, raw, field):
    error = error_of(post(client, raw), 400)
    assert error["code"] == "bad_request"
    assert error.get("field") == field
    assert nothing_stored()


@pytest_db
def test_oversized_body_is_413(client):
    body = event(snapshot("A1", properties={"note": "x" * (256 * 1024)}))
    assert error_of(post(client, body), 413)["code"] == "too_large"
    assert nothing_stored()


@pytest_db
def test_get_is_405(client):
    assert client.get(URL).status_code == 405


@pytest_db
def test_unknown_event_type_is_422_and_not_recorded(client):
    error = error_of(post(client, event(snapshot("A1"), type="order.teleported")), 422)
    assert error["code"] == "unknown_type"
    assert nothing_stored()


@pytest_db
@pytest.mark.parametrize(
    "field, value",
    [
        ("order_id", None),
        ("order_id", "has space"),
        ("order_id", "x" * 65),
        ("order_id", "T1\n"),
        ("order_id", 5),
        ("buyer_id", None),
        ("buyer_id", "b/1"),
        ("seller_id", ""),
        ("seller_id", BUYER),
        ("status", "shipped"),
        ("status", None),
        ("amount", 19.9),
        ("amount", "19.999"),
        ("amount", "-1.00"),
        ("amount", "NaN"),
        ("amount", "1e3"),
        ("amount", "12345678901.00"),
        ("amount", None),
        ("currency", "usd"),
        ("currency", "US"),
        ("currency", None),
        ("version", 0),
        ("version", -1),
        ("version", "2"),
        ("version", True),
        ("version", 2**63),
        ("version", None),
        ("ordered_at", "2026-03-01T12:00:00"),
        ("ordered_at", "yesterday"),
        ("ordered_at", None),
        ("completed_at", "2026-03-01"),
        ("properties", [1]),
        ("properties", "colour=black"),
        ("properties", {"k": "\x00"}),
        ("properties", {"k": "\ud800"}),
        ("properties", {"k": "x" * 9000}),
        ("quantity", 0),
        ("quantity", 1.5),
        ("quantity", 2**31),
        ("item_title", ""),
        ("item_title", "x" * 301),
        ("item_title", "a\x00b"),
        ("item_title", None),
        ("supplier_name", "x" * 201),
        ("tracking_number", "x" * 65),
        ("tracking_number", 123),
    ],
)
def test_invalid_order_field_is_400_naming_the_field(client, field, value):
    body = snapshot("A1")
    body[field] = value
    error = error_of(post(client, event(body)), 400)
    assert error["code"] == "bad_request"
    assert error["field"] == f"order.{field}"
    assert nothing_stored()


@pytest_db
def test_optional_fields_take_their_defaults(client):
    body = snapshot("A1")
    for name in ("supplier_name", "properties", "quantity", "tracking_number"):
        del body[name]
    ok(post(client, event(body)))
    order = Order.objects.get(pk="A1")
    assert (order.supplier_name, order.properties, order.quantity, order.tracking_number) == (
        "",
        {},
        1,
        "",
    )


# --- Applying snapshots -----------------------------------------------------------------------


@pytest_db
def test_new_order_creates_the_order_and_its_thread(client):
    ok(
        post(
            client,
            event(
                snapshot("N1", version=3, amount="5.5", ordered_at="2026-03-01T14:00:00+02:00"),
                type="order.created",
            ),
        )
    )
    order = Order.objects.get(pk="N1")
    assert (order.buyer_id, order.seller_id, order.version, order.amount, order.status) == (
        BUYER,
        SELLER,
        3,
        Decimal("5.50"),
        "awaiting_payment",
    )
    assert order.ordered_at.isoformat() == "2026-03-01T12:00:00+00:00"
    thread = Thread.objects.get(pk="N1")
    assert (thread.buyer_id, thread.seller_id, thread.last_seq) == (BUYER, SELLER, 0)
    inbox = InboxEvent.objects.get()
    assert (inbox.type, inbox.order_id, inbox.outcome) == ("order.created", "N1", "applied")


@pytest_db
def test_update_for_an_unknown_order_creates_it_and_its_late_creation_is_stale(client):
    ok(post(client, event(snapshot("N2", version=2, status="awaiting_shipment"))))
    assert [e.body for e in order_events("N2")] == ["Paid — the seller will ship soon"]
    ok(post(client, event(snapshot("N2", version=1), type="order.created")), "stale")
    assert Order.objects.get(pk="N2").status == "awaiting_shipment"
    assert len(order_events("N2")) == 1


@pytest.mark.django_db(transaction=True)
def test_status_changes_become_thread_events_pushed_to_both_parties(client):
    ok(post(client, event(snapshot("S1"), type="order.created")))
    steps = [
        (2, {"status": "awaiting_shipment"}, "paid", "Paid — the seller will ship soon"),
        (
            3,
            {"status": "awaiting_acceptance", "tracking_number": "LP123456789CN"},
            "shipped",
            "Shipped — tracking LP123456789CN. Please confirm receipt when it arrives",
        ),
        (
            4,
            {"status": "completed", "tracking_number": "LP123456789CN"},
            "completed",
            "Delivered — the order is complete",
        ),
    ]
    for version, fields, change, body in steps:
        with fanout.collecting() as pushed:
            ok(post(client, event(snapshot("S1", version=version, **fields))))
        last = order_events("S1")[-1]
        assert (last.kind, last.author_role, last.author_id, last.body) == (
            EventKind.ORDER,
            "system",
            None,
            body,
        )
        assert last.data["change"] == change
        assert last.data["order"]["status"] == fields["status"] and last.data["order"]["version"] == version
        pushed_events = thread_events(pushed, "S1")
        assert [e["body"] for e in pushed_events] == [body]
        assert pushed_events[0]["seq"] == last.seq
        assert counts_to(pushed) == {BUYER, SELLER}
    assert [e.seq for e in order_events("S1")] == [1, 2, 3]
    assert Order.objects.get(pk="S1").completed_at is not None


@pytest.mark.django_db(transaction=True)
def test_nothing_is_pushed_for_a_stale_or_duplicate_event(client):
    existing("S2", version=5)
    body = event(snapshot("S2", version=6, status="awaiting_shipment"))
    ok(post(client, body))
    with fanout.collecting() as pushed:
        ok(post(client, body), "duplicate")
        ok(post(client, event(snapshot("S2", version=4, status="cancelled"))), "stale")
    assert pushed == []


@pytest_db
def test_completed_at_comes_from_the_snapshot_when_given(client):
    existing("C1", status="awaiting_acceptance")
    ok(
        post(
            client,
            event(snapshot("C1", version=2, status="completed", completed_at="2026-03-20T10:00:00+02:00")),
        )
    )
    assert Order.objects.get(pk="C1").completed_at.isoformat() == "2026-03-20T08:00:00+00:00"


@pytest_db
def test_cancellation_is_a_thread_event(client):
    existing("X1")
    ok(post(client, event(snapshot("X1", version=2, status="cancelled"))))
    assert [(e.data["change"], e.body) for e in order_events("X1")] == [("cancelled", "Cancelled")]


@pytest_db
def test_echo_of_the_buyers_own_cancel_adds_no_second_event(client):
    existing("X2")
    order_cancel(user_id=BUYER, order_id="X2")
    ok(post(client, event(snapshot("X2", version=2, status="cancelled"))))
    assert [e.body for e in order_events("X2")] == ["The buyer cancelled the order."]
    assert Order.objects.get(pk="X2").version == 2


@pytest_db
def test_price_change_says_the_new_and_old_price(client):
    existing("P1")
    ok(post(client, event(snapshot("P1", version=2, amount="17.50"))))
    ok(post(client, event(snapshot("P1", version=3, amount="16.00", currency="EUR"))))
    assert [(e.data["change"], e.body) for e in order_events("P1")] == [
        ("price_changed", "Price changed to 17.50 USD (was 19.90)"),
        ("price_changed", "Price changed to 16.00 EUR (was 17.50 USD)"),
    ]
    assert Order.objects.get(pk="P1").amount == Decimal("16.00")


@pytest_db
def test_price_change_and_payment_in_one_snapshot_read_in_order(client):
    existing("P2")
    ok(post(client, event(snapshot("P2", version=2, amount="17.50", status="awaiting_shipment"))))
    assert [e.body for e in order_events("P2")] == [
        "Price changed to 17.50 USD (was 19.90)",
        "Paid — the seller will ship soon",
    ]


@pytest_db
def test_tracking_number_changes_are_thread_events(client):
    existing("T1", status="awaiting_acceptance", tracking_number="LP1")
    ok(
        post(
            client,
            event(snapshot("T1", version=2, status="awaiting_acceptance", tracking_number="LP2")),
        )
    )
    ok(
        post(
            client,
            event(snapshot("T1", version=3, status="awaiting_acceptance", tracking_number="")),
        )
    )
    ok(
        post(
            client,
            event(snapshot("T1", version=4, status="awaiting_acceptance", tracking_number="LP3")),
        )
    )
    assert [e.body for e in order_events("T1")] == [
        "Tracking number changed to LP2",
        "Tracking number removed",
        "Tracking number added: LP3",
    ]


@pytest_db
def test_details_changes_are_one_thread_event(client):
    existing("D1")
    ok(post(client, event(snapshot("D1", version=2, quantity=2, properties={"colour": "white"}))))
    events = order_events("D1")
    assert [(e.data["change"], e.body) for e in events] == [
        ("details_changed", "Order details updated: item options, quantity")
    ]
    assert events[0].data["order"]["quantity"] == 2


@pytest_db
def test_a_version_bump_alone_is_applied_without_a_thread_event(client):
    existing("V1")
    ok(post(client, event(snapshot("V1", version=2))))
    assert Order.objects.get(pk="V1").version == 2
    assert order_events("V1") == []


@pytest_db
@pytest.mark.parametrize("older", [2, 3])
def test_stale_version_is_acknowledged_and_ignored(client, older):
    existing("O1")
    ok(post(client, event(snapshot("O1", version=3, status="awaiting_shipment", amount="18.00"))))
    before = Order.objects.get(pk="O1")
    seq = thread_of(before).last_seq
    ok(
        post(client, event(snapshot("O1", version=older, status="cancelled", amount="1.00"))),
        "stale",
    )
    after = Order.objects.get(pk="O1")
    assert [getattr(after, f) for f in ORDER_FIELDS] == [getattr(before, f) for f in ORDER_FIELDS]
    assert thread_of(after).last_seq == seq
    assert sorted(InboxEvent.objects.values_list("outcome", flat=True)) == ["applied", "stale"]


@pytest_db
def test_buyer_or_seller_of_an_existing_order_cannot_change(client):
    existing("O2")
    error = error_of(post(client, event(snapshot("O2", version=2, seller_id="s2"))), 400)
    assert error["field"] == "order.seller_id"
    assert Order.objects.get(pk="O2").seller_id == SELLER and not InboxEvent.objects.exists()


@pytest_db
def test_leaving_awaiting_payment_expires_the_live_offer(client):
    existing("L1")
    offer = offer_request(user_id=BUYER, order_id="L1", note="cheaper?")
    ok(post(client, event(snapshot("L1", version=2, status="awaiting_shipment"))))
    offer.refresh_from_db()
    assert offer.status == "expired" and offer.closed_at is not None
    assert [(e.kind, e.body) for e in order_events("L1")] == [
        (EventKind.OFFER, "The buyer asked for a better price. “cheaper?”"),
        (EventKind.ORDER, "Paid — the seller will ship soon"),
        (EventKind.OFFER, "The offer expired because the order is no longer awaiting payment."),
    ]
    assert not Offer.objects.filter(order_id="L1", status__in=["requested", "open"]).exists()


# --- dispute.decided --------------------------------------------------------------------------


def open_dispute(order_id: str) -> Dispute:
    existing(order_id, status="awaiting_acceptance")
    return dispute_open(
        user_id=BUYER,
        order_id=order_id,
        reason="not_received",
        refund_amount="19.90",
        return_item=False,
        details="never came",
    )


def decided(dispute: Dispute, refund: str = "19.90", **fields: Any) -> dict[str, Any]:
    return event(
        type="dispute.decided",
        dispute={
            "dispute_id": str(dispute.pk),
            "refund_amount": refund,
            "note": "Refunded.",
            **fields,
        },
    )


@pytest_db
def test_dispute_decision_settles_the_dispute_in_the_thread(client):
    dispute = open_dispute("DD1")
    ok(post(client, decided(dispute)))
    dispute.refresh_from_db()
    assert (dispute.status, dispute.agreed_amount, dispute.decision_note) == (
        "resolved",
        Decimal("19.90"),
        "Refunded.",
    )
    last = order_events("DD1")[-1]
    assert last.kind == EventKind.DISPUTE and last.data["change"] == "decided"
    assert InboxEvent.objects.get().order_id == "DD1"


@pytest_db
def test_dispute_decision_on_a_closed_dispute_is_acknowledged_as_stale(client):
    dispute = open_dispute("DD2")
    dispute_cancel(user_id=BUYER, dispute_id=str(dispute.pk))
    seq = thread_of(dispute.order).last_seq
    ok(post(client, decided(dispute)), "stale")
    dispute.refresh_from_db()
    assert dispute.status == "cancelled" and dispute.agreed_amount is None
    assert thread_of(dispute.order).last_seq == seq
    assert InboxEvent.objects.get().outcome == "stale"


@pytest_db
def test_dispute_decision_for_an_unknown_dispute_is_404(client):
    body = event(type="dispute.decided", dispute={"dispute_id": "999999", "refund_amount": "1.00"})
    assert error_of(post(client, body), 404)["code"] == "not_found"
    assert not InboxEvent.objects.exists()


@pytest_db
@pytest.mark.parametrize(
    "dispute, field",
    [
        (None, "dispute"),
        ({"dispute_id": "abc", "refund_amount": "1.00"}, "dispute.dispute_id"),
        ({"dispute_id": 5, "refund_amount": "1.00"}, "dispute.dispute_id"),
        ({"dispute_id": "5"}, "dispute.refund_amount"),
    ],
)
def test_malformed_dispute_decision_is_400(client, dispute, field):
    body = event(type="dispute.decided", **({"dispute": dispute} if dispute is not None else {}))
    assert error_of(post(client, body), 400)["field"] == field


@pytest_db
def test_dispute_decision_above_what_was_paid_is_400_and_not_recorded(client):
    dispute = open_dispute("DD3")
    assert error_of(post(client, decided(dispute, refund="50.00")), 400)["field"] == "refund_amount"
    dispute.refresh_from_db()
    assert dispute.status == "open" and not InboxEvent.objects.exists()


# --- Concurrency and delivery order -----------------------------------------------------------


def deliver_concurrently(bodies: list[bytes], *, threads: int = 16) -> list[tuple[int, str, list]]:
    """POST every body from ``threads`` threads at once; (status, outcome, pushes) each."""
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    results: list[tuple[int, str, list]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker() -> None:
        client = Client()
        try:
            start.wait()
            while True:
                try:
                    raw = work.get_nowait()
                except queue.Empty:
                    return
                with fanout.collecting() as pushed:
                    response = post(client, raw)
                results.append((response.status_code, response.json().get("outcome", ""), list(pushed)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert failures == []
    return results


@pytest.mark.django_db(transaction=True)
def test_100_events_delivered_10_times_concurrently_have_exactly_100_effects():
    ids = [f"C{i:03d}" for i in range(100)]
    for order_id in ids:
        existing(order_id, version=1)
    bodies = [
        raw_of(
            event(
                snapshot(order_id, version=2, status="awaiting_shipment"),
                event_id=f"evt-{order_id}",
            )
        )
        for order_id in ids
    ]
    deliveries = bodies * 10
    random.Random(100).shuffle(deliveries)

    results = deliver_concurrently(deliveries)

    assert Counter((status, outcome) for status, outcome, _ in results) == {
        (200, "applied"): 100,
        (200, "duplicate"): 900,
    }
    assert Event.objects.filter(kind=EventKind.ORDER).count() == 100
    assert sorted(Thread.objects.values_list("last_seq", flat=True)) == [1] * 100
    assert InboxEvent.objects.filter(outcome="applied").count() == InboxEvent.objects.count() == 100
    pushed = [envelope["o"] for _, _, pushes in results for _, envelope in decoded(pushes) if envelope["k"] == "event"]
    assert sorted(pushed) == ids
    assert set(Order.objects.values_list("status", flat=True)) == {"awaiting_shipment"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_events_for_one_order_serialize_and_the_newest_version_wins():
    existing("Q1", amount=Decimal("1.00"))
    bodies = [raw_of(event(snapshot("Q1", version=v, amount=f"{v}.00"), event_id=f"evt-q{v}")) for v in range(2, 32)]
    deliveries = bodies * 3
    random.Random(31).shuffle(deliveries)

    results = deliver_concurrently(deliveries, threads=12)

    outcomes = Counter(outcome for _, outcome, _ in results)
    assert outcomes["duplicate"] == 60 and outcomes["applied"] + outcomes["stale"] == 30
    order = Order.objects.get(pk="Q1")
    assert (order.version, order.amount) == (31, Decimal("31.00"))
    events = order_events("Q1")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(events) == outcomes["applied"] == InboxEvent.objects.filter(outcome="applied").count()
    versions = [e.data["order"]["version"] for e in events]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_events_of_new_orders_create_each_order_once():
    # Creation and the first update of each new order race each other: whichever inserts
    # the order first wins, the other finds it and is applied on top of it or is stale.
    bodies = []
    for i in range(30):
        bodies.append(raw_of(event(snapshot(f"F{i:02d}"), type="order.created", event_id=f"evt-f{i}-1")))
        bodies.append(
            raw_of(
                event(
                    snapshot(f"F{i:02d}", version=2, status="awaiting_shipment"),
                    event_id=f"evt-f{i}-2",
                )
            )
        )
    deliveries = bodies * 3
    random.Random(30).shuffle(deliveries)

    results = deliver_concurrently(deliveries)

    assert {status for status, _, _ in results} == {200}
    assert Counter(outcome for _, outcome, _ in results)["duplicate"] == 120
    assert Order.objects.count() == Thread.objects.count() == 30
    assert set(Order.objects.values_list("version", "status")) == {(2, "awaiting_shipment")}
    # Either order of arrival ends with exactly one "Paid" in each thread.
    assert sorted(Event.objects.values_list("thread_id", "body")) == [
        (f"F{i:02d}", "Paid — the seller will ship soon") for i in range(30)
    ]


def lifecycle(i: int) -> list[dict[str, Any]]:
    """Four snapshots of order i (create + three updates), each with its own event id."""
    order_id = f"M{i:03d}"
    base = dict(
        amount="19.90",
        item_title=f"Item {i}",
        properties={"size": ["S", "M", "L"][i % 3]},
        buyer_id=f"mb{i}",
        seller_id=f"ms{i % 7}",
    )
    if i % 5 == 0:  # price agreed while awaiting payment, paid, then cancelled by the marketplace
        steps = [
            dict(status="awaiting_payment"),
            dict(status="awaiting_payment", amount="15.00"),
            dict(status="awaiting_shipment", amount="15.00"),
            dict(status="cancelled", amount="15.00"),
        ]
    else:
        steps = [
            dict(status="awaiting_payment"),
            dict(status="awaiting_shipment", quantity=1 + i % 2),
            dict(status="awaiting_acceptance", quantity=1 + i % 2, tracking_number=f"LP{i:09d}"),
            dict(
                status="completed",
                quantity=1 + i % 2,
                tracking_number=f"LP{i:09d}" if i % 4 else f"LQ{i}",
                completed_at=f"2026-03-{1 + i % 28:02d}T10:00:00Z",
            ),
        ]
    return [
        event(
            snapshot(order_id, version=v, **{**base, **step}),
            type="order.created" if v == 1 else "order.updated",
            event_id=f"evt-{order_id}-{v}",
        )
        for v, step in enumerate(steps, start=1)
    ]


def final_rows() -> list[dict[str, Any]]:
    return list(Order.objects.order_by("order_id").values(*ORDER_FIELDS))


@pytest_db
def test_200_orders_delivered_in_random_order_with_duplicates_end_as_in_order_delivery(client):
    per_order = [lifecycle(i) for i in range(200)]

    for events in per_order:
        for body in events:
            ok(post(client, body))
    in_order = final_rows()
    assert len(in_order) == 200
    # In-order delivery ends at each order's last snapshot.
    for row, events in zip(in_order, per_order, strict=True):
        last = events[-1]["order"]
        assert (row["version"], row["status"], row["amount"], row["tracking_number"]) == (
            4,
            last["status"],
            Decimal(last["amount"]),
            last.get("tracking_number", ""),
        )

    Order.objects.all().delete()  # cascades to threads and their events
    InboxEvent.objects.all().delete()
    rng = random.Random(2026)
    deliveries = [body for events in per_order for body in events]
    deliveries += rng.sample(deliveries, len(deliveries) // 4)
    rng.shuffle(deliveries)
    outcomes = Counter()
    for body in deliveries:
        response = post(client, body)
        assert response.status_code == 200, response.content
        outcomes[response.json()["outcome"]] += 1

    assert final_rows() == in_order
    assert outcomes["duplicate"] == len(deliveries) - 800
    assert outcomes["stale"] > 0  # the shuffle did deliver older versions after newer ones
    assert Thread.objects.count() == 200
