"""The load generator: a separate process that drives one scenario and reports as it goes.

    python -m bench.loadgen PLAN.json

``PLAN.json`` (written by bench/run.py) names the scenario, the side (``service``,
``baseline`` or ``floor``), the WebSocket URLs and the users with their tokens. The
generator prints one JSON object per line on stdout: markers that let the orchestrator
sample the servers' CPU over exactly the window measured (``{"event": "window_start",
...}`` / ``"window_end"``), and a final ``{"event": "done", ...}`` with what the peers
saw. It is bounded in time by the plan and exits by itself.

Its own CPU is reported per window (``loadgen_cpu``, in cores): a window where it was
at least ``LOADGEN_BOUND`` busy, or could not keep the asked send rate, measured the
generator rather than the servers, and the orchestrator discards it. S1 stops climbing
at such a window, as it does past the knee: the knee search ends there either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from typing import Any

import websockets

from bench.traffic import (
    BaselinePeer,
    Counters,
    FloorPeer,
    Latencies,
    Party,
    ServicePeer,
    ThreadPlan,
    now,
    origin_of,
    percentiles,
    with_token,
)

LOADGEN_BOUND = 0.90  # of one core
RATE_SHORTFALL = 0.95  # achieved / asked below this: the generator could not keep up
CONNECT_CONCURRENCY = 200


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Window:
    """A measured window: wall time and this process's CPU."""

    def __init__(self) -> None:
        self.wall0 = now()
        self.cpu0 = time.process_time()

    def close(self) -> dict[str, float]:
        wall = now() - self.wall0
        cpu = (time.process_time() - self.cpu0) / max(wall, 1e-9)
        return {"wall_s": round(wall, 3), "loadgen_cpu": round(cpu, 3)}


def make_peers(
    plan: dict[str, Any], counters: Counters, latencies: Latencies, *, jitter_s: float = 1.0
) -> tuple[list[ThreadPlan], dict[str, tuple[Any, Any]]]:
    """Two peers per thread: (buyer, seller), on the servers' URLs round-robin (the
    floor's by a hash of the thread: its rooms do not cross processes, see FloorPeer)."""
    threads = [ThreadPlan.from_dict(t) for t in plan["threads"]]
    urls = plan["urls"]
    peers: dict[str, tuple[Any, Any]] = {}
    for i, thread in enumerate(threads):
        pair = []
        for j, party in enumerate((thread.buyer, thread.seller)):
            # Buyer and seller of a thread on different processes when there are two:
            # every message then crosses processes through Redis.
            url_order = urls[(i + j) % len(urls) :] + urls[: (i + j) % len(urls)]
            if plan["side"] == "service":
                pair.append(
                    ServicePeer(
                        url_order, party, thread.order_id, counters=counters, latencies=latencies, jitter_s=jitter_s
                    )
                )
            elif plan["side"] == "baseline":
                pair.append(
                    BaselinePeer(
                        url_order[0],
                        thread.order_id,
                        party.user_id,
                        counters=counters,
                        latencies=latencies,
                        jitter_s=jitter_s,
                    )
                )
            else:
                pair.append(
                    FloorPeer(
                        urls, thread.order_id, party.user_id, counters=counters, latencies=latencies, jitter_s=jitter_s
                    )
                )
        peers[thread.order_id] = (pair[0], pair[1])
    return threads, peers


async def connect_all(all_peers: list[Any], timeout_s: float) -> dict[str, Any]:
    """Start every peer with at most CONNECT_CONCURRENCY handshakes in flight."""
    started = now()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(peer: Any) -> None:
        async with gate:
            peer.start()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(peer.connected.wait(), timeout_s)

    await asyncio.gather(*(one(p) for p in all_peers))
    elapsed = now() - started
    connected = sum(1 for p in all_peers if p.connected.is_set())
    return {
        "sockets": len(all_peers),
        "connected": connected,
        "connect_s": round(elapsed, 3),
        "connect_rate": round(connected / max(elapsed, 1e-9), 1),
    }


