"""Outbox and notification delivery through a receiver that fails 30 % of the time, with the
worker process (``manage.py worker``) killed with -9 while it delivers, again and again.

Load: while the worker runs, the test keeps writing, at a steady rate, order-system actions
(outbox rows) and seller messages to offline buyers (each a notification that the worker
composes into a digest and pushes). The receiver (tests/resilience/faults.FlakyReceiver)
answers 500, 503 or resets the connection at random for 30 % of the requests, and in each
worker run it leaves one request unanswered while the test kills the worker (the receiver
got it, the worker never learns). The test starts a new worker each time.

What must hold (docs/operations.md "Failure behaviour"): delivered 100 %, lost 0: every
outbox row and every composed digest reaches the receiver and is accepted at least once,
always with the same key and body; and each key counts once: every action is in exactly one
key's payload, every message's notification in exactly one digest's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict

import pytest
from django.db import connection, transaction

from chat_service.commerce.models import OutboxMessage, OutboxStatus
from chat_service.commerce.outbox import outbox_enqueue
from chat_service.threads import services
from chat_service.threads.notifications.models import Notification, NotificationDelivery, NotificationStatus
from tests.e2e.servers import REPO_ROOT, server_env
from tests.resilience.faults import FlakyReceiver, report, seed_threads, signal_name

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BRIDGE_SECRET = "fault-bridge-secret-" + "b" * 32
NOTIFY_SECRET = "fault-notify-secret-" + "n" * 32
THREADS = 20
RATE = 20  # items per second: half outbox actions, half messages
PRODUCE_S = 8.0
DONE_WITHIN_S = 180.0  # liveness bound of the whole run


def unfinished() -> int:
    return (
        OutboxMessage.objects.filter(status=OutboxStatus.PENDING).count()
        + Notification.objects.filter(status=NotificationStatus.PENDING).count()
        + NotificationDelivery.objects.filter(status=OutboxStatus.PENDING).count()
    )


@pytest.mark.parametrize("kills", [2, pytest.param(5, marks=pytest.mark.heavy)], ids=["2x", "5x"])
def test_outbox_and_notifications_reach_a_30_percent_failing_receiver_through_worker_kills_once_per_key(
    settings, fault_redis, tmp_path, kills
):
    settings.NOTIFY = {**settings.NOTIFY, "DIGEST_DELAY_S": 0.0}  # due at once: composed by the worker
    order_ids = seed_threads(THREADS, f"wk{kills}x")
    receiver = FlakyReceiver(
        secrets={"/bridge/actions/": BRIDGE_SECRET, "/push/": NOTIFY_SECRET}, fail_rate=0.3, seed=20261126 + kills
    )
    receiver.start()
    rng = random.Random(kills)
    state = {"kills": 0, "in_run": 0, "kill_at": 0}
    killed_keys: list[tuple[str, int]] = []  # (key, worker run) of each request left unanswered
    worker: dict[str, subprocess.Popen[bytes]] = {}
    exits: list[str] = []
    env = server_env(
        {
            "REDIS_URL": fault_redis.url,
            "ORDER_SYSTEM_URL": receiver.url("/bridge/actions/"),
            "BRIDGE_SECRET": BRIDGE_SECRET,
            "ORDER_SYSTEM_TIMEOUT_S": "1",
            "ORDERS_OUTBOX_LEASE_S": "2",
            "ORDERS_OUTBOX_BACKOFF_BASE_S": "0.01",
            "ORDERS_OUTBOX_BACKOFF_MAX_S": "0.2",
            "NOTIFY_WEBHOOK_URL": receiver.url("/push/"),
            "NOTIFY_SECRET": NOTIFY_SECRET,
            "NOTIFY_DIGEST_DELAY_S": "0",
            "NOTIFY_TIMEOUT_S": "1",
            "NOTIFY_LEASE_S": "2",
            "NOTIFY_BACKOFF_BASE_S": "0.01",
            "NOTIFY_BACKOFF_MAX_S": "0.2",
        }
    )
    log_path = tmp_path / "worker.log"

    def kill_path() -> str:
        return "/bridge/actions/" if state["kills"] % 2 == 0 else "/push/"  # alternately mid-outbox, mid-push

    def kill_mid_request(request) -> bool:
        """In each run until enough kills, the kill_at-th request to kill_path() is left
        unanswered while the worker that sent it is killed."""
        if state["kills"] >= kills or request.path != kill_path():
            return False
        state["in_run"] += 1
        if state["in_run"] == state["kill_at"]:
            process = worker["process"]
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            state["kills"] += 1
            killed_keys.append((request.key, request.run))
            return True
        return False

    def start_worker() -> None:
        receiver.run += 1
        state["in_run"] = 0
        state["kill_at"] = rng.randint(2, 6) if kill_path() == "/bridge/actions/" else rng.randint(1, 2)
        with log_path.open("ab") as log:  # a file: a full pipe would stall the worker
            worker["process"] = subprocess.Popen(
                [sys.executable, "manage.py", "worker"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    produced = {"actions": 0, "messages": []}
    producing = threading.Event()
    producing.set()

    def produce() -> None:
        """RATE items a second, outbox actions and messages, for PRODUCE_S and until every kill
        happened (a worker is killed while it delivers, so there must be work)."""
        try:
            started, n = time.monotonic(), 0
            while time.monotonic() - started < PRODUCE_S or (
                state["kills"] < kills and time.monotonic() - started < DONE_WITHIN_S / 2
            ):
                due = int(RATE * (time.monotonic() - started)) - n
                for _ in range(max(0, due)):
                    if n % 2 == 0:
                        a = produced["actions"]
                        with transaction.atomic():
                            outbox_enqueue(
                                action="order.receipt_confirmed",
                                order_id=order_ids[a % THREADS],
                                payload={"by": "fault-test", "n": a},
                            )
                        produced["actions"] += 1
                    else:
                        m = len(produced["messages"])
                        outcome = services.message_send(
                            user_id=f"wk{kills}x-s{m % THREADS}",
                            order_id=order_ids[m % THREADS],
                            client_msg_id=uuid.uuid4().hex,
                            body=f"note {m}",
                        )
                        produced["messages"].append(
                            (f"wk{kills}x-b{m % THREADS}", order_ids[m % THREADS], outcome.event.seq)
                        )
                    n += 1
                time.sleep(0.01)
        finally:
            connection.close()
            producing.clear()

    receiver.on_request = kill_mid_request
    producer = threading.Thread(target=produce, name="fault-producer")
    start_worker()
    producer.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < DONE_WITHIN_S:
            process = worker["process"]
            if process.poll() is not None:
                exits.append(signal_name(process.returncode))
                start_worker()
            elif not producing.is_set() and state["kills"] >= kills and unfinished() == 0:
                break
            time.sleep(0.1)
        producer.join(30)
        process = worker["process"]
        process.send_signal(signal.SIGTERM)
        exits.append(signal_name(process.wait(timeout=30)))
    finally:
        producing.clear()
        producer.join(30)
        if worker["process"].poll() is None:
            worker["process"].kill()
            worker["process"].wait()
        receiver.stop()
    elapsed_s = time.monotonic() - started

    outbox = {row.idempotency_key: row for row in OutboxMessage.objects.all()}
    digests = {row.idempotency_key: row for row in NotificationDelivery.objects.all()}
    rows = {**outbox, **digests}
    requests_by_key: dict[str, list] = defaultdict(list)
    for request in receiver.requests:
        requests_by_key[request.key].append(request)
    # Counted once: each action / each message's notification in exactly one applied key.
    actions_in: dict[int, list[str]] = defaultdict(list)
    notified_in: dict[tuple[str, str, int], list[str]] = defaultdict(list)
    for key, body in receiver.applied.items():  # what the receiver applied, as it got it
        payload = json.loads(body)
        if key in outbox:
            actions_in[payload["n"]].append(key)
        elif key in digests:
            for seq in payload["event_seqs"]:
                notified_in[(payload["user_id"], payload["order_id"], seq)].append(key)
    notifications = {status: Notification.objects.filter(status=status).count() for status in NotificationStatus.values}
    figures = {
        "kills": state["kills"],
        "worker_exits": exits,
        "elapsed_s": round(elapsed_s, 1),
        "produced_actions": produced["actions"],
        "produced_messages": len(produced["messages"]),
        "outbox_rows": len(outbox),
        "digests": len(digests),
        "notifications": notifications,
        "outbox_status": {s: sum(1 for r in outbox.values() if r.status == s) for s in OutboxStatus.values},
        "digest_status": {s: sum(1 for r in digests.values() if r.status == s) for s in OutboxStatus.values},
        "requests": len(receiver.requests),
        "outcomes": receiver.outcomes(),
        "bad_signatures": receiver.bad_signatures,
        "keys_accepted": len(receiver.applied),
        "accepted_repeats": sum(receiver.repeats.values()),
        "max_attempts": max((r.attempts for r in rows.values()), default=0),
        "lost_keys": len(set(rows) - set(receiver.applied)),
        "unknown_keys": len(set(requests_by_key) - set(rows)),
        "actions_not_applied": sum(1 for n in range(produced["actions"]) if not actions_in.get(n)),
        "actions_applied_twice": sum(1 for keys in actions_in.values() if len(keys) > 1),
        "notifications_not_applied": sum(1 for m in produced["messages"] if not notified_in.get(m)),
        "notifications_applied_twice": sum(1 for keys in notified_in.values() if len(keys) > 1),
        "bodies_changed": sorted(k for k, rs in requests_by_key.items() if len({r.body for r in rs}) > 1)[:5],
        # The request a worker died in was sent again, unchanged, and accepted by a later worker.
        "killed_keys_resent_later": sum(
            1 for key, run in killed_keys if any(r.run > run and r.outcome == "200" for r in requests_by_key[key])
        ),
    }
    text = report("worker kill -9, receiver failing 30 %", figures)
    if figures["lost_keys"] or figures["actions_not_applied"] or figures["notifications_not_applied"]:
        text += "\nworker log:\n" + log_path.read_text(errors="replace")[-3000:]

    # The faults happened: every kill was a kill -9 mid-request, the receiver failed a share.
    assert state["kills"] == kills and exits == ["SIGKILL"] * kills + ["0"], text
    assert {"500", "503", "reset", "killed"} <= set(figures["outcomes"]), text
    assert figures["killed_keys_resent_later"] == kills and figures["accepted_repeats"] >= kills, text
    assert figures["bad_signatures"] == 0 and figures["unknown_keys"] == 0, text
    # Delivered 100 %, lost 0.
    assert figures["outbox_rows"] == produced["actions"] > 0 and figures["digests"] > 0, text
    assert figures["outbox_status"]["delivered"] == len(outbox), text
    assert figures["digest_status"]["delivered"] == len(digests), text
    assert figures["notifications"]["pending"] == 0 and figures["notifications"]["dropped"] == 0, text
    assert figures["lost_keys"] == 0, text
    assert figures["actions_not_applied"] == 0 and figures["notifications_not_applied"] == 0, text
    # Each key counts once: one key per action and per message's notification, one body per key.
    assert figures["actions_applied_twice"] == 0 and figures["notifications_applied_twice"] == 0, text
    assert figures["bodies_changed"] == [], text
