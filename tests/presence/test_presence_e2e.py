"""Seller presence on the real stack: several Daphne processes sharing Redis and PostgreSQL.

The seller is connected to process A; buyers watch through processes B and C (both of
whose supervisors sweep). Changes cross processes; after kill -9 of A (no disconnect
handler runs) every watcher sees the seller turn grey once, within the crash bound.

Timings are shortened through the servers' environment. The waits below are generous
upper bounds for "it happens at all", not measurements.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator

import pytest
from channels.db import database_sync_to_async

from chat_service.client import ChatClient
from tests.e2e.servers import DaphneServer, spawn
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SERVER_ENV = {
    "CHAT_CONNECTION_TTL_S": "5",  # the smallest the settings allow
    "CHAT_SUPERVISOR_TICK_S": "0.2",
    "CHAT_PRESENCE_SWEEP_S": "0.5",
    "CHAT_PRESENCE_GRACE_S": "1",
}
# TTL + sweep + tick is the bound; the rest is slack for a loaded test machine.
CRASH_BOUND_S = 5 + 0.5 + 0.2
WAIT_S = CRASH_BOUND_S + 10


@pytest.fixture
async def servers(transactional_db: None) -> AsyncIterator[list[DaphneServer]]:
    started = [spawn(f"presence-{name}", SERVER_ENV) for name in "ABC"]
    try:
        await asyncio.gather(*(s.wait_healthy() for s in started))
        yield started
    finally:
        for server in started:
            server.cleanup()


async def http_presence(server: DaphneServer, seller_id: str) -> dict:
    request = urllib.request.Request(
        f"{server.http_url}/api/presence/?seller_ids={seller_id}",
        headers={"Authorization": f"Bearer {token_for('buyer-p')}"},
    )

    def fetch() -> dict:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    return (await asyncio.to_thread(fetch))["sellers"][seller_id]


async def changes(client: ChatClient, *, timeout: float) -> list[dict]:
    frames = []
    while True:
        try:
            frames.append(await client.next_frame("presence.changed", timeout=timeout))
        except TimeoutError:
            return frames


async def test_presence_crosses_processes_and_a_killed_process_turns_grey_once(servers):
    server_a, server_b, server_c = servers
    await database_sync_to_async(make_order)(buyer_id="buyer-p", seller_id="seller-p")
    watchers = [
        await ChatClient.open(server_b.ws_url, token_for("buyer-p")),
        await ChatClient.open(server_c.ws_url, token_for("buyer-p")),
    ]
    seller_tabs: list[ChatClient] = []
    try:
        for watcher in watchers:
            snapshot = await watcher.request("presence.subscribe", seller_ids=["seller-p"])
            assert snapshot["sellers"]["seller-p"]["color"] == "grey"
        seller_tabs = [
            await ChatClient.open(server_a.ws_url, token_for("seller-p")),
            await ChatClient.open(server_a.ws_url, token_for("seller-p")),
        ]
        for watcher in watchers:
            online = await watcher.next_frame("presence.changed", timeout=10)
            assert (online["seller_id"], online["color"]) == ("seller-p", "orange")

        assert (await http_presence(server_c, "seller-p"))["color"] == "orange"

        server_a.kill()  # kill -9: no disconnect handler runs, the entries just stop being renewed

        for watcher in watchers:
            offline = await watcher.next_frame("presence.changed", timeout=WAIT_S)
            assert (offline["status"], offline["color"]) == ("offline", "grey")
            assert offline["last_seen"] is not None
        # once: neither the second sweeping process nor a later sweep pushes it again
        for watcher in watchers:
            assert await changes(watcher, timeout=2) == []
        snapshot = await watchers[0].request("presence.subscribe", seller_ids=["seller-p"])
        assert snapshot["sellers"]["seller-p"]["color"] == "grey"
        assert await http_presence(server_b, "seller-p") == snapshot["sellers"]["seller-p"]
    finally:
        for client in [*watchers, *seller_tabs]:
            await client.close()