async def stop_all(all_peers: list[Any]) -> None:
    await asyncio.gather(*(p.stop() for p in all_peers), return_exceptions=True)


# --- S0 idle -------------------------------------------------------------------------------
async def idle(plan: dict[str, Any]) -> None:
    counters, latencies = Counters(), Latencies()
    _, peers = make_peers(plan, counters, latencies)
    all_peers = [p for pair in peers.values() for p in pair][: plan["sockets"]]
    emit("window_start", name="connect")
    window = Window()
    connected = await connect_all(all_peers, plan.get("connect_timeout_s", 120))
    emit("window_end", name="connect", **connected, **window.close(), counters=_counters(counters))
    await asyncio.sleep(plan.get("settle_s", 5))
    drops_before = counters.drops
    emit("window_start", name="hold")
    window = Window()
    await asyncio.sleep(plan["hold_s"])
    still = sum(1 for p in all_peers if p.connected.is_set())
    emit(
        "window_end",
        name="hold",
        connected=still,
        dropped=counters.drops - drops_before,
        **window.close(),
        counters=_counters(counters),
    )
    await stop_all(all_peers)
    emit("done", counters=_counters(counters))


# --- S1 order chat ------------------------------------------------------------------------
async def chat(plan: dict[str, Any]) -> None:
    counters, latencies = Counters(), Latencies()
    threads, peers = make_peers(plan, counters, latencies)
    all_peers = [p for pair in peers.values() for p in pair]
    connected = await connect_all(all_peers, plan.get("connect_timeout_s", 120))
    emit("connected", **connected, counters=_counters(counters))
    if connected["connected"] < len(all_peers):
        await stop_all(all_peers)
        emit("done", error="not every socket connected", counters=_counters(counters))
        return
    await asyncio.sleep(1)
    senders = [(peers[t.order_id][k], k) for k in (0, 1) for t in threads]
    random.Random(7).shuffle(senders)
    in_flight: set[asyncio.Task[Any]] = set()
    cursor = 0
    for rate in plan["rates"]:
        latencies.take()
        emit("window_start", name=f"rate {rate}", rate=rate)
        window = Window()
        sent = 0
        started = now()
        lateness: list[float] = []
        while (elapsed := now() - started) < plan["step_s"]:
            due = int(rate * elapsed) - sent
            if due > 0:
                lateness.append(due / rate)
            for _ in range(max(0, due)):
                peer, _role = senders[cursor % len(senders)]
                cursor += 1
                task = asyncio.ensure_future(peer.send())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                sent += 1
            await asyncio.sleep(0.005)
        send_wall = now() - started
        lg = window.close()
        # Drain: let what was sent arrive before closing the window's latency sample.
        drain_deadline = now() + plan.get("drain_s", 10)
        while (in_flight or latencies.sent_at) and now() < drain_deadline:  # noqa: ASYNC110 - polls two conditions
            await asyncio.sleep(0.05)
        samples = latencies.take()
        undelivered = len(latencies.sent_at)
        latencies.sent_at.clear()
        achieved = sent / max(send_wall, 1e-9)
        stats = percentiles(samples)
        bound = lg["loadgen_cpu"] >= LOADGEN_BOUND or achieved < RATE_SHORTFALL * rate
        # delivered: messages of this window the other party received (each once), the
        # denominator of the servers' CPU per message over the window.
        emit(
            "window_end",
            name=f"rate {rate}",
            rate=rate,
            sent=sent,
            achieved_rate=round(achieved, 1),
            delivered=len(samples),
            undelivered=undelivered,
            unacked=len(in_flight),
            **stats,
            **lg,
            loadgen_bound=bound,
            counters=_counters(counters),
        )
        if undelivered or (stats["p99_ms"] or 0) > plan.get("stop_above_ms", 1000):
            break  # past the knee: higher rates only queue more
        if bound:
            break  # higher rates would measure the generator even more
    # Let the last messages land, then report what every socket saw.
    await asyncio.sleep(plan.get("settle_s", 3))
    await stop_all(all_peers)
    emit("done", counters=_counters(counters), streams=_streams(plan, threads, peers))


