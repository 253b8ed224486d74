"""A long thread opened through a server run with the Procfile's flags.

``--websocket-max-message-size`` caps what Daphne (autobahn) *sends* as well as what it
takes in: a larger outbound frame is refused (PayloadExceededError, logged) and nothing
is sent. A thread.join reply carries up to JOIN_MAX_EVENTS events, far more than the cap
for a long thread, so every outbound frame is built within the cap: the reply takes the
events that fit, and the rest is streamed (a rejoin) or paged over HTTP (a fresh open).
The servers here are the Procfile's command (tests/e2e/servers.py); the client reads raw
frames, so that it sees each frame's size and exactly what was sent.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async

from chat_service.serving import max_message_bytes
from chat_service.threads import services
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BUYER, SELLER = "buyer-cap", "seller-cap"
EVENTS = 300
BODY = "Is the charger the 65 W one, with the EU plug and the braided cable? " * 7  # ~480 characters


@database_sync_to_async
def long_thread() -> str:
    order = make_order(buyer_id=BUYER, seller_id=SELLER)
    for i in range(EVENTS):
        author = BUYER if i % 2 == 0 else SELLER
        services.message_send(user_id=author, order_id=order.pk, client_msg_id=f"m{i}", body=f"{i}: {BODY}")
    return order.pk


async def open_socket(server, user_id: str):
    socket = await websockets.connect(
        f"{server.ws_url}?token={token_for(user_id)}", origin=server.http_url, max_size=2**22
    )
    hello = json.loads(await socket.recv())
    assert hello["type"] == "hello" and hello["limits"]["max_frame_bytes"] <= max_message_bytes()
    return socket


async def frames_until(socket, done, timeout: float = 20) -> list[tuple[int, dict]]:
    """(size in bytes, frame) of every frame until ``done(frame)`` (timeout: a liveness bound)."""
    received = []
    async with asyncio.timeout(timeout):
        while True:
            raw = await socket.recv()
            frame = json.loads(raw)
            received.append((len(raw.encode()), frame))
            if done(frame):
                return received


async def test_a_rejoin_of_a_300_event_thread_gets_every_event_once_in_order_within_the_frame_cap(daphne):
    server = await daphne.start_one()
    order_id = await long_thread()
    socket = await open_socket(server, SELLER)
    try:
        await socket.send(json.dumps({"type": "thread.join", "ref": "j", "order_id": order_id, "since_seq": 0}))
        received = await frames_until(
            socket,
            lambda f: (
                f.get("type") == "thread.event"
                and f["event"]["seq"] == EVENTS
                or f.get("type") == "reply"
                and not f.get("data", {}).get("has_more")
            ),
        )
        sizes = [size for size, _ in received]
        reply = received[0][1]
        assert reply["type"] == "reply" and reply["ok"] and reply["data"]["has_more"] is True
        seqs = [e["seq"] for e in reply["data"]["events"]]
        seqs += [f["event"]["seq"] for _, f in received[1:] if f["type"] == "thread.event"]
        assert seqs == list(range(1, EVENTS + 1))
        assert len(reply["data"]["events"]) < EVENTS  # the cap mattered
        assert max(sizes) <= max_message_bytes()
        with pytest.raises(TimeoutError):  # and nothing twice
            await frames_until(socket, lambda f: f.get("type") == "thread.event", timeout=0.5)
    finally:
        await socket.close()


async def test_opening_a_300_event_thread_shows_the_newest_page_and_the_rest_pages_over_http(daphne):
    server = await daphne.start_one()
    order_id = await long_thread()
    socket = await open_socket(server, BUYER)
    try:
        await socket.send(json.dumps({"type": "thread.join", "ref": "j", "order_id": order_id}))
        [(size, reply)] = await frames_until(socket, lambda f: f.get("type") == "reply")
        assert size <= max_message_bytes() and reply["ok"]
        data = reply["data"]
        newest = [e["seq"] for e in data["events"]]
        assert newest == list(range(EVENTS - len(newest) + 1, EVENTS + 1)) and data["has_more"] is True
        assert data["last_seq"] == EVENTS
        older = await asyncio.to_thread(page_back, server, order_id, before_seq=newest[0])
        assert older + newest == list(range(1, EVENTS + 1))
    finally:
        await socket.close()


def page_back(server, order_id: str, *, before_seq: int) -> list[int]:
    """Every earlier seq, paged with GET .../events/?before_seq= as the widget's "Load earlier" does."""
    import urllib.request

    seqs: list[int] = []
    while True:
        request = urllib.request.Request(
            f"{server.http_url}/api/threads/{order_id}/events/?before_seq={before_seq}&limit=100",
            headers={"Authorization": f"Bearer {token_for(BUYER)}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            page = json.loads(response.read())
        seqs = [e["seq"] for e in page["events"]] + seqs
        if not page["has_more"]:
            return seqs
        before_seq = page["events"][0]["seq"]
