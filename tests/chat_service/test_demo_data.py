"""The demo: seed_demo's data, chat_token's tokens, and what `manage.py demo` prints and serves."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from chat_service import demo_data
from chat_service.client import ChatClient
from chat_service.commerce.models import Order, OrderStatus
from chat_service.management.commands import demo as demo_command
from chat_service.threads.models import Event, Thread
from chat_service.threads.services import message_send
from chat_service.transport.identity import token_verify
from tests.factories import make_order

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {OrderStatus.AWAITING_ACCEPTANCE, OrderStatus.COMPLETED}


def run_command(*args: str, **options: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def thread_snapshot() -> list[list[tuple[Any, ...]]]:
    """Everything a re-seed could duplicate or disturb, in a comparable form."""
    orders = list(Order.objects.order_by("order_id").values_list())
    threads = list(Thread.objects.order_by("order_id").values_list())
    events = list(Event.objects.order_by("thread_id", "seq").values_list("id", "thread_id", "seq", "client_msg_id"))
    return [orders, threads, events]


# --- seed_demo ---------------------------------------------------------------------------


def test_seed_creates_the_buyers_orders_from_five_sellers_in_every_status():
    before = timezone.now()
    run_command("seed_demo")

    orders = list(Order.objects.filter(order_id__in=demo_data.ORDER_IDS))
    assert len(orders) == len(demo_data.ORDERS) >= 20
    assert {o.buyer_id for o in orders} == {"buyer-ann"}
    sellers = {s.id: s.name for s in demo_data.SELLERS}
    assert len(sellers) == 5
    assert {o.seller_id for o in orders} == set(sellers)
    assert all(o.supplier_name == sellers[o.seller_id] for o in orders)
    assert {o.status for o in orders} == set(OrderStatus.values)
    for order in orders:
        demo = demo_data.ORDERS_BY_ID[order.order_id]
        assert (
            order.item_title,
            order.properties,
            order.quantity,
            order.amount,
            order.currency,
        ) == (
            demo.item_title,
            demo.properties,
            demo.quantity,
            demo.amount,
            "USD",
        )
        if order.status in SHIPPED:
            assert order.tracking_number.startswith("LP00"), order.order_id
        else:
            assert order.tracking_number == "", order.order_id
        assert before - timedelta(days=60) <= order.ordered_at <= before, order.order_id
        thread = Thread.objects.get(pk=order.pk)
        assert (thread.buyer_id, thread.seller_id) == (order.buyer_id, order.seller_id)
    spread = max(o.ordered_at for o in orders) - min(o.ordered_at for o in orders)
    assert spread > timedelta(days=45)


def test_demo_amounts_are_two_place_decimals_and_order_ids_are_unique():
    # The DB rounds to 2 places on the way in, so the data module is where this can break.
    assert all(o.amount.as_tuple().exponent == -2 and o.amount > 0 for o in demo_data.ORDERS)
    assert len(set(demo_data.ORDER_IDS)) == len(demo_data.ORDERS)
    assert demo_data.CHAT_ORDER.order_id == "A10001"


def test_seeded_messages_have_gapless_seqs_and_the_unread_counts_they_imply():
    run_command("seed_demo")

    by_order: dict[str, list[demo_data.DemoMessage]] = {}
    for message in demo_data.MESSAGES:
        by_order.setdefault(message.order_id, []).append(message)
    assert len(by_order) >= 5
    for order_id, messages in by_order.items():
        thread = Thread.objects.get(pk=order_id)
        events = list(Event.objects.filter(thread=thread).order_by("seq"))
        assert [e.seq for e in events] == list(range(1, len(messages) + 1))
        assert thread.last_seq == len(messages)
        assert [(e.author_id, e.client_msg_id, e.body) for e in events] == [
            (m.author_id, m.client_msg_id, m.body) for m in messages
        ]
        # Each party has read up to their own last message and not what came after it.
        authors = [m.author_id for m in messages]
        for party, unread in (
            (thread.buyer_id, thread.buyer_unread),
            (thread.seller_id, thread.seller_unread),
        ):
            last_own = max((i for i, a in enumerate(authors) if a == party), default=-1)
            assert unread == len(authors) - 1 - last_own, (order_id, party)
    # Both consoles have something unread.
    assert sum(t.buyer_unread for t in Thread.objects.all()) > 0
    assert sum(t.seller_unread for t in Thread.objects.all()) > 0
    assert not Event.objects.exclude(thread_id__in=list(by_order)).exists()


def test_seeding_twice_duplicates_nothing():
    run_command("seed_demo")
    first = thread_snapshot()

    output = run_command("seed_demo")

    assert thread_snapshot() == first
    n, m = len(demo_data.ORDERS), len(demo_data.MESSAGES)
    assert f"(0 created, {n} already there)" in output
    assert f"(0 created, {m} already there)" in output


def test_seeding_again_keeps_what_happened_in_the_demo_since():
    run_command("seed_demo")
    Order.objects.filter(pk="A10002").update(status=OrderStatus.CANCELLED)
    extra = message_send(user_id="buyer-ann", order_id="A10001", client_msg_id="mine-1", body="Deal!").event

    run_command("seed_demo")

    assert Order.objects.get(pk="A10002").status == OrderStatus.CANCELLED
    assert list(Event.objects.filter(thread_id="A10001").order_by("seq").values_list("id", flat=True))[-1] == extra.id
    assert Thread.objects.get(pk="A10001").last_seq == extra.seq


def demo_order_content() -> list[dict[str, Any]]:
    """The demo orders without the fields that depend on when they were seeded."""
    fields = [f.name for f in Order._meta.fields if f.name not in {"ordered_at", "updated_at"}]
    return list(Order.objects.filter(order_id__in=demo_data.ORDER_IDS).order_by("order_id").values(*fields))


def test_reset_restores_the_demo_orders_and_spares_other_orders():
    run_command("seed_demo")
    seeded = demo_order_content()
    message_send(user_id="buyer-ann", order_id="A10001", client_msg_id="mine-1", body="Deal!")
    Order.objects.filter(pk="A10002").update(status=OrderStatus.CANCELLED)
    other = make_order(buyer_id="buyer-ann", seller_id="seller-lumen")
    message_send(user_id="buyer-ann", order_id=other.order_id, client_msg_id="other-1", body="Hi")

    output = run_command("seed_demo", "--reset")

    assert f"Deleted {len(demo_data.ORDERS)} demo orders" in output
    demo_events = Event.objects.filter(thread_id__in=demo_data.ORDER_IDS)
    assert demo_events.count() == len(demo_data.MESSAGES)
    assert not demo_events.filter(client_msg_id="mine-1").exists()
    assert Thread.objects.get(pk="A10001").last_seq == 2
    assert Order.objects.get(pk="A10002").status == OrderStatus.AWAITING_PAYMENT
    assert demo_order_content() == seeded
    assert Order.objects.filter(pk=other.pk).exists()
    assert Event.objects.filter(thread_id=other.pk, client_msg_id="other-1").exists()


# --- chat_token ----------------------------------------------------------------------------


def test_chat_token_prints_only_a_token_naming_the_demo_user():
    output = run_command("chat_token", "buyer-ann")

    token = output.strip()
    assert output == token + "\n" and " " not in token  # usable as TOKEN=$(manage.py chat_token ...)
    identity = token_verify(token)
    assert (identity.id, identity.name) == ("buyer-ann", "Ann Buyer")
    assert time.time() + 3590 < identity.expires_at <= time.time() + 3600


def test_chat_token_takes_a_name_and_a_ttl():
    token = run_command("chat_token", "someone-else", "--name", "Some One", "--ttl", "120").strip()

    identity = token_verify(token)
    assert (identity.id, identity.name) == ("someone-else", "Some One")
    assert time.time() + 110 < identity.expires_at <= time.time() + 120


def test_chat_token_refuses_what_token_verify_would_refuse():
    with pytest.raises(CommandError, match="--ttl"):
        run_command("chat_token", "buyer-ann", "--ttl", "0")
    with pytest.raises(CommandError, match="USER_ID"):
        run_command("chat_token", "x" * 65)


# --- demo ------------------------------------------------------------------------------------


CLIENT_LINE = re.compile(
    r"^  (buyer|seller): +(\S+) -m chat_service\.client --url (\S+) --token (\S+) --order (\S+)$",
    re.M,
)


def test_demo_no_serve_seeds_and_prints_urls_tokens_and_client_commands(monkeypatch):
    monkeypatch.setattr(demo_command, "serve", lambda **kw: pytest.fail("--no-serve served"))

    output = run_command("demo", "--no-serve", "--port", "8123")

    assert Order.objects.filter(order_id__in=demo_data.ORDER_IDS).count() == len(demo_data.ORDERS)
    for url in (
        "http://127.0.0.1:8123/healthz",
        "http://127.0.0.1:8123/api/threads/",
        "http://127.0.0.1:8123/api/schema/",
        "ws://127.0.0.1:8123/ws/",
    ):
        assert url in output
    clients = {m[1]: m.groups()[1:] for m in CLIENT_LINE.finditer(output)}
    assert set(clients) == {"buyer", "seller"}
    for role, user_id in (("buyer", "buyer-ann"), ("seller", "seller-lumen")):
        python, url, token, order_id = clients[role]
        assert (python, url, order_id) == (
            demo_command.python_command(),
            "ws://127.0.0.1:8123/ws/",
            "A10001",
        )
        identity = token_verify(token)
        assert identity.id == user_id
        assert identity.expires_at > time.time() + 3600  # outlives an afternoon's chat
    assert f'curl -H "Authorization: Bearer {clients["buyer"][2]}" http://127.0.0.1:8123/api/threads/' in output
    assert "Not serving" in output


def test_demo_serves_on_the_given_address_after_printing(monkeypatch):
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(demo_command, "serve", lambda **kw: served.append(kw))

    output = run_command("demo", "--host", "0.0.0.0", "--port", "8124")

    assert served == [{"host": "0.0.0.0", "port": 8124}]
    # A wildcard bind is reached on loopback.
    assert "ws://127.0.0.1:8124/ws/" in output and "0.0.0.0" not in output.split("Serving")[0]
    argv = demo_command.daphne_argv(host="0.0.0.0", port=8124)
    # The Procfile's web command: the same program and flags, on the demo's address.
    procfile = next(
        line for line in Path(settings.BASE_DIR, "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    assert " ".join(argv[1:]) == procfile.replace("$PORT", "8124").removeprefix("web: python ")
    assert argv[-1] == "chat_service.asgi:application"
    assert argv[argv.index("--websocket-max-message-size") + 1] == str(settings.CHAT["MAX_FRAME_BYTES"])
    assert "tcp:port=8124:interface=0.0.0.0:backlog=4096" in argv


def test_demo_warns_when_the_host_is_not_allowed():
    text = demo_command.guide(host="10.1.2.3", port=8000, buyer_token="b", seller_token="s", python="py")

    assert "Note: 10.1.2.3 is not in ALLOWED_HOSTS" in text
    assert "Note:" not in demo_command.guide(host="localhost", port=80, buyer_token="b", seller_token="s", python="py")
    assert "ws://[::1]:8000/ws/" in demo_command.guide(
        host="::1", port=8000, buyer_token="b", seller_token="s", python="py"
    )


# --- demo on the embedded default, for real ------------------------------------------------


def _embedded_env(var_dir: Path) -> dict[str, str]:
    """The environment of someone who configured nothing (tests/settings.py set ours)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "DEBUG",
            "SECRET_KEY",
            "CHAT_TOKEN_SECRET",
            "DATABASE_TEST_NAME",
            "REDIS_PREFIX",
            "ALLOWED_HOSTS",
        }
    }
    env.update(DJANGO_SETTINGS_MODULE="chat_service.settings", VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_health(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"demo exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within 30 s:\n{log.read_text()}")


@pytest.mark.e2e
def test_demo_on_the_embedded_default_migrates_seeds_and_serves_what_it_printed(tmp_path):
    env, port = _embedded_env(tmp_path / "var"), _free_port()
    manage = [sys.executable, "manage.py", "demo", "--port", str(port)]

    prepared = subprocess.run(
        [*manage, "--no-serve"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert prepared.returncode == 0, prepared.stderr
    with sqlite3.connect(tmp_path / "var" / "chat.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM orders_bridge_order").fetchone()[0] == len(demo_data.ORDERS)
        assert db.execute("SELECT count(*) FROM chat_service_event").fetchone()[0] == len(demo_data.MESSAGES)

    log = tmp_path / "demo.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(manage, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_for_health(f"http://127.0.0.1:{port}/healthz", server, log)
        output = log.read_text()
        assert "(0 created," in output  # the second run seeded nothing new
        clients = {m[1]: m.groups()[1:] for m in CLIENT_LINE.finditer(output)}
        python, url, buyer_token, order_id = clients["buyer"]
        assert os.access(REPO_ROOT / python, os.X_OK)  # "run from the repository root"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/threads/",
            headers={"Authorization": f"Bearer {buyer_token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert len(json.load(response)["threads"]) == len(demo_data.ORDERS)
        # What the two printed client commands do, with the URL, tokens and order they name
        # (driving the client library: its CLI is for people at a terminal).
        heard = asyncio.run(_buyer_says_seller_hears(url, buyer_token, clients["seller"][2], order_id))
        assert heard["event"]["author_id"] == "buyer-ann"
        assert heard["event"]["body"] == "Is it still available?"
        assert heard["event"]["seq"] == 3  # after the two seeded messages of A10001
    finally:
        server.terminate()
        server.wait(timeout=15)


async def _buyer_says_seller_hears(url: str, buyer_token: str, seller_token: str, order_id: str) -> dict[str, Any]:
    async with ChatClient.connect(url, buyer_token) as buyer:
        async with ChatClient.connect(url, seller_token) as seller:
            assert (buyer.hello or {})["user"]["id"] == "buyer-ann"
            assert (seller.hello or {})["user"]["id"] == "seller-lumen"
            joined = await seller.request("thread.join", order_id=order_id)
            assert [e["client_msg_id"] for e in joined["events"]] == [
                m.client_msg_id for m in demo_data.MESSAGES if m.order_id == order_id
            ]
            await buyer.request("thread.join", order_id=order_id)
            await buyer.send_message(order_id, "Is it still available?")
            return await seller.next_frame("thread.event", timeout=10)
