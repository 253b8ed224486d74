"""One of two daphne processes killed with -9 under load, again and again.

Each round kills one process (no disconnect handler runs, nothing is cleaned up) and starts
a replacement on a new port. The bench's ServicePeers (two per thread, on both processes)
reconnect to whichever process answers and rejoin with ``since_seq``.

What must hold (docs/operations.md "Failure behaviour", docs/presence.md):
* no message is lost: every acknowledged message is stored, every socket's stream is every
  stored seq once, in order;
* a seller connected only to the killed process turns grey for a watcher on the other
  process within CHAT_CONNECTION_TTL_S + CHAT_PRESENCE_SWEEP_S + one supervisor tick;
* nothing leaks: the broker keeps membership in the process and in its Redis
  subscriptions, and a killed process's go with its connections; its connection entries
  expire and are swept.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from bench.traffic import percentiles
from chat_service.client import ChatClient
from tests.factories import make_order, token_for
from tests.resilience.faults import (
    ChatLoad,
    connection_entries,
    now,
    orm_last_seqs,
    orm_stored_messages,
    process_id,
    process_of,
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
TTL_S, SWEEP_S, TICK_S = 6, 1.0, 0.5  # production: 45, 10, 5 (a bound of 60 s)
GREY_BOUND_S = TTL_S + SWEEP_S + TICK_S
ENV = {
    "CHAT_SEND_RATE_COUNT": "100000",
    "CHAT_CONNECTION_TTL_S": str(TTL_S),
    "CHAT_PRESENCE_SWEEP_S": str(SWEEP_S),
    "CHAT_SUPERVISOR_TICK_S": str(TICK_S),
}


RUNS = [
    pytest.param(2, id="2x"),
    pytest.param(5, marks=pytest.mark.heavy, id="5x"),
]


@pytest.mark.parametrize("kills", RUNS)
async def test_daphne_killed_mid_load_clients_move_over_seller_turns_grey_in_bound_and_nothing_leaks(
    fault_redis, daphne, kills
):
    tag = f"dk{kills}x"
    env = {"REDIS_URL": fault_redis.url, **ENV}
    servers = await start_daphne(daphne, 2, **env)
    order_ids = await database_sync_to_async(seed_threads)(THREADS, tag)
    for k in range(kills):  # sellers who have a presence (a seller of some order), one per round
        await database_sync_to_async(make_order)(buyer_id=f"{tag}-w{k}", seller_id=f"{tag}-p{k}")
    client = fault_redis.client()
    prefix = settings.REDIS_PREFIX
    probes = iter(range(1000))

    async def process_behind(server) -> str:
        user = f"{tag}-probe{next(probes)}"
        return await process_id(server.ws_url, token_for(user), user, client, prefix)

    load = ChatLoad(thread_plans(order_ids, tag), [s.ws_url for s in servers])
    assert await load.connect(timeout=60) == len(load.peers), report(tag, load.socket_figures())
    rounds: list[dict] = []
    killed: dict[str, float] = {}  # id of a killed process -> when it was killed (wall clock)
    try:
        load.start_sending(RATE)
        await asyncio.sleep(3)
        for k in range(kills):
            victim_index = k % 2
            victim, survivor = servers[victim_index], servers[1 - victim_index]
            victim_id = await process_behind(victim)
            seller_id = f"{tag}-p{k}"
            seller = await ChatClient.open(victim.ws_url, token_for(seller_id))  # never reconnects
            watcher_token = token_for(f"{tag}-w{k}")
            watcher = await ChatClient.open(survivor.ws_url, watcher_token)
            try:
                shown = await watcher.request("presence.subscribe", seller_ids=[seller_id])
                assert shown["sellers"][seller_id]["status"] == "online", shown
                drops_before, reconnects_before = load.counters.drops, load.reconnects
                killed_at, killed_wall = now(), time.time()
                await asyncio.to_thread(victim.kill)
                killed[victim_id] = killed_wall
                replacement = asyncio.ensure_future(start_daphne(daphne, 1, **env))
                snapshot = asyncio.ensure_future(_grey_in_snapshot(survivor.http_url, watcher_token, seller_id))
                grey = await watcher.next_frame(
                    "presence.changed",
                    timeout=GREY_BOUND_S + 30,
                    where=lambda f, s=seller_id: f["seller_id"] == s and f["status"] == "offline",
                )
                grey_after_s = now() - killed_at
                snapshot_grey_after_s = await snapshot - killed_at
                (servers[victim_index],) = await replacement
                load.set_urls([s.ws_url for s in servers])
                back = await wait_for(lambda: _all_connected(load), timeout=60)
                rounds.append(
                    {
                        "grey_after_s": round(grey_after_s, 2),
                        "color": grey["color"],
                        "snapshot_grey_after_s": round(snapshot_grey_after_s, 2),
                        "dropped": load.counters.drops - drops_before,
                        "reconnected": load.reconnects - reconnects_before,
                        "all_back": back,
                    }
                )
            finally:
                await seller.close()
                await watcher.close()
            await asyncio.sleep(2)
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
        live_ids = {await process_behind(s) for s in servers}
    finally:
        await load.close()

    # Stale, after a kill -9. Once every peer has closed its socket, whatever the broker
    # keeps in Redis belongs to a socket that is gone: a killed process's subscriptions
    # went with its connections, a live process's with its sockets' disconnects, so
    # nothing at all may be left. Connection entries: after the sweep none is unexpired (a
    # killed process's have expired, the live ones' were removed on close).
    await wait_for(lambda: _no_unexpired_entries(client, prefix), timeout=20)
    await wait_for(lambda: _no_residue(client, prefix), timeout=20)
    residue = await asyncio.to_thread(topic_subscriptions, client, prefix)
    entries = await asyncio.to_thread(connection_entries, client, prefix)
    redis_now = await asyncio.to_thread(redis_time_ms, client)
    unexpired_entries = [
        (user, conn, round((expires - redis_now) / 1000, 1))
        for user, conns in entries.items()
        for conn, expires in conns
        if expires > redis_now
    ]
    owners = {"live": 0, "killed": 0, "unknown": 0}
    for _, conn, _ in unexpired_entries:
        owner = process_of(conn)
        owners["live" if owner in live_ids else "killed" if owner in killed else "unknown"] += 1
    client.close()
    figures.update(
        kills=kills,
        rate=RATE,
        rounds=rounds,
        grey_bound_s=GREY_BOUND_S,
        residue=len(residue),
        residue_examples=residue[:5],
        unexpired_connection_entries=len(unexpired_entries),
        unexpired_examples=unexpired_entries[:3],
        unexpired_owners=owners,
    )
    text = report("daphne kill -9", figures)

    # The clients of each killed process reconnected (to the other) and rejoined.
    assert all(r["dropped"] > 0 and r["all_back"] for r in rounds), text
    assert figures["reconnects"] == figures["drops"], text
    assert figures["caught_up"], text
    # Nothing lost, nothing twice.
    assert figures["unacked"] == 0 and figures["acked_not_stored"] == 0, text
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["out_of_order"] == 0, text
    assert figures["stored_messages"] == figures["acked"], text
    # Presence: grey within TTL + sweep + tick of the kill, for a page that loads it
    # (snapshot) and, pushed, for the watcher.
    assert all(r["color"] == "grey" and r["snapshot_grey_after_s"] <= GREY_BOUND_S for r in rounds), text
    assert all(r["grey_after_s"] <= GREY_BOUND_S for r in rounds), text
    # No leak.
    assert residue == [] and unexpired_entries == [], text


async def _all_connected(load: ChatLoad) -> bool:
    return all(p.connected.is_set() for p in load.peers)


async def _no_residue(client, prefix: str) -> bool:
    return not await asyncio.to_thread(topic_subscriptions, client, prefix)


async def _no_unexpired_entries(client, prefix: str) -> bool:
    entries = await asyncio.to_thread(connection_entries, client, prefix)
    redis_now = await asyncio.to_thread(redis_time_ms, client)
    return not any(expires > redis_now for conns in entries.values() for _, expires in conns)


async def _grey_in_snapshot(http_url: str, token: str, seller_id: str) -> float:
    """When ``GET /api/presence/`` (what a page load shows) first reads the seller offline."""
    url = f"{http_url}/api/presence/?seller_ids={seller_id}"

    def status() -> str | None:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())["sellers"][seller_id]["status"]
        except OSError:
            return None

    deadline = now() + GREY_BOUND_S + 30  # a liveness bound: the assertion decides
    while await asyncio.to_thread(status) != "offline" and now() < deadline:  # noqa: ASYNC110 - polls HTTP
        await asyncio.sleep(0.1)
    return now()