def _streams(plan: dict[str, Any], threads: list[ThreadPlan], peers: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    if plan["side"] == "service":
        return {
            t.order_id: {
                "seen": [peers[t.order_id][0].seen, peers[t.order_id][1].seen],
                "acked": len(peers[t.order_id][0].acked) + len(peers[t.order_id][1].acked),
            }
            for t in threads
        }
    return {
        t.order_id: {
            "received": [peers[t.order_id][0].received, peers[t.order_id][1].received],
            "sent": [peers[t.order_id][0].sent, peers[t.order_id][1].sent],
        }
        for t in threads
    }


def _counters(counters: Counters) -> dict[str, Any]:
    return {
        "handshake_errors": counters.handshake_errors,
        "handshake_error_kinds": counters.handshake_error_kinds,
        "drops": counters.drops,
        "close_codes": counters.close_codes,
        "error_replies": counters.error_replies,
        "resends": counters.resends,
    }


# --- S2 presence ----------------------------------------------------------------------------
class Watcher:
    """A socket subscribed to one seller's presence (service) or in its room (baseline)."""

    def __init__(self, side: str, url: str, party: Party, seller_id: str, counters: Counters) -> None:
        self.side, self.url, self.party, self.seller_id, self.counters = side, url, party, seller_id, counters
        self.arrivals: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self.socket: Any = None
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if self.side == "service":
            self.socket = await websockets.connect(
                with_token(self.url, self.party.token),
                origin=origin_of(self.url),
                open_timeout=30,
                ping_interval=None,
                compression=None,
            )
            json.loads(await self.socket.recv())  # hello
            await self.socket.send(
                json.dumps({"type": "presence.subscribe", "ref": "s", "seller_ids": [self.seller_id]})
            )
            reply = json.loads(await self.socket.recv())
            assert reply.get("ok"), reply
        else:
            room_url = f"{self.url}chat/{self.seller_id.replace('-', '_')}/"
            self.socket = await websockets.connect(
                room_url, origin=origin_of(self.url), open_timeout=30, ping_interval=None, compression=None
            )
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.socket:
                frame = json.loads(raw)
                if frame.get("type") == "presence.changed":
                    self.arrivals.put_nowait((now(), frame["status"]))
                elif "message" in frame:
                    self.arrivals.put_nowait((now(), frame["message"]))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.socket.close()
        if self.task:
            self.task.cancel()


async def presence(plan: dict[str, Any]) -> None:
    counters = Counters()
    side, urls = plan["side"], plan["urls"]
    seller = Party(**plan["seller"])
    watchers = [
        Watcher(side, urls[i % len(urls)], Party(**w), seller.user_id, counters) for i, w in enumerate(plan["watchers"])
    ]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(w: Watcher) -> None:
        async with gate:
            await w.open()

    await asyncio.gather(*(open_one(w) for w in watchers))
    emit("connected", watchers=len(watchers))
    results: dict[str, list[float]] = {"offline": [], "online": []}
    emit("window_start", name=f"{len(watchers)} watchers")
    window = Window()
    seller_socket = None
    seller_url = urls[-1]  # the seller on the last process, watchers spread over all
    for cycle in range(plan["cycles"] * 2):
        if side == "service":
            expected = "online" if seller_socket is None else "offline"
            started = now()
            if seller_socket is None:
                seller_socket = await websockets.connect(
                    with_token(seller_url, seller.token), origin=origin_of(seller_url), ping_interval=None
                )
            else:
                await seller_socket.close()
                seller_socket = None
        else:
            # The tutorial has no presence: the closest it does is one group_send to the
            # room every watcher is in. Time to the last watcher, as for the service.
            expected = f"{seller.user_id}:{cycle}"
            if seller_socket is None:
                room_url = f"{seller_url}chat/{seller.user_id.replace('-', '_')}/"
                seller_socket = await websockets.connect(room_url, origin=origin_of(seller_url), ping_interval=None)
            started = now()
            await seller_socket.send(json.dumps({"message": expected}))
        last = started
        missing = 0
        for w in watchers:
            try:
                while True:
                    at, what = await asyncio.wait_for(w.arrivals.get(), max(0.1, started + 30 - now()))
                    if what == expected:
                        last = max(last, at)
                        break
            except TimeoutError:
                missing += 1
        kind = expected if side == "service" else "online"
        results[kind].append(last - started)
        if missing:
            counters.error_reply(f"missing:{missing}")
        await asyncio.sleep(plan.get("pause_s", 0.5))
    lg = window.close()
    emit(
        "window_end",
        name=f"{len(watchers)} watchers",
        **lg,
        loadgen_bound=lg["loadgen_cpu"] >= LOADGEN_BOUND,
        offline=percentiles(results["offline"]),
        online=percentiles(results["online"]),
        all=percentiles(results["offline"] + results["online"]),
        counters=_counters(counters),
    )
    if seller_socket is not None:
        await seller_socket.close()
    await asyncio.gather(*(w.close() for w in watchers))
    emit("done", counters=_counters(counters))


# --- S3 reconnect storm ------------------------------------------------------------------------
async def storm(plan: dict[str, Any]) -> None:
    counters, latencies = Counters(), Latencies()
    latencies.recording = False
    threads, peers = make_peers(plan, counters, latencies, jitter_s=plan["jitter_s"])
    all_peers = [p for pair in peers.values() for p in pair]
    connected = await connect_all(all_peers, plan.get("connect_timeout_s", 120))
    emit("connected", **connected, counters=_counters(counters))
    # Some history, then messages in flight at the moment every socket drops: the
    # receivers miss them and must get them by rejoining with since_seq.
    await asyncio.gather(*(peers[t.order_id][0].send() for t in threads))
    in_flight = [asyncio.ensure_future(peers[t.order_id][1].send()) for t in threads]
    await asyncio.sleep(0)
    handshake_errors_before = counters.handshake_errors
    emit("window_start", name="storm")
    window = Window()
    started = now()
    for peer in all_peers:
        peer.drop()
    deadline = started + plan.get("timeout_s", 60)
    while now() < deadline:
        synced = sum(1 for p in all_peers if p.synced)
        if synced == len(all_peers):
            break
        await asyncio.sleep(0.02)
    times = sorted((p.synced_at - started) for p in all_peers if p.synced_at is not None)
    k99 = int(0.99 * len(all_peers)) - 1
    lg = window.close()
    await asyncio.gather(*in_flight, return_exceptions=True)
    emit(
        "window_end",
        name="storm",
        **lg,
        loadgen_bound=lg["loadgen_cpu"] >= LOADGEN_BOUND,
        sockets=len(all_peers),
        resynced=len(times),
        p99_resynced_s=round(times[k99], 3) if len(times) > k99 >= 0 else None,
        all_resynced_s=round(times[-1], 3) if len(times) == len(all_peers) else None,
        handshake_errors=counters.handshake_errors - handshake_errors_before,
        counters=_counters(counters),
    )
    await asyncio.sleep(plan.get("settle_s", 2))
    await stop_all(all_peers)
    emit("done", counters=_counters(counters), streams=_streams(plan, threads, peers))


SCENARIOS = {"idle": idle, "chat": chat, "presence": presence, "storm": storm}


def main() -> None:
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    asyncio.run(SCENARIOS[plan["scenario"]](plan))


if __name__ == "__main__":
    main()
