"""Every socket reconnecting at once: the network under all of them fails at the same moment.

The bench's ServicePeers (two per thread, on two daphne processes started as the Procfile
runs them: listen backlog 4,096 and a 20 s accept timeout, see tests/resilience/faults.py;
a Redis of the test's own) are connected and talking; a message is in flight on every thread when every TCP
connection is cut (``ServicePeer.drop()``, no closing handshake). Each peer reconnects with
full jitter (up to 1 s, growing with failures), rejoins with ``since_seq`` and resends what
was not acknowledged.

What must hold: no handshake fails and no server refuses or closes a socket (no "Too many
connections" from redis-py's pool, no 4003/4004/1011), every socket resyncs, and no message
is lost or shown twice. A peer that waits longer than its open timeout (20 s) for ``hello``
gives up and connects again (close code None, its own): counted and printed, as speed is
bench/'s to measure.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from tests.resilience.faults import (
    ChatLoad,
    now,
    orm_last_seqs,
    orm_stored_messages,
    report,
    seed_threads,
    start_daphne,
    thread_plans,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SERVER_CLOSES = {"1011", "4000", "4002", "4003", "4004"}  # error, shutdown, heartbeat, too many, unavailable


@pytest.mark.parametrize("sockets", [400, pytest.param(2000, marks=pytest.mark.heavy)], ids=["400", "2000"])
async def test_all_sockets_reconnecting_at_once_meet_no_handshake_error_and_all_resync_losing_nothing(
    fault_redis, daphne, sockets
):
    tag = f"st{sockets}"
    servers = await start_daphne(daphne, 2, REDIS_URL=fault_redis.url, CHAT_SEND_RATE_COUNT="100000")
    order_ids = await database_sync_to_async(seed_threads)(sockets // 2, tag)
    load = ChatLoad(thread_plans(order_ids, tag), [s.ws_url for s in servers], jitter_s=1.0)
    try:
        connect_started = now()
        connected = await load.connect(timeout=120)
        connect_s = now() - connect_started
        assert connected == sockets, report(tag, load.socket_figures())
        buyers, sellers = load.peers[0::2], load.peers[1::2]
        # Some history, then one message per thread in flight when everything drops: the
        # receivers miss it live and must get it by rejoining with since_seq.
        await asyncio.gather(*(load.send_one(p) for p in buyers))
        in_flight = [load.send_one(p) for p in sellers]
        await asyncio.sleep(0)
        started = now()
        for peer in load.peers:
            peer.drop()
        deadline = started + 120
        while now() < deadline and not all(p.synced for p in load.peers):  # noqa: ASYNC110 - polls many peers
            await asyncio.sleep(0.05)
        resynced = sorted(p.synced_at - started for p in load.peers if p.synced_at is not None)
        await asyncio.wait(in_flight, timeout=180)
        await load.stop_sending()
        last_seqs = database_sync_to_async(orm_last_seqs)
        caught_up = await load.wait_caught_up(lambda: last_seqs(order_ids), timeout=60)
        last = await last_seqs(order_ids)
        stored = await database_sync_to_async(orm_stored_messages)(order_ids)
        figures = {
            **load.audit(last, stored),
            **load.socket_figures(),
            "caught_up": caught_up,
            "connect_s": round(connect_s, 2),
            "resynced": len(resynced),
            "p50_resync_s": round(resynced[len(resynced) // 2], 2) if resynced else None,
            "p99_resync_s": round(resynced[int(0.99 * (len(resynced) - 1))], 2) if resynced else None,
            "all_resynced_s": round(resynced[-1], 2) if len(resynced) == sockets else None,
        }
    finally:
        await load.close()
    text = report("reconnect storm", figures)

    assert all(s.alive for s in servers), text
    assert figures["handshake_errors"] == 0, text
    # The cut closed every socket once (1006); no server refused or closed one afterwards.
    assert figures["close_codes"].get("1006") == sockets, text
    assert not SERVER_CLOSES & set(figures["close_codes"]), text
    assert figures["reconnects"] == figures["drops"] and figures["error_replies"] == {}, text
    assert figures["resynced"] == sockets and figures["caught_up"], text
    assert figures["unacked"] == 0 and figures["acked_not_stored"] == 0, text
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["out_of_order"] == 0, text
    assert figures["stored_messages"] == figures["acked"] == sockets, text
