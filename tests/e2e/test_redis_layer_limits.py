"""The Redis broker at redis-py's known limits (see /work/shared/PITFALLS.md).

* redis-py 8 gives connections a 5 s socket timeout; the broker's subscribed connection
  waits for messages without end, so without ``socket_timeout=None`` a quiet process's
  reader fails every 5 s and reconnects, and a message published meanwhile is lost (the
  socket then waits for the periodic sync). To see this test fail without the fix, run it
  with ``E2E_SERVER_SETTINGS=tests.e2e.settings_without_socket_timeout_fix``.
* redis-py 8's async pool stops at 100 connections by default; a connect burst then
  fails handshakes and leaves dead subscriptions or entries behind.
* The per-user connection cap is counted in Redis, so it holds across processes.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import websockets
from channels.db import database_sync_to_async
from django.conf import settings
from redis import Redis as SyncRedis

from chat_service.client import ChatClient
from tests.e2e.streams import pushed_events
from tests.factories import make_order, token_for
from tests.topics import topic_residue

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

IDLE_S = 8  # > redis-py 8's default 5 s socket timeout, < 2 x heartbeat_s (25)
BURST_CONNECTIONS = 1000
BURST_CONCURRENCY = 200
BURST_SELLERS = 10
CLEANUP_WAIT_S = 60  # a liveness bound: the check returns as soon as Redis is clean


def conn_key(user_id: str) -> str:
    return f"{settings.REDIS_PREFIX}:conn:{user_id}"


async def wait_until(read, expected, timeout: float = 30) -> None:
    """Poll ``await read()`` until it returns ``expected`` (``timeout`` is a liveness bound)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (value := await read()) != expected:
        assert loop.time() < deadline, f"still {value!r}, expected {expected!r}"
        await asyncio.sleep(0.05)


