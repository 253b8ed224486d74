"""Run the bench: the real stack on loopback, a separate load generator, two references beside it.

    .venv/bin/python -m bench.run                       # S0-S3, 1 and 2 processes, full size
    .venv/bin/python -m bench.run S1 --processes 1      # one scenario, one process count
    .venv/bin/python -m bench.run S1 --sockets 2000 --reps 5 --step-s 8
    .venv/bin/python -m bench.run --quick               # small sizes, a few minutes
    .venv/bin/python -m bench.run S4                    # the read benches (orders, history)

For each process count it starts, on the machine's PostgreSQL and Redis: a fresh database
``bench_chat`` (migrated), N daphne processes of the service and the worker, N daphne
processes of the baseline (bench/baseline/, the Channels tutorial's chat) on the same
Redis, and N daphne processes of the floor (bench/floor/, a bare broadcast: what Daphne
itself allows). Every daphne runs the Procfile's flags. Each scenario runs against the
service and the baseline (S0 and S1 also against the floor), with the same users,
sockets and rates, driven by ``python -m bench.loadgen`` in its own process. Every figure
is printed beside the references' and as ratios (service/baseline, service/floor).

S1 runs at each socket count of ``--sockets`` (two per thread: buyer and seller), ``--reps``
times per side, the sides interleaved within a rep so that the machine's drift touches
them alike. A side's knee is the median of its reps' knees (one rep's knee can sit at a
quarter of the real one after a garbage-collection pause), printed with the per-rep knees
and, beside it, the median CPU per delivered message at or below the knee: the CPU seconds
of the side's processes over those windows divided by the messages the other party
received in them. The floor's rooms do not cross processes, so with N > 1 both parties of
a floor room are on one process (chosen by a hash of the room) where the service's and the
baseline's are on two.

CPU is read from /proc for every window measured: the daphne processes of each side, the
worker, redis-server, postgres, and the load generator; a run starts once the previous
one's servers and the worker have gone quiet. A window where the load generator
was the bottleneck (>= 90 % of a core, or below 95 % of the asked send rate) is marked
``LG-BOUND`` and does not count (the knee search ends there, and the notes say so). Results
are also written as JSON to var/bench/results-<time>.json. What the scenarios are and what
they aim for: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import Stack, raise_open_files_limit  # noqa: E402
from bench.traffic import StreamAudit, audit_baseline, audit_stream  # noqa: E402

KNEE_P99_MS = 100.0
TOKEN_TTL_S = 6 * 3600
SIDES = ("service", "baseline", "floor")
WORKER_BUSY_CORES = 0.1  # a reference's window where the service's worker used this much is flagged
REFERENCES = ("baseline", "floor")  # the service's figure is divided by each
# The process groups whose CPU a side costs: its daphne processes and what they use.
SIDE_GROUPS = {
    "service": ("service", "worker", "redis", "postgres"),
    "baseline": ("baseline", "redis"),
    "floor": ("floor",),
}


@dataclass(frozen=True)
class Size:
    idle_sockets: tuple[int, ...] = (1_000, 5_000, 10_000)
    idle_hold_s: float = 60.0
    chat_sockets: tuple[int, ...] = (1_000, 2_000)
    chat_reps: int = 3
    # Up to where the floor (or the load generator) gives out, so that a much faster service
    # still finds its knee on the ladder.
    chat_rates: tuple[int, ...] = (
        25,
        50,
        100,
        150,
        200,
        300,
        400,
        600,
        800,
        1_000,
        1_500,
        2_000,
        3_000,
        4_000,
        6_000,
        8_000,
    )
    chat_step_s: float = 8.0
    watchers: tuple[int, ...] = (10, 100, 1_000)
    presence_cycles: int = 10
    storm_threads: int = 1_000


FULL = Size()
QUICK = Size(
    idle_sockets=(1_000,),
    idle_hold_s=10.0,
    chat_sockets=(200, 400),
    chat_reps=1,
    chat_rates=(50, 200, 500, 1_000),
    chat_step_s=5.0,
    watchers=(10, 100),
    presence_cycles=4,
    storm_threads=200,
)


@dataclass
class Row:
    """One figure of one scenario: each side's value (a side not measured is absent), and notes."""

    scenario: str
    name: str
    unit: str
    values: dict[str, float | int | None]
    better: str = "lower"  # which direction is good, for reading the ratios
    notes: list[str] = field(default_factory=list)

    def ratio(self, reference: str) -> str:
        """The service's value over ``reference``'s, or "-" when either is missing or zero."""
        service, other = self.values.get("service"), self.values.get(reference)
        if service is None or other in (None, 0):
            return "-"
        return f"{service / other:.2f}x"


