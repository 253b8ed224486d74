"""Redis faults under load: a restart (everything in Redis is lost) and a stall.

The daphne processes use a redis-server of the test's own (``fault_redis``), so the test may
restart and pause it. Load: the bench's ServicePeers (bench/traffic.py), a buyer and a seller
per thread on different processes, a steady rate of ``message.send`` through the fault.

The broker (chat_service.machinery.broadcast) keeps its sockets through a restart and loses the
pushes published meanwhile; its reconnect triggers a sync of every joined thread with
PostgreSQL. Sends that need Redis while it is away are refused as retryable (``internal``)
and resent by the peers.

What must hold (docs/operations.md, "Failure behaviour"): Redis holds nothing that cannot be
lost. A restart may cut sockets and lose pushes in flight, never a message: every
acknowledged message is stored, and every socket's stream, after it reconnected and rejoined
with ``since_seq`` (or was synced from PostgreSQL), is every stored seq exactly once, in
order. A stall (``CLIENT PAUSE``) only delays: no socket is closed.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from bench.traffic import percentiles
from tests.resilience.faults import (
    ChatLoad,
    connection_entries,
    orm_last_seqs,
    orm_stored_messages,
    redis_time_ms,
    report,
    seed_threads,
    start_daphne,
    thread_plans,
    topic_subscriptions,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

THREADS = 60  # x 2 peers
RATE = 30  # messages per second, all threads together
SUPERVISOR_TICKS_S = 2 * 5 + 1  # two supervisor ticks: what a stale subscription would survive


async def start_load(daphne, fault_redis, tag: str):
    servers = await start_daphne(daphne, 2, REDIS_URL=fault_redis.url, CHAT_SEND_RATE_COUNT="100000")
    order_ids = await database_sync_to_async(seed_threads)(THREADS, tag)
    load = ChatLoad(thread_plans(order_ids, tag), [s.ws_url for s in servers])
    connected = await load.connect(timeout=60)
    assert connected == len(load.peers), report(tag, load.socket_figures())
    return servers, order_ids, load


async def settle_and_audit(load: ChatLoad, order_ids: list[str], name: str) -> dict:
    """Stop sending, wait for every ack and every socket to catch up, audit against PostgreSQL."""
    await load.stop_sending()
    last_seqs = database_sync_to_async(orm_last_seqs)
    caught_up = await load.wait_caught_up(lambda: last_seqs(order_ids), timeout=90)
    last = await last_seqs(order_ids)
    stored = await database_sync_to_async(orm_stored_messages)(order_ids)
    figures = {
        **load.audit(last, stored),
        **load.socket_figures(),
        "caught_up": caught_up,
        "delivery_latency": percentiles(load.latencies.take()),
    }
    if not caught_up:
        figures["behind"] = load.behind(last)[:5]
    return figures


RUNS = [
    pytest.param(2, id="2x"),
    pytest.param(5, marks=pytest.mark.heavy, id="5x"),
]


@pytest.mark.parametrize("restarts", RUNS)
async def test_redis_restarted_mid_load_loses_no_message_and_leaves_no_stale_subscription(
    fault_redis, daphne, restarts
):
    servers, order_ids, load = await start_load(daphne, fault_redis, f"rr{restarts}x")
    outages: list[float] = []
    try:
        load.start_sending(RATE)
        await asyncio.sleep(3)
        for _ in range(restarts):
            outages.append(round(await asyncio.to_thread(fault_redis.restart, 1.0), 2))
            # Load goes on until every dropped socket is back, then a little longer.
            await wait_for(lambda: _all_connected(load), timeout=60)
            await asyncio.sleep(3)
        figures = await settle_and_audit(load, order_ids, "redis restart")
    finally:
        await load.close()
    figures.update(restarts=restarts, outage_s=outages, rate=RATE)

    # Stale: once every peer has closed its socket (each process ran the socket's
    # disconnect), no socket of this test is open, so whatever the broker still keeps in
    # Redis belongs to one that is gone: a subscription. None may be left, and none may
    # come back (a resubscription after the restart). The same for connection entries
    # that have not expired.
    client = fault_redis.client()
    prefix = settings.REDIS_PREFIX
    emptied = await wait_for(lambda: _no_residue(client, prefix), timeout=20)
    await asyncio.sleep(SUPERVISOR_TICKS_S)
    stale = await asyncio.to_thread(topic_subscriptions, client, prefix)
    entries = await asyncio.to_thread(connection_entries, client, prefix)
    redis_now = await asyncio.to_thread(redis_time_ms, client)
    client.close()
    live_entries = sum(1 for conns in entries.values() for _, expires in conns if expires > redis_now)
    figures.update(
        stale=len(stale), stale_examples=stale[:5], emptied_after_close=emptied, stale_connection_entries=live_entries
    )
    text = report("redis restart", figures)

    assert all(s.alive for s in servers), text
    # The fault was felt: sockets cut, or requests refused while Redis was away.
    assert figures["drops"] + figures["error_replies"].get("internal", 0) > 0, text
    # Every socket that was dropped came back and rejoined.
    assert figures["reconnects"] == figures["drops"] and figures["caught_up"], text
    # Nothing lost, nothing twice.
    assert figures["unacked"] == 0 and figures["acked_not_stored"] == 0, text
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["out_of_order"] == 0, text
    assert figures["stored_messages"] == figures["acked"], text
    # Nothing stale.
    assert figures["stale"] == 0 and figures["stale_connection_entries"] == 0, text


@pytest.mark.parametrize("stalls", RUNS)
async def test_redis_stalled_3s_mid_load_closes_no_socket_and_loses_no_message(fault_redis, daphne, stalls):
    servers, order_ids, load = await start_load(daphne, fault_redis, f"rp{stalls}x")
    try:
        load.start_sending(RATE)
        await asyncio.sleep(3)
        for _ in range(stalls):
            await asyncio.to_thread(fault_redis.pause, 3000)
            await asyncio.sleep(3 + 3)  # the stall, then the load runs on for a while
        figures = await settle_and_audit(load, order_ids, "redis stall")
    finally:
        await load.close()
    slowest = max((a.ended - a.started for a in load.attempts), default=0.0)
    figures.update(stalls=stalls, stall_ms=3000, rate=RATE, slowest_ack_s=round(slowest, 2))
    text = report("redis stall", figures)

    assert all(s.alive for s in servers), text
    # The fault happened: some acknowledgement waited for the stall.
    assert slowest >= 1.0, text
    assert figures["drops"] == 0 and figures["reconnects"] == 0, text
    assert figures["caught_up"], text
    assert figures["unacked"] == 0 and figures["acked_not_stored"] == 0, text
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["out_of_order"] == 0, text
    assert figures["stored_messages"] == figures["acked"], text


async def _all_connected(load: ChatLoad) -> bool:
    return all(p.connected.is_set() for p in load.peers)


async def _no_residue(client, prefix: str) -> bool:
    return not await asyncio.to_thread(topic_subscriptions, client, prefix)