async def first_frame_or_close(client: ChatClient, timeout: float) -> str:
    """The type of the first frame (e.g. hello), "closed <code>", or "hanging" when
    neither came within ``timeout``."""
    frame = asyncio.ensure_future(client.next_frame(timeout=timeout))
    closed = asyncio.ensure_future(client.closed.wait())
    done, _ = await asyncio.wait({frame, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    frame.cancel()
    closed.cancel()
    if frame in done and not frame.cancelled() and frame.exception() is None:
        return str(frame.result().get("type"))
    if client.closed.is_set():
        return f"closed {client.close_code}"
    return "hanging"


async def test_socket_idle_longer_than_redis_socket_timeout_survives(daphne):
    server = await daphne.start_one()
    order = await database_sync_to_async(make_order)(buyer_id="buyer-idle", seller_id="seller-idle")
    buyer = await ChatClient.open(server.ws_url, token_for("buyer-idle"))
    seller = await ChatClient.open(server.ws_url, token_for("seller-idle"))
    try:
        assert buyer.hello is not None and buyer.hello["heartbeat_s"] > IDLE_S
        for client in (buyer, seller):
            await client.request("thread.join", order_id=order.order_id)

        # Nothing at all on either socket (no ping either), and nothing published to the
        # process: its subscribed connection stays quiet longer than redis-py's timeout.
        await asyncio.sleep(IDLE_S)
        assert not buyer.closed.is_set(), f"buyer socket closed with {buyer.close_code}"
        assert not seller.closed.is_set(), f"seller socket closed with {seller.close_code}"

        event = await buyer.send_message(order.order_id, "still there?", client_msg_id="after-idle")
        assert event["seq"] == 1
        # Delivered live: well before the periodic sync (CHAT_SYNC_S) would repair a loss.
        pushed = await pushed_events(seller, order.order_id, until_seq=1, timeout=2)
        assert [(e["seq"], e["body"]) for e in pushed] == [(1, "still there?")]
        assert not buyer.closed.is_set() and not seller.closed.is_set()
    finally:
        await buyer.close()
        await seller.close()


async def test_connection_cap_per_user_holds_across_processes(daphne):
    server_a, server_b = await daphne.start(2, CHAT_MAX_CONNECTIONS_PER_USER="2")
    first = await ChatClient.open(server_a.ws_url, token_for("seller-cap"))
    second = await ChatClient.open(server_b.ws_url, token_for("seller-cap"))
    third = await ChatClient.open(server_a.ws_url, token_for("seller-cap"), wait_hello=False)
    try:
        assert await first_frame_or_close(third, timeout=10) == "closed 4003"  # before any hello
        # The refused socket does not count: once one is closed, a new one gets in.
        await second.close()
        redis = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            await wait_until(lambda: redis.zcard(conn_key("seller-cap")), 1)
        finally:
            await redis.aclose()
        fourth = await ChatClient.open(server_b.ws_url, token_for("seller-cap"))
        assert fourth.hello is not None and not first.closed.is_set()
        await fourth.close()
    finally:
        for client in (first, second, third):
            await client.close()


async def test_connect_that_fails_inside_the_server_is_closed_for_reconnect_not_left_open(daphne):
    # A Redis pool far too small for the burst: some connects fail server-side after the
    # socket was accepted. Each socket must then get hello or a close code that tells
    # the client to reconnect; never an open socket with no hello, no supervisor
    # (heartbeat, token expiry) and no user group.
    server = await daphne.start_one(REDIS_MAX_CONNECTIONS="10", CHAT_MAX_CONNECTIONS_PER_USER="1000")

    async def attempt(i: int) -> str:
        try:
            client = await ChatClient.open(server.ws_url, token_for(f"seller-pool-{i % 5}"), wait_hello=False)
        except (websockets.InvalidHandshake, OSError):
            return "handshake refused"  # the client retries this too
        try:
            return await first_frame_or_close(client, timeout=10)
        finally:
            await client.close()

    outcomes = await asyncio.gather(*(attempt(i) for i in range(200)))
    counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    assert set(outcomes) != {"hello"}, "the scenario did not happen: every connect succeeded"
    reconnectable = {"hello", "handshake refused", "closed 1011", *(f"closed {c}" for c in range(4000, 4500))}
    assert set(outcomes) <= reconnectable, counts


async def test_burst_of_1000_connects_gets_hello_and_pushes_and_leaves_nothing_in_redis(daphne):
    servers = await daphne.start(2, CHAT_MAX_CONNECTIONS_PER_USER=str(BURST_CONNECTIONS))

    @database_sync_to_async
    def make_orders() -> list[str]:
        return [
            make_order(buyer_id="buyer-burst", seller_id=f"seller-burst-{i}").order_id for i in range(BURST_SELLERS)
        ]

    order_ids = await make_orders()
    limit = asyncio.Semaphore(BURST_CONCURRENCY)

    def seller_of(i: int) -> str:
        return f"seller-burst-{i % BURST_SELLERS}"

    async def connect(i: int) -> ChatClient | BaseException:
        async with limit:
            try:
                return await ChatClient.open(servers[i % 2].ws_url, token_for(seller_of(i)), open_timeout=60)
            except Exception as exc:  # noqa: BLE001 - counted below
                return exc

    results = await asyncio.gather(*(connect(i) for i in range(BURST_CONNECTIONS)))
    clients = [r for r in results if isinstance(r, ChatClient)]
    buyer: ChatClient | None = None
    redis = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        failures = [repr(r) for r in results if not isinstance(r, ChatClient)]
        assert failures == [], f"{len(failures)} failed handshakes, e.g. {failures[:3]}"
        for i, client in enumerate(results):
            assert client.hello is not None and client.hello["user"]["id"] == seller_of(i)

        async def join(i: int, client: ChatClient) -> dict:
            async with limit:
                return await client.request("thread.join", order_id=order_ids[i % BURST_SELLERS], timeout=60)

        await asyncio.gather(*(join(i, c) for i, c in enumerate(clients)))
        # Registered where the leak check below looks (so the check can see a leak).
        per_seller = BURST_CONNECTIONS // BURST_SELLERS
        sync_redis = SyncRedis.from_url(settings.REDIS_URL)
        try:
            for i, order_id in enumerate(order_ids):
                assert topic_residue(sync_redis, f"t.{order_id}") != []
                assert topic_residue(sync_redis, f"u.seller-burst-{i}") != []
                assert await redis.zcard(conn_key(f"seller-burst-{i}")) == per_seller
        finally:
            sync_redis.close()

        # One message per thread reaches every one of the 1,000 sockets.
        buyer = await ChatClient.open(servers[0].ws_url, token_for("buyer-burst"))
        for order_id in order_ids:
            await buyer.send_message(order_id, f"hello {order_id}", client_msg_id=f"hello-{order_id}")

        async def receive(i: int, client: ChatClient) -> list[tuple[int, str]]:
            events = await pushed_events(client, order_ids[i % BURST_SELLERS], until_seq=1, timeout=60)
            return [(e["seq"], e["body"]) for e in events]

        received = await asyncio.gather(*(receive(i, c) for i, c in enumerate(clients)))
        missing = [i for i, events in enumerate(received) if events != [(1, f"hello {order_ids[i % BURST_SELLERS]}")]]
        assert missing == [], f"{len(missing)} sockets did not get their push, e.g. {missing[:10]}"
        assert all(not c.closed.is_set() for c in clients)

        async def close(client: ChatClient) -> None:
            async with limit:
                await client.close()

        await asyncio.gather(*(close(c) for c in clients))
        await buyer.close()
        buyer = None

        # Every disconnect handler ran: no subscription and no connection entry is left.
        async def left_in_redis() -> dict[str, int]:
            left = {
                key.decode(): await redis.zcard(key)
                async for key in redis.scan_iter(match=f"{settings.REDIS_PREFIX}:conn:*", count=1000)
            }
            sync_redis = SyncRedis.from_url(settings.REDIS_URL)
            try:
                left.update(dict.fromkeys(topic_residue(sync_redis), 1))
            finally:
                sync_redis.close()
            return left

        await wait_until(left_in_redis, {}, timeout=CLEANUP_WAIT_S)
        assert all(s.alive for s in servers)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        if buyer is not None:
            await buyer.close()
        await redis.aclose()
