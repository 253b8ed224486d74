"""Run the bench: the real stack on loopback, a separate load generator, a baseline beside it.

    .venv/bin/python -m bench.run                       # S0-S3, 1 and 2 processes, full size
    .venv/bin/python -m bench.run S1 --processes 1      # one scenario, one process count
    .venv/bin/python -m bench.run --quick               # small sizes, a few minutes
    .venv/bin/python -m bench.run S4                    # the read benches (orders, history)

For each process count it starts, on the machine's PostgreSQL and Redis: a fresh database
``bench_chat`` (migrated), N daphne processes of the service and the worker, and N daphne
processes of the baseline (bench/baseline/, the Channels tutorial's chat) on the same
Redis. Each scenario runs once against the service and once against the baseline, with
the same users, sockets and rates, driven by ``python -m bench.loadgen`` in its own
process. Every figure is printed beside the baseline's and as a ratio (service/baseline).

CPU is read from /proc for every window measured: the service's and baseline's daphne
processes, redis-server, postgres, and the load generator. A window where the load
generator was the bottleneck (>= 90 % of a core, or below 95 % of the asked send rate)
is marked ``LG-BOUND`` and does not count. Results are also written as JSON to
var/bench/results-<time>.json. What the scenarios are and what they aim for:
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import Stack, raise_open_files_limit  # noqa: E402
from bench.traffic import StreamAudit, audit_baseline, audit_stream  # noqa: E402

KNEE_P99_MS = 100.0
TOKEN_TTL_S = 6 * 3600


@dataclass(frozen=True)
class Size:
    idle_sockets: tuple[int, ...] = (1_000, 5_000, 10_000)
    idle_hold_s: float = 60.0
    chat_threads: int = 1_000
    chat_rates: tuple[int, ...] = (25, 50, 75, 100, 150, 200, 300, 400, 600, 800, 1_000, 1_500, 2_000)
    chat_step_s: float = 10.0
    watchers: tuple[int, ...] = (10, 100, 1_000)
    presence_cycles: int = 10
    storm_threads: int = 1_000


FULL = Size()
QUICK = Size(idle_sockets=(1_000,), idle_hold_s=10.0, chat_threads=200, chat_rates=(50, 200, 500, 1_000),
             chat_step_s=5.0, watchers=(10, 100), presence_cycles=4, storm_threads=200)


@dataclass
class Row:
    """One figure of one scenario: the service's value, the baseline's, and notes."""

    scenario: str
    name: str
    unit: str
    service: float | int | None
    baseline: float | int | None
    better: str = "lower"  # which direction is good, for reading the ratio
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> str:
        if self.service is None or self.baseline in (None, 0):
            return "-"
        return f"{self.service / self.baseline:.2f}x"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size = QUICK if args.quick else FULL
        if args.idle_hold_s is not None:
            self.size = Size(**{**self.size.__dict__, "idle_hold_s": args.idle_hold_s})
        if args.idle_sockets:
            self.size = Size(**{**self.size.__dict__, "idle_sockets": tuple(args.idle_sockets)})
        if args.rates:
            self.size = Size(**{**self.size.__dict__, "chat_rates": tuple(args.rates)})
        self.rows: list[Row] = []
        self.raw: list[dict[str, Any]] = []

    # --- seeding --------------------------------------------------------------------------
    def seed_threads(self, count: int, tag: str) -> list[dict[str, Any]]:
        """``count`` orders, each with its thread, a distinct buyer and a distinct seller."""
        from datetime import timedelta
        from decimal import Decimal

        from django.utils import timezone

        from chat_service.identity import token_mint
        from chat_service.models import Thread
        from orders_bridge.models import Order, OrderStatus

        at = timezone.now()
        orders = [
            Order(order_id=f"{tag}{i:05d}", buyer_id=f"{tag}-b{i}", seller_id=f"{tag}-s{i}",
                  supplier_name=f"Supplier {i}", item_title=f"Item {i}", properties={}, quantity=1,
                  amount=Decimal("10.00"), currency="USD", status=OrderStatus.AWAITING_SHIPMENT,
                  ordered_at=at - timedelta(minutes=i))
            for i in range(count)
        ]
        Order.objects.bulk_create(orders, batch_size=2000)
        Thread.objects.bulk_create([Thread(order=o, buyer_id=o.buyer_id, seller_id=o.seller_id) for o in orders],
                                   batch_size=2000)

        def party(user_id: str) -> dict[str, str]:
            return {"user_id": user_id, "token": token_mint(user_id=user_id, name=user_id, ttl_s=TOKEN_TTL_S)}

        return [{"order_id": o.order_id, "buyer": party(o.buyer_id), "seller": party(o.seller_id)} for o in orders]

    def threads_audit(self, streams: dict[str, Any]) -> tuple[StreamAudit, dict[str, int]]:
        """Every socket's stream against PostgreSQL; acknowledged vs stored messages."""
        from chat_service.models import EventKind, Thread

        last = dict(Thread.objects.filter(pk__in=list(streams)).values_list("pk", "last_seq"))
        total = StreamAudit()
        for order_id, stream in streams.items():
            for seen in stream["seen"]:
                total.add(audit_stream(seen, last[order_id]))
        from chat_service.models import Event

        stored = Event.objects.filter(thread_id__in=list(streams), kind=EventKind.MESSAGE).count()
        acked = sum(s["acked"] for s in streams.values())
        return total, {"acked": acked, "stored": stored}

    # --- running the load generator ---------------------------------------------------------
    def loadgen(self, stack: Stack, plan: dict[str, Any]) -> list[dict[str, Any]]:
        """Run one load generator to completion; windows come back with the servers' CPU."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(plan, f)
            path = f.name
        events: list[dict[str, Any]] = []
        process = subprocess.Popen([sys.executable, "-m", "bench.loadgen", path], cwd=ROOT, stdout=subprocess.PIPE,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
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
                    event["cpu"] = sample.cpu_since(starts.pop(event["name"]))
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
        self.raw.append({"plan": {k: v for k, v in plan.items() if k not in ("threads", "watchers")},
                         "events": [{k: v for k, v in e.items() if k != "streams"} for e in events]})
        return events

    def profile(self, stack: Stack, plan: dict[str, Any], window: str) -> list[subprocess.Popen[bytes]]:
        """With --profile: py-spy samples the service's processes during each measured
        window (collapsed stacks in var/bench/profile-<scenario>-<window>-<pid>.txt)."""
        if not self.args.profile or plan["side"] != "service":
            return []
        py_spy = Path(sys.executable).parent / "py-spy"
        return [
            subprocess.Popen([str(py_spy), "record", "--nonblocking", "-p", str(pid), "-r", "100", "--format", "raw",
                              "-o", str(stack.log_dir / f"profile-{plan['scenario']}-{window.replace(' ', '')}-{pid}.txt")],  # noqa: E501
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid in stack.group_pids("service") + stack.group_pids("worker")
        ]

    # --- scenarios ------------------------------------------------------------------------------
    def s0_idle(self, stack: Stack, processes: int) -> None:
        threads = self.seed_threads(max(self.size.idle_sockets) // 2, f"I{processes}")
        for n, sockets in enumerate(self.size.idle_sockets):
            if n:
                # Fresh processes for each count: Python keeps the memory of sockets that
                # closed, so a process that held the previous count would hide the growth.
                for side in ("service", "baseline"):
                    stack.stop_group(side)
                    stack.start_daphne(processes, side=side)
            results = {}
            for side in ("service", "baseline"):
                before = stack.sample().rss[side]
                events = self.loadgen(stack, {
                    "scenario": "idle", "side": side, "urls": stack.ws_urls(side), "threads": threads,
                    "sockets": sockets, "hold_s": self.size.idle_hold_s,
                })
                connect = _window(events, "connect")
                hold = _window(events, "hold")
                per_socket = (hold["rss"][side] - before) / sockets
                results[side] = (connect, hold, per_socket)
            (sc, sh, sm), (bc, bh, bm) = results["service"], results["baseline"]
            s = f"S0 idle {sockets} sockets, {processes}p"
            self.rows += [
                Row(s, "connect rate", "sockets/s", sc["connect_rate"], bc["connect_rate"], "higher",
                    _lg(sc) + [f"handshake errors {sc['counters']['handshake_errors']}/"
                               f"{bc['counters']['handshake_errors']}"]),
                Row(s, "server memory per socket", "KB", round(sm / 1024, 1), round(bm / 1024, 1)),
                Row(s, f"idle CPU over {self.size.idle_hold_s:.0f} s", "% of a core",
                    round(100 * sh["cpu"]["service"], 1), round(100 * bh["cpu"]["baseline"], 1)),
                Row(s, "sockets dropped while held", "sockets", sh["dropped"] + (sockets - sh["connected"]),
                    bh["dropped"] + (sockets - bh["connected"])),
            ]

    def s1_chat(self, stack: Stack, processes: int) -> None:
        from chat_service.models import Event

        threads = self.seed_threads(self.size.chat_threads, f"C{processes}")
        knees: dict[str, int | None] = {}
        windows: dict[str, dict[int, dict[str, Any]]] = {}
        for side in ("service", "baseline"):
            events = self.loadgen(stack, {
                "scenario": "chat", "side": side, "urls": stack.ws_urls(side), "threads": threads,
                "rates": list(self.size.chat_rates), "step_s": self.size.chat_step_s,
            })
            done = events[-1]
            if "error" in done:
                raise RuntimeError(f"S1 {side}: {done['error']} {done['counters']}")
            if side == "service":
                audit, counts = self.threads_audit(done["streams"])
                lost_acked = counts["acked"] - min(counts["acked"], counts["stored"])
                Event.objects.filter(thread_id__in=[t["order_id"] for t in threads]).delete()
                from chat_service.models import Thread

                Thread.objects.filter(pk__in=[t["order_id"] for t in threads]).update(
                    last_seq=0, buyer_unread=0, seller_unread=0, buyer_read_seq=0, seller_read_seq=0)
            else:
                audit = _baseline_audit(done["streams"], threads)
                counts, lost_acked = {}, 0
            by_rate = {w["rate"]: w for w in events if w["event"] == "window_end"}
            windows[side] = by_rate
            knees[side] = _knee(by_rate, audit)
            self.raw[-1]["audit"] = {**audit.as_dict(), **counts, "lost_acked": lost_acked}
            print(f"    {side:8} audit: {audit.as_dict()} {counts} knee={knees[side]}", flush=True)
        s = f"S1 chat {self.size.chat_threads} threads, {processes}p"
        self.rows.append(Row(s, "knee (p99 <= 100 ms, nothing undelivered)", "msg/s", knees["service"],
                             knees["baseline"], "higher"))
        for rate in self.size.chat_rates:
            sw, bw = windows["service"].get(rate), windows["baseline"].get(rate)
            if not sw and not bw:
                continue
            for stat in ("p50_ms", "p99_ms", "max_ms"):
                self.rows.append(Row(s, f"{rate} msg/s latency {stat[:-3]}", "ms", (sw or {}).get(stat),
                                     (bw or {}).get(stat), notes=_lg(sw) + _lg(bw, "baseline ")))
            self.rows.append(Row(s, f"{rate} msg/s server CPU", "cores", (sw or {}).get("cpu", {}).get("service"),
                                 (bw or {}).get("cpu", {}).get("baseline")))

    def s2_presence(self, stack: Stack, processes: int) -> None:
        for count in self.size.watchers:
            threads = self.seed_threads(count, f"P{processes}w{count}x")
            seller = threads[0]["seller"]
            watchers = [t["buyer"] for t in threads]
            results = {}
            for side in ("service", "baseline"):
                events = self.loadgen(stack, {
                    "scenario": "presence", "side": side, "urls": stack.ws_urls(side), "seller": seller,
                    "watchers": watchers, "cycles": self.size.presence_cycles,
                })
                results[side] = next(e for e in events if e["event"] == "window_end")
            sv, bl = results["service"], results["baseline"]
            s = f"S2 presence {count} watchers, {processes}p"
            for stat in ("p50_ms", "p99_ms", "max_ms"):
                self.rows.append(Row(s, f"to last watcher {stat[:-3]}", "ms", sv["all"][stat], bl["all"][stat],
                                     notes=_lg(sv) + _lg(bl, "baseline ")))
            missing = sv["counters"]["error_replies"]
            if missing:
                self.rows[-1].notes.append(f"service missing pushes {missing}")

    def s3_storm(self, stack: Stack, processes: int) -> None:
        threads = self.seed_threads(self.size.storm_threads, f"R{processes}")
        results = {}
        for side in ("service", "baseline"):
            events = self.loadgen(stack, {
                "scenario": "storm", "side": side, "urls": stack.ws_urls(side), "threads": threads,
                "jitter_s": 1.0,
            })
            window = _window(events, "storm")
            if side == "service":
                audit, counts = self.threads_audit(events[-1]["streams"])
                window["audit"] = audit.as_dict()
                self.raw[-1]["audit"] = {**audit.as_dict(), **counts}
                print(f"    service  audit after storm: {audit.as_dict()} {counts}", flush=True)
            results[side] = window
        sv, bl = results["service"], results["baseline"]
        s = f"S3 storm {2 * self.size.storm_threads} sockets, {processes}p"
        self.rows += [
            Row(s, "99% resynced", "s", sv["p99_resynced_s"], bl["p99_resynced_s"], notes=_lg(sv)),
            Row(s, "all resynced", "s", sv["all_resynced_s"], bl["all_resynced_s"]),
            Row(s, "handshake errors", "count", sv["handshake_errors"], bl["handshake_errors"]),
            Row(s, "lost / duplicated / out of order after resync", "events",
                sv["audit"]["lost"] + sv["audit"]["duplicated"] + sv["audit"]["out_of_order"], None,
                notes=[f"service {sv['audit']}", "baseline: no replay exists"]),
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
            stack = Stack(env_extra={
                # The bench measures the path, not the abuse limits: a user here sends more
                # than the per-user limit allows. The limiter still runs on every send.
                "CHAT_SEND_RATE_COUNT": "1000000",
                "CHAT_PRESENCE_GRACE_S": "0",
            })
            if processes == self.args.processes[0]:
                stack.configure_django()
            from django.db import connections

            connections.close_all()  # the database is about to be dropped and created again
            stack.create_database()
            try:
                stack.start_daphne(processes, side="service")
                stack.start_worker()
                stack.start_daphne(processes, side="baseline")
                for name in live:
                    print(f"-- {name}", flush=True)
                    getattr(self, {"S0": "s0_idle", "S1": "s1_chat", "S2": "s2_presence", "S3": "s3_storm"}[name])(
                        stack, processes)
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
        print(f"{'scenario | figure':<{width}}  {'service':>10}  {'baseline':>10}  {'ratio':>7}  unit")
        for r in self.rows:
            label = f"{r.scenario} | {r.name}"
            notes = f"  [{'; '.join(r.notes)}]" if r.notes else ""
            print(f"{label:<{width}}  {_fmt(r.service):>10}  {_fmt(r.baseline):>10}  {r.ratio:>7}  {r.unit}{notes}")
        out = ROOT / "var" / "bench" / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": [r.__dict__ | {"ratio": r.ratio} for r in self.rows], "raw": self.raw},
                                  indent=1))
        print(f"\nresults: {out.relative_to(ROOT)}")


def _baseline_audit(streams: dict[str, Any], threads: list[dict[str, Any]]) -> StreamAudit:
    """Baseline: every message a party handed to its socket must reach the other party."""
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


def _knee(by_rate: dict[int, dict[str, Any]], audit: StreamAudit) -> int | None:
    """The highest rate with p99 <= KNEE_P99_MS and nothing undelivered, stepping up until
    two steps in a row fail (one step above the limit on a shared machine is noise more
    often than a knee; two are not). A load-generator-bound step ends the search."""
    knee, failed_in_a_row = None, 0
    for rate in sorted(by_rate):
        w = by_rate[rate]
        if w.get("loadgen_bound"):
            break  # not a measurement of the servers
        if w["p99_ms"] is None or w["p99_ms"] > KNEE_P99_MS or w["undelivered"]:
            failed_in_a_row += 1
            if failed_in_a_row == 2:
                break
            continue
        failed_in_a_row = 0
        knee = rate
    return knee


def _window(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(e for e in events if e["event"] == "window_end" and e["name"] == name)


def _lg(window: dict[str, Any] | None, prefix: str = "") -> list[str]:
    return [f"{prefix}LG-BOUND (load generator {window['loadgen_cpu']:.2f} cores)"] \
        if window and window.get("loadgen_bound") else []


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def _brief(event: dict[str, Any]) -> str:
    keys = ("name", "connect_rate", "connected", "dropped", "sent", "achieved_rate", "p50_ms", "p99_ms", "max_ms",
            "undelivered", "p99_resynced_s", "all_resynced_s", "handshake_errors", "loadgen_cpu", "loadgen_bound")
    parts = [f"{k}={event[k]}" for k in keys if k in event]
    if "all" in event:
        parts.append(f"to-last-watcher={event['all']}")
    parts.append(f"cpu={event.get('cpu')}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="S0 S1 S2 S3 S4 (default: S0-S3)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a first look")
    parser.add_argument("--idle-hold-s", type=float, default=None, help="S0 hold time (600 for the 10-minute target)")
    parser.add_argument("--idle-sockets", type=int, nargs="+", help="S0 socket counts (default 1000 5000 10000)")
    parser.add_argument("--rates", type=int, nargs="+", help="S1 send rates to step through (msg/s)")
    parser.add_argument("--profile", action="store_true", help="py-spy the service while it is measured")
    parser.add_argument("--reuse", action="store_true", help="S4: reuse the loaded read-bench databases")
    Bench(parser.parse_args()).run()


if __name__ == "__main__":
    main()
