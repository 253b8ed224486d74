"""PostgreSQL restarted under load (``pg_ctl restart -m fast``: every session is cut).

The daphne processes use a throwaway PostgreSQL cluster of the test's own (``fault_postgres``,
migrated with ``manage.py migrate``), so the test may restart it. Load: the bench's
ServicePeers sending; probes on a cadence: ``GET /api/threads/``, ``GET /api/threads/<id>/events/``
and ``GET /api/presence/`` on both processes (also during the outage), ``thread.join`` on a
long-lived socket and fresh socket connects (their hello reads the database). The socket
traffic pauses, bursts, pauses while the database restarts, and resumes the moment it is
back with another burst: the connections the first burst used (and checked) die unused,
and the second meets them (with traffic going on through the outage, every connection happens to
be used, fail and be replaced during it, and the test could not tell).

What must hold (docs/operations.md "Failure behaviour"): requests made during the outage
may fail, with a clear error (``internal``, retryable for the client); once the database is
back no request fails: connections that died with the restart are health-checked and
replaced before use (CONN_HEALTH_CHECKS; chat_service/machinery/db.py for the socket path). No
acknowledged message is lost (acks follow commit).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.traffic import percentiles
from tests.e2e.servers import server_env
from tests.resilience.faults import (
    ChatLoad,
    Probes,
    failures_by_phase,
    manage,
    now,
    pg_last_seqs,
    pg_stored_messages,
    report,
    seed_threads_in,
    start_daphne,
    thread_plans,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

THREADS = 50  # x 2 peers
RATE = 30  # messages per second, all threads together
AFTER_S = 10  # load and probes go on this long after the database is back
BURST = 40  # concurrent sends just before and just after the restart


async def test_postgres_restarted_mid_load_fails_no_request_once_back_and_loses_no_acked_message(
    fault_postgres, fault_redis, daphne
):
    tag = "pg"
    database_url = fault_postgres.url("chat")
    env = {"DATABASE_URL": database_url, "REDIS_URL": fault_redis.url, "CHAT_SEND_RATE_COUNT": "100000"}
    started = time.monotonic()
    await asyncio.to_thread(fault_postgres.createdb, "chat")
    await asyncio.to_thread(manage, server_env(env), "migrate", "--noinput", "-v0")
    order_ids = await asyncio.to_thread(seed_threads_in, server_env(env), THREADS + 1, tag)
    prepare_s = time.monotonic() - started
    servers = await start_daphne(daphne, 2, **env)
    plans = thread_plans(order_ids, tag)
    load_plans, probe_plan = plans[:-1], plans[-1]  # the probes' own thread
    talked = [p.order_id for p in load_plans]
    load = ChatLoad(load_plans, [s.ws_url for s in servers])
    http_probes, socket_probes, socket_probes_after = Probes(), Probes(), Probes()
    token = probe_plan.buyer.token

    def probe_sockets(probes: Probes) -> None:
        for server in servers:
            probes.start_join(server.ws_url, token, probe_plan.order_id, every_s=0.1)
            probes.start_connect(server.ws_url, probe_plan.seller.token, every_s=0.5)

    try:
        assert await load.connect(timeout=60) == len(load.peers), report(tag, load.socket_figures())
        load.start_sending(RATE)
        for server in servers:
            http_probes.start_http(
                server.http_url,
                token,
                [
                    "/api/threads/?limit=20",
                    f"/api/threads/{probe_plan.order_id}/events/?after_seq=0&limit=20",
                    f"/api/presence/?seller_ids={probe_plan.seller.user_id}",
                ],
                every_s=0.1,
            )
        probe_sockets(socket_probes)
        await asyncio.sleep(5)
        # The restart falls in a lull of the socket traffic, right after a burst that follows
        # a quiet second (so every pool thread serving it has just checked its connection):
        # the connections die unused, and the burst that follows the restart meets them.
        # HTTP probes go on through the outage.
        load.pause_sending()
        socket_probes.halt()
        await asyncio.sleep(1.2)
        await asyncio.gather(*(load.send_one(peer) for peer in load.peers[:BURST]))
        down_at = now()
        restart_s = await asyncio.to_thread(fault_postgres.restart)
        back_at = now()
        for peer in load.peers[BURST : 2 * BURST]:
            load.send_one(peer)
        load.start_sending(RATE)
        probe_sockets(socket_probes_after)
        await asyncio.sleep(AFTER_S)
        await http_probes.stop()
        await socket_probes_after.stop()
        await load.stop_sending()
        caught_up = await load.wait_caught_up(lambda: asyncio.to_thread(pg_last_seqs, database_url, talked), timeout=90)
        last = await asyncio.to_thread(pg_last_seqs, database_url, talked)
        stored = await asyncio.to_thread(pg_stored_messages, database_url, talked)
        figures = {
            **load.audit(last, stored),
            **load.socket_figures(),
            "caught_up": caught_up,
            "delivery_latency": percentiles(load.latencies.take()),
        }
    finally:
        for probes in (http_probes, socket_probes, socket_probes_after):
            await probes.stop()
        await load.close()
    attempts = [*load.attempts, *http_probes.attempts, *socket_probes.attempts, *socket_probes_after.attempts]
    requests = failures_by_phase(attempts, down_at, back_at)
    figures.update(
        rate=RATE, restart_s=round(restart_s, 2), after_s=AFTER_S, prepare_s=round(prepare_s, 1), requests=requests
    )
    text = report("postgres restart", figures)

    assert all(s.alive for s in servers), text
    assert requests["made"].get("message.send", 0) > 0 and requests["made"].get("thread.join", 0) > 0, text
    assert requests["failed"]["before"] == {}, text
    assert requests["failed"]["after"] == {}, text
    assert figures["drops"] == 0 and figures["caught_up"], text
    assert figures["unacked"] == 0 and figures["acked_not_stored"] == 0, text
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["out_of_order"] == 0, text
    assert figures["stored_messages"] == figures["acked"], text
