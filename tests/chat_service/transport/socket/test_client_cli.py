"""The embedded default as a newcomer runs it (`manage.py demo`: one Daphne process, SQLite,
in-memory layer): two people chat from two terminals with the command-line client, and
the worker's jobs run inside that one process so an accepted offer changes the price live."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def demo_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="chat_service.settings")
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail((tmp_path / "server.log").read_text())
    yield port, env
    server.terminate()
    server.wait(10)


def token(env, user):
    return subprocess.run(
        [sys.executable, "manage.py", "chat_token", user], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_two_terminals_chat_live_and_exit_at_end_of_input(demo_server):
    port, env = demo_server
    url = f"ws://127.0.0.1:{port}/ws/"

    def client(user):
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chat_service.client",
                "--url",
                url,
                "--token",
                token(env, user),
                "--order",
                "A10001",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    seller = client("seller-lumen")
    assert "connected as seller-lumen" in seller.stdout.readline()
    buyer = client("buyer-ann")
    assert "connected as buyer-ann" in buyer.stdout.readline()
    buyer.stdin.write("Hello from the terminal\n")
    buyer.stdin.flush()
    deadline = time.monotonic() + 20
    seen = ""
    while "buyer-ann: Hello from the terminal" not in seen and time.monotonic() < deadline:
        seen += seller.stdout.readline()
    assert "buyer-ann: Hello from the terminal" in seen
    for proc in (buyer, seller):
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0


def test_embedded_demo_applies_an_accepted_offer_live(demo_server):
    from chat_service.client import ChatClient

    port, env = demo_server
    url = f"ws://127.0.0.1:{port}/ws/"

    async def scenario():
        buyer = await ChatClient.open(url, token(env, "buyer-ann"))
        seller = await ChatClient.open(url, token(env, "seller-tessa"))
        try:
            await buyer.request("thread.join", order_id="A10002")
            made = await seller.request("offer.make", order_id="A10002", price="30.00")
            await buyer.request("offer.accept", offer_id=made["offer"]["offer_id"])
            changed = await buyer.next_frame(
                "thread.event", timeout=20, where=lambda f: f["event"]["data"].get("change") == "price_changed"
            )
            return changed["event"]
        finally:
            await buyer.close()
            await seller.close()

    event = asyncio.run(scenario())
    assert event["kind"] == "order" and event["data"]["order"]["amount"] == "30.00"
    assert "30.00" in event["body"] and "38.40" in event["body"]