@dataclass
class ChatRep:
    """One S1 run of one side: its windows by rate, its knee and what the audit found."""

    windows: dict[int, dict[str, Any]]
    knee: int | None
    ended: str  # why the knee search stopped: "failed", "lg-bound" or "top" (the last rate passed)
    audit: dict[str, int]

    def cpu_ms_per_message(self, group: str) -> float | None:
        """Milliseconds of CPU of ``group`` per delivered message over the windows at or
        below the knee (None without a knee or a delivered message)."""
        below = [w for rate, w in self.windows.items() if self.knee is not None and rate <= self.knee]
        delivered = sum(w["delivered"] for w in below)
        if not delivered:
            return None
        return round(1000 * sum(w["cpu_s"].get(group, 0.0) for w in below) / delivered, 3)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        overrides = {
            "idle_hold_s": args.idle_hold_s,
            "idle_sockets": args.idle_sockets and tuple(args.idle_sockets),
            "chat_sockets": args.sockets and tuple(args.sockets),
            "chat_reps": args.reps,
            "chat_rates": args.rates and tuple(args.rates),
            "chat_step_s": args.step_s,
        }
        self.size = replace(QUICK if args.quick else FULL, **{k: v for k, v in overrides.items() if v is not None})
        self.rows: list[Row] = []
        self.raw: list[dict[str, Any]] = []

    # --- seeding --------------------------------------------------------------------------
    def seed_threads(self, count: int, tag: str) -> list[dict[str, Any]]:
        """``count`` orders, each with its thread, a distinct buyer and a distinct seller."""
        from datetime import timedelta
        from decimal import Decimal

        from django.utils import timezone

        from chat_service.commerce.models import Order, OrderStatus
        from chat_service.threads.models import Thread
        from chat_service.transport.identity import token_mint

        at = timezone.now()
        orders = [
            Order(
                order_id=f"{tag}{i:05d}",
                buyer_id=f"{tag}-b{i}",
                seller_id=f"{tag}-s{i}",
                supplier_name=f"Supplier {i}",
                item_title=f"Item {i}",
                properties={},
                quantity=1,
                amount=Decimal("10.00"),
                currency="USD",
                status=OrderStatus.AWAITING_SHIPMENT,
                ordered_at=at - timedelta(minutes=i),
            )
            for i in range(count)
        ]
        Order.objects.bulk_create(orders, batch_size=2000)
        Thread.objects.bulk_create(
            [Thread(order=o, buyer_id=o.buyer_id, seller_id=o.seller_id) for o in orders], batch_size=2000
        )

        def party(user_id: str) -> dict[str, str]:
            return {"user_id": user_id, "token": token_mint(user_id=user_id, name=user_id, ttl_s=TOKEN_TTL_S)}

        return [{"order_id": o.order_id, "buyer": party(o.buyer_id), "seller": party(o.seller_id)} for o in orders]

    def threads_audit(self, streams: dict[str, Any]) -> tuple[StreamAudit, dict[str, int]]:
        """Every socket's stream against PostgreSQL; acknowledged vs stored messages."""
        from chat_service.threads.models import EventKind, Thread

        last = dict(Thread.objects.filter(pk__in=list(streams)).values_list("pk", "last_seq"))
        total = StreamAudit()
        for order_id, stream in streams.items():
            for seen in stream["seen"]:
                total.add(audit_stream(seen, last[order_id]))
        from chat_service.threads.models import Event

        stored = Event.objects.filter(thread_id__in=list(streams), kind=EventKind.MESSAGE).count()
        acked = sum(s["acked"] for s in streams.values())
        return total, {"acked": acked, "stored": stored}

    def reset_threads(self, threads: list[dict[str, Any]]) -> None:
        """Empty the threads' logs and counters, so that the next S1 run on them starts as
        the first did (the audit compares each run's streams with seq 1..last_seq)."""
        from chat_service.threads.models import Event, Thread

        order_ids = [t["order_id"] for t in threads]
        Event.objects.filter(thread_id__in=order_ids).delete()
        Thread.objects.filter(pk__in=order_ids).update(
            last_seq=0, buyer_unread=0, seller_unread=0, buyer_read_seq=0, seller_read_seq=0
        )

    # --- running the load generator ---------------------------------------------------------
    def loadgen(self, stack: Stack, plan: dict[str, Any]) -> list[dict[str, Any]]:
        """Run one load generator to completion, once the servers are quiet; windows come
        back with the servers' CPU."""
        if stack.wait_quiet((*SIDES, "worker")) is None:
            print("    (the servers were still busy after 30 s; measuring anyway)", flush=True)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(plan, f)
            path = f.name
        events: list[dict[str, Any]] = []
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", path],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            text=True,
        )
        starts: dict[str, Any] = {}
        profilers: list[subprocess.Popen[bytes]] = []
        try:
            assert process.stdout is not None
            for line in process.stdout:
                event = json.loads(line)
                sample = stack.sample({"loadgen": process.pid})
                if event["event"] == "window_start":
                    starts[event["name"]] = sample
                    profilers = self.profile(stack, plan, event["name"])
                elif event["event"] == "window_end":
                    _stop(profilers)
                    start = starts.pop(event["name"])
                    event["cpu"] = sample.cpu_since(start)
                    event["cpu_s"] = sample.cpu_seconds_since(start)
                    if event.get("delivered"):
                        event["cpu_ms_per_message"] = {
                            group: round(1000 * seconds / event["delivered"], 3)
                            for group, seconds in event["cpu_s"].items()
                        }
                    event["rss"] = sample.rss
                    print(f"    {plan['side']:8} {_brief(event)}", flush=True)
                elif event["event"] == "connected":
                    event["rss"] = sample.rss
                events.append(event)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            os.unlink(path)
            _stop(profilers)
        if process.returncode != 0:
            raise RuntimeError(f"load generator exited with {process.returncode}")
        self.raw.append(
            {
                "plan": {k: v for k, v in plan.items() if k not in ("threads", "watchers")},
                "events": [{k: v for k, v in e.items() if k != "streams"} for e in events],
            }
        )
        return events

    def profile(self, stack: Stack, plan: dict[str, Any], window: str) -> list[subprocess.Popen[bytes]]:
        """With --profile: py-spy samples the service's processes during each measured
        window (collapsed stacks in var/bench/profile-<scenario>-<window>-<pid>.txt)."""
        if not self.args.profile or plan["side"] != "service":
            return []
        py_spy = Path(sys.executable).parent / "py-spy"
        return [
            subprocess.Popen(
                [
                    str(py_spy),
                    "record",
                    "--nonblocking",
                    "-p",
                    str(pid),
                    "-r",
                    "100",
                    "--format",
                    "raw",
                    "-o",
                    str(stack.log_dir / f"profile-{plan['scenario']}-{window.replace(' ', '')}-{pid}.txt"),
                ],  # noqa: E501
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid in stack.group_pids("service") + stack.group_pids("worker")
        ]

    # --- scenarios ------------------------------------------------------------------------------
    def s0_idle(self, stack: Stack, processes: int) -> None:
        threads = self.seed_threads(max(self.size.idle_sockets) // 2, f"I{processes}")
        for n, sockets in enumerate(self.size.idle_sockets):
            if n:
                # Fresh processes for each count: Python keeps the memory of sockets that
                # closed, so a process that held the previous count would hide the growth.
                for side in SIDES:
                    stack.stop_group(side)
                    stack.start_daphne(processes, side=side)
            connect, hold, per_socket_kb = {}, {}, {}
            for side in SIDES:
                before = stack.sample().rss[side]
                events = self.loadgen(
                    stack,
                    {
                        "scenario": "idle",
                        "side": side,
                        "urls": stack.ws_urls(side),
                        "threads": threads,
                        "sockets": sockets,
                        "hold_s": self.size.idle_hold_s,
                    },
                )
                connect[side] = _window(events, "connect")
                hold[side] = _window(events, "hold")
                per_socket_kb[side] = round((hold[side]["rss"][side] - before) / sockets / 1024, 1)
            s = f"S0 idle {sockets} sockets, {processes}p"
            errors = "/".join(str(connect[side]["counters"]["handshake_errors"]) for side in SIDES)
            self.rows += [
                Row(
                    s,
                    "connect rate",
                    "sockets/s",
                    {side: connect[side]["connect_rate"] for side in SIDES},
                    "higher",
                    _lg(connect) + [f"handshake errors {errors}"],
                ),
                Row(s, "server memory per socket", "KB", per_socket_kb),
                Row(
                    s,
                    f"idle CPU over {self.size.idle_hold_s:.0f} s",
                    "% of a core",
                    {side: round(100 * hold[side]["cpu"][side], 1) for side in SIDES},
                ),
                Row(
                    s,
                    "sockets dropped while held",
                    "sockets",
                    {side: hold[side]["dropped"] + (sockets - hold[side]["connected"]) for side in SIDES},
                ),
            ]

    def s1_chat(self, stack: Stack, processes: int) -> None:
        threads = self.seed_threads(max(self.size.chat_sockets) // 2, f"C{processes}")
        for sockets in self.size.chat_sockets:
            reps: dict[str, list[ChatRep]] = {side: [] for side in SIDES}
            worker_per_rep: list[float | None] = []
            for rep in range(1, self.size.chat_reps + 1):
                print(f"   {sockets} sockets, rep {rep}/{self.size.chat_reps}", flush=True)
                before = stack.sample()
                for side in SIDES:
                    reps[side].append(self.chat_rep(stack, side, threads[: sockets // 2], rep))
                # The worker serves the service only, and part of its work for a run comes
                # later (digests are due DIGEST_DELAY_S after a message): over the whole rep
                # (the service's run, then the references') nothing of it escapes.
                service = reps["service"][-1]
                delivered = sum(w["delivered"] for w in service.windows.values())
                worker_s = stack.sample().cpu_seconds_since(before)["worker"]
                worker_per_rep.append(round(1000 * worker_s / delivered, 3) if delivered else None)
            self.chat_rows(
                f"S1 chat {sockets} sockets, {processes}p, {self.size.chat_reps} reps", reps, worker_per_rep, processes
            )

    def chat_rep(self, stack: Stack, side: str, threads: list[dict[str, Any]], rep: int) -> ChatRep:
        """One side through the rate steps once; the service's threads are emptied after."""
        events = self.loadgen(
            stack,
            {
                "scenario": "chat",
                "side": side,
                "urls": stack.ws_urls(side),
                "threads": threads,
                "rates": list(self.size.chat_rates),
                "step_s": self.size.chat_step_s,
            },
        )
        done = events[-1]
        if "error" in done:
            raise RuntimeError(f"S1 {side}: {done['error']} {done['counters']}")
        if side == "service":
            audit, counts = self.threads_audit(done["streams"])
            counts["lost_acked"] = counts["acked"] - min(counts["acked"], counts["stored"])
            self.reset_threads(threads)
        else:
            audit, counts = _room_audit(done["streams"], threads), {}
        windows = {w["rate"]: w for w in events if w["event"] == "window_end"}
        knee, ended = _knee(windows)
        self.raw[-1].update(
            sockets=2 * len(threads), rep=rep, audit={**audit.as_dict(), **counts}, knee={"rate": knee, "ended": ended}
        )
        print(f"    {side:8} audit: {audit.as_dict()} {counts} knee={knee} ({ended})", flush=True)
        return ChatRep(windows, knee, ended, {**audit.as_dict(), **counts})

    def chat_rows(
        self, s: str, reps: dict[str, list[ChatRep]], worker_per_rep: list[float | None], processes: int
    ) -> None:
        """S1's rows for one size: median knees and CPU per message, then every rate.
        ``worker_per_rep``: the worker's CPU (ms) per message the service delivered, over
        each whole rep."""
        count = self.size.chat_reps
        notes = [f"{side} knees per rep: {', '.join(_fmt(r.knee) for r in reps[side])}" for side in SIDES]
        for side in SIDES:
            for ended, meaning in (("lg-bound", "a load-generator-bound step"), ("top", "the last rate passing")):
                if hits := sum(r.ended == ended for r in reps[side]):
                    notes.append(
                        f"{side}: {meaning} ended the search in {hits}/{count} reps (its knee is at least that)"
                    )
        if processes > 1:
            notes.append("floor: both parties of a room on one process (by a hash of the room), no cross-process hop")
        self.rows.append(
            Row(
                s,
                f"knee, median of reps (p99 <= {KNEE_P99_MS:.0f} ms, nothing undelivered)",
                "msg/s",
                {side: _median_knee([r.knee for r in reps[side]]) for side in SIDES},
                "higher",
                notes,
            )
        )
        self.rows.append(
            Row(
                s,
                "daphne CPU per delivered message at/below the knee, median",
                "ms",
                {side: _median([r.cpu_ms_per_message(side) for r in reps[side]]) for side in SIDES},
            )
        )
        for group in ("worker", "redis", "postgres"):
            self.rows.append(
                Row(
                    s,
                    f"{group} CPU per delivered message at/below the knee, median",
                    "ms",
                    {
                        side: _median([r.cpu_ms_per_message(group) for r in reps[side]])
                        for side in SIDES
                        if group in SIDE_GROUPS[side]
                    },
                )
            )
        notes = ["digests are composed DIGEST_DELAY_S after a message, after the service's run: this counts them"]
        for side in REFERENCES:
            windows = [w for r in reps[side] for w in r.windows.values()]
            if busy := sum(w["cpu"].get("worker", 0.0) >= WORKER_BUSY_CORES for w in windows):
                notes.append(
                    f"the worker used >= {WORKER_BUSY_CORES} cores in {busy}/{len(windows)} of the "
                    f"{side}'s windows (the service's deferred work competing with it)"
                )
        self.rows.append(
            Row(
                s,
                "worker CPU per delivered message over the whole rep, median",
                "ms",
                {"service": _median(worker_per_rep)},
                notes=notes,
            )
        )
        self.rows.append(
            Row(
                s,
                "CPU of all its processes per delivered message, median",
                "ms",
                {
                    side: _median(
                        [_sum_or_none(r.cpu_ms_per_message(g) for g in SIDE_GROUPS[side]) for r in reps[side]]
                    )
                    for side in SIDES
                },
                notes=[f"{side}: {'+'.join(SIDE_GROUPS[side])}" for side in SIDES],
            )
        )
        self.rows.append(
            Row(
                s,
                "lost + duplicated + out of order, all reps",
                "messages",
                {
                    side: sum(r.audit["lost"] + r.audit["duplicated"] + r.audit["out_of_order"] for r in reps[side])
                    for side in SIDES
                },
                notes=[_service_audit(n, r.audit) for n, r in enumerate(reps["service"], 1)],
            )
        )
        self.chat_rate_rows(s, reps)

    def chat_rate_rows(self, s: str, reps: dict[str, list[ChatRep]]) -> None:
        """S1's rows for every rate a side stepped to: medians over the reps that reached it."""
        count = self.size.chat_reps
        rates = sorted({rate for side in SIDES for r in reps[side] for rate in r.windows})
        for rate in rates:
            at_rate = {side: [r.windows[rate] for r in reps[side] if rate in r.windows] for side in SIDES}
            notes = [f"{side} reached it in {len(ws)}/{count} reps" for side, ws in at_rate.items() if len(ws) < count]
            notes += [
                f"{side} LG-BOUND in {bound}/{len(ws)}"
                for side, ws in at_rate.items()
                if (bound := sum(bool(w.get("loadgen_bound")) for w in ws))
            ]
            for stat in ("p50_ms", "p99_ms", "max_ms"):
                self.rows.append(
                    Row(
                        s,
                        f"{rate} msg/s latency {stat[:-3]}, median",
                        "ms",
                        {side: _median([w[stat] for w in ws]) for side, ws in at_rate.items()},
                        notes=notes if stat == "p50_ms" else [],
                    )
                )
            self.rows.append(
                Row(
                    s,
                    f"{rate} msg/s daphne CPU, median",
                    "cores",
                    {side: _median([w["cpu"][side] for w in ws]) for side, ws in at_rate.items()},
                )
            )
            self.rows.append(
                Row(
                    s,
                    f"{rate} msg/s daphne CPU per delivered message, median",
                    "ms",
                    {
                        side: _median([w.get("cpu_ms_per_message", {}).get(side) for w in ws])
                        for side, ws in at_rate.items()
                    },
                )
            )

    def s2_presence(self, stack: Stack, processes: int) -> None:
        for count in self.size.watchers:
            threads = self.seed_threads(count, f"P{processes}w{count}x")
            seller = threads[0]["seller"]
            watchers = [t["buyer"] for t in threads]
            results = {}
            for side in ("service", "baseline"):
                events = self.loadgen(
                    stack,
                    {
                        "scenario": "presence",
                        "side": side,
                        "urls": stack.ws_urls(side),
                        "seller": seller,
                        "watchers": watchers,
                        "cycles": self.size.presence_cycles,
                    },
                )
                results[side] = next(e for e in events if e["event"] == "window_end")
            s = f"S2 presence {count} watchers, {processes}p"
            for stat in ("p50_ms", "p99_ms", "max_ms"):
                self.rows.append(
                    Row(
                        s,
                        f"to last watcher {stat[:-3]}",
                        "ms",
                        {side: window["all"][stat] for side, window in results.items()},
                        notes=_lg(results),
                    )
                )
            missing = results["service"]["counters"]["error_replies"]
            if missing:
                self.rows[-1].notes.append(f"service missing pushes {missing}")

    def s3_storm(self, stack: Stack, processes: int) -> None:
        threads = self.seed_threads(self.size.storm_threads, f"R{processes}")
        results = {}
        for side in ("service", "baseline"):
            events = self.loadgen(
                stack,
                {
                    "scenario": "storm",
                    "side": side,
                    "urls": stack.ws_urls(side),
                    "threads": threads,
                    "jitter_s": 1.0,
                },
            )
            window = _window(events, "storm")
            if side == "service":
                audit, counts = self.threads_audit(events[-1]["streams"])
                window["audit"] = audit.as_dict()
                self.raw[-1]["audit"] = {**audit.as_dict(), **counts}
                print(f"    service  audit after storm: {audit.as_dict()} {counts}", flush=True)
            results[side] = window
        sv = results["service"]
        s = f"S3 storm {2 * self.size.storm_threads} sockets, {processes}p"
        self.rows += [
            Row(s, "99% resynced", "s", {side: w["p99_resynced_s"] for side, w in results.items()}, notes=_lg(results)),
            Row(s, "all resynced", "s", {side: w["all_resynced_s"] for side, w in results.items()}),
            Row(s, "handshake errors", "count", {side: w["handshake_errors"] for side, w in results.items()}),
            Row(
                s,
                "lost / duplicated / out of order after resync",
                "events",
                {"service": sv["audit"]["lost"] + sv["audit"]["duplicated"] + sv["audit"]["out_of_order"]},
                notes=[f"service {sv['audit']}", "baseline: no replay exists"],
            ),
        ]

    # --- driver ---------------------------------------------------------------------------
    def run(self) -> None:
        raise_open_files_limit()
        scenarios = [s.upper() for s in self.args.scenarios] or ["S0", "S1", "S2", "S3"]
        live = [s for s in scenarios if s != "S4"]
        for processes in self.args.processes:
            if not live:
                break
            print(f"== {processes} process(es): {', '.join(live)}", flush=True)
            stack = Stack(
                env_extra={
                    # The bench measures the path, not the abuse limits: a user here sends more
                    # than the per-user limit allows. The limiter still runs on every send.
                    "CHAT_SEND_RATE_COUNT": "1000000",
                    "CHAT_PRESENCE_GRACE_S": "0",
                }
            )
            if processes == self.args.processes[0]:
                stack.configure_django()
            from django.db import connections

            connections.close_all()  # the database is about to be dropped and created again
            stack.create_database()
            try:
                stack.start_daphne(processes, side="service")
                stack.start_worker()
                stack.start_daphne(processes, side="baseline")
                stack.start_daphne(processes, side="floor")
                for name in live:
                    print(f"-- {name}", flush=True)
                    getattr(self, {"S0": "s0_idle", "S1": "s1_chat", "S2": "s2_presence", "S3": "s3_storm"}[name])(
                        stack, processes
                    )
            finally:
                stack.stop()
        if "S4" in scenarios:
            self.s4_reads()
        self.report()

    def s4_reads(self) -> None:
        for script in ("bench/orders_search.py", "bench/history_paging.py"):
            argv = [sys.executable, script, *(["--reuse"] if self.args.reuse else [])]
            print(f"-- S4 {' '.join(argv[1:])}", flush=True)
            subprocess.run(argv, cwd=ROOT, check=True)

    def report(self) -> None:
        if not self.rows:
            return
        print()
        width = max(len(f"{r.scenario} | {r.name}") for r in self.rows)
        columns = "  ".join(f"{side:>10}" for side in SIDES)
        ratios = "  ".join(f"{'svc/' + reference:>12}" for reference in REFERENCES)
        print(f"{'scenario | figure':<{width}}  {columns}  {ratios}  unit")
        for r in self.rows:
            label = f"{r.scenario} | {r.name}"
            columns = "  ".join(f"{_fmt(r.values.get(side)):>10}" for side in SIDES)
            ratios = "  ".join(f"{r.ratio(reference):>12}" for reference in REFERENCES)
            notes = f"  [{'; '.join(r.notes)}]" if r.notes else ""
            print(f"{label:<{width}}  {columns}  {ratios}  {r.unit}{notes}")
        out = ROOT / "var" / "bench" / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = [r.__dict__ | {"ratios": {reference: r.ratio(reference) for reference in REFERENCES}} for r in self.rows]
        out.write_text(json.dumps({"size": self.size.__dict__, "rows": rows, "raw": self.raw}, indent=1))
        print(f"\nresults: {out.relative_to(ROOT)}")


def _room_audit(streams: dict[str, Any], threads: list[dict[str, Any]]) -> StreamAudit:
    """Baseline and floor: every message a party handed to its socket must reach the other party."""
    total = StreamAudit()
    for thread in threads:
        buyer_got, seller_got = streams[thread["order_id"]]["received"]
        buyer_sent, seller_sent = streams[thread["order_id"]]["sent"]
        b, s = thread["buyer"]["user_id"], thread["seller"]["user_id"]
        sent = {b: buyer_sent, s: seller_sent}
        received = {b: buyer_got, s: seller_got}
        total.add(audit_baseline(sent, received, lambda who, b=b, s=s: [s if who == b else b]))
    return total


def _stop(profilers: list[subprocess.Popen[bytes]]) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)
    profilers.clear()


def _knee(by_rate: dict[int, dict[str, Any]]) -> tuple[int | None, str]:
    """The highest rate with p99 <= KNEE_P99_MS and nothing undelivered, stepping up until
    two steps in a row fail (one step above the limit on a shared machine is noise more
    often than a knee; two are not), and why the search ended: "failed" (two steps, or the
    load generator stopped after one past all doubt), "lg-bound" (a load-generator-bound
    step: not a measurement of the servers) or "top" (the last rate stepped to passed)."""
    knee, failed_in_a_row = None, 0
    for rate in sorted(by_rate):
        w = by_rate[rate]
        if w.get("loadgen_bound"):
            return knee, "lg-bound"
        if w["p99_ms"] is None or w["p99_ms"] > KNEE_P99_MS or w["undelivered"]:
            failed_in_a_row += 1
            if failed_in_a_row == 2:
                return knee, "failed"
            continue
        failed_in_a_row = 0
        knee = rate
    return knee, "failed" if failed_in_a_row else "top"


def _median_knee(knees: list[int | None]) -> int | None:
    """The median rep's knee (the lower middle one for an even count; a rep where no rate
    passed counts as below every rate), so that it is a rate that was stepped to."""
    ordered = sorted(knees, key=lambda knee: -1 if knee is None else knee)
    return ordered[(len(ordered) - 1) // 2] if ordered else None


def _median(values: list[float | int | None]) -> float | None:
    """The median of the values measured (None where none was)."""
    measured = [v for v in values if v is not None]
    return round(statistics.median(measured), 3) if measured else None


def _sum_or_none(values: Any) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else round(sum(values), 3)


def _service_audit(rep: int, audit: dict[str, int]) -> str:
    return (
        f"service rep {rep}: lost {audit['lost']}, duplicated {audit['duplicated']}, out of order "
        f"{audit['out_of_order']}, acked {audit['acked']} / stored {audit['stored']}"
    )


def _window(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(e for e in events if e["event"] == "window_end" and e["name"] == name)


def _lg(windows: dict[str, dict[str, Any]]) -> list[str]:
    """A note for each side whose window measured the load generator rather than the servers."""
    return [
        f"{side} LG-BOUND (load generator {w['loadgen_cpu']:.2f} cores)"
        for side, w in windows.items()
        if w.get("loadgen_bound")
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def _brief(event: dict[str, Any]) -> str:
    keys = (
        "name",
        "connect_rate",
        "connected",
        "dropped",
        "sent",
        "achieved_rate",
        "delivered",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "undelivered",
        "p99_resynced_s",
        "all_resynced_s",
        "handshake_errors",
        "loadgen_cpu",
        "loadgen_bound",
    )
    parts = [f"{k}={event[k]}" for k in keys if k in event]
    if "all" in event:
        parts.append(f"to-last-watcher={event['all']}")
    parts.append(f"cpu={event.get('cpu')}")
    if "cpu_ms_per_message" in event:
        parts.append(f"cpu_ms_per_message={event['cpu_ms_per_message']}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="S0 S1 S2 S3 S4 (default: S0-S3)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a first look")
    parser.add_argument("--idle-hold-s", type=float, default=None, help="S0 hold time (600 for the 10-minute target)")
    parser.add_argument("--idle-sockets", type=int, nargs="+", help="S0 socket counts (default 1000 5000 10000)")
    parser.add_argument(
        "--sockets", type=int, nargs="+", help="S1 socket counts, two per thread (default 1000 2000; --quick 200 400)"
    )
    parser.add_argument("--reps", type=int, help="S1 runs per side and socket count (default 3; --quick 1)")
    parser.add_argument("--rates", type=int, nargs="+", help="S1 send rates to step through (msg/s)")
    parser.add_argument("--step-s", type=float, help="S1 seconds per rate step (default 8; --quick 5)")
    parser.add_argument("--profile", action="store_true", help="py-spy the service while it is measured")
    parser.add_argument("--reuse", action="store_true", help="S4: reuse the loaded read-bench databases")
    args = parser.parse_args()
    if any(n <= 0 or n % 2 for n in args.sockets or []):
        parser.error("--sockets: even counts (a buyer and a seller per thread)")
    if args.reps is not None and args.reps < 1:
        parser.error("--reps: at least 1")
    Bench(args).run()


if __name__ == "__main__":
    main()
