"""A real ``manage.py worker`` against the test database, killed with -9 in the middle of
its batch of pushes, then restarted: nothing lost, and nothing sent twice under two keys.

The push receiver kills the worker while one of its requests is in flight (the receiver
got the push, the worker never learns it did), three times. Real clock, millisecond
backoffs and a 2 s lease; nothing asserts on elapsed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from django.db import connection

from chat_service.threads import services
from chat_service.threads.notifications.models import (
    DeliveryStatus,
    Notification,
    NotificationDelivery,
    NotificationStatus,
)
from tests.chat_service.threads.notifications.receivers import SECRET, Push
from tests.factories import make_order

REPO_ROOT = Path(__file__).resolve().parents[4]
BUYERS = 12

pytestmark = pytest.mark.django_db(transaction=True)


def unfinished() -> int:
    return (
        Notification.objects.filter(status=NotificationStatus.PENDING).count()
        + NotificationDelivery.objects.filter(status=DeliveryStatus.PENDING).count()
    )


def test_a_worker_killed_mid_batch_loses_nothing_and_never_sends_one_digest_under_two_keys(settings, push, tmp_path):
    settings.NOTIFY = {**settings.NOTIFY, "DIGEST_DELAY_S": 0.0}  # due at once: the worker composes them
    for n in range(BUYERS):
        order = make_order(buyer_id=f"buyer{n}", seller_id="lumen", supplier_name="Lumen Electronics")
        for m in range(2):
            services.message_send(user_id="lumen", order_id=order.pk, client_msg_id=f"m{m}", body=f"Note {m}")

    kills_wanted, killed_keys = 3, []
    state: dict[str, object] = {"process": None, "kills": 0, "requests_in_run": 0}

    def kill_mid_request(record: Push) -> bool:
        state["requests_in_run"] = int(state["requests_in_run"]) + 1  # type: ignore[call-overload]
        if int(state["kills"]) < kills_wanted and state["requests_in_run"] == 3:  # type: ignore[call-overload]
            process = state["process"]
            assert isinstance(process, subprocess.Popen)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            state["kills"] = int(state["kills"]) + 1  # type: ignore[call-overload]
            killed_keys.append(record.key)
            return True
        return False

    push.on_request = kill_mid_request
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chat_service.settings",
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        "DEBUG": "0",
        "NOTIFY_WEBHOOK_URL": push.url,
        "NOTIFY_SECRET": SECRET,
        "NOTIFY_DIGEST_DELAY_S": "0",
        "NOTIFY_TIMEOUT_S": "1",
        "NOTIFY_LEASE_S": "2",
        "NOTIFY_BACKOFF_BASE_S": "0.01",
        "NOTIFY_BACKOFF_MAX_S": "0.2",
        "NOTIFY_BATCH": "4",
        "PYTHONUNBUFFERED": "1",
    }
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    log_path = tmp_path / "worker.log"

    def start_worker() -> subprocess.Popen[bytes]:
        push.run += 1
        state["requests_in_run"] = 0
        with log_path.open("ab") as log:  # a file, not a pipe: a full pipe would stall the worker
            process = subprocess.Popen(
                [sys.executable, "manage.py", "worker"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        state["process"] = process
        return process

    process = start_worker()
    try:
        for _ in range(600):  # polls of 0.2 s, a bound against a hang
            if process.poll() is not None:
                assert process.returncode == -signal.SIGKILL, log_path.read_text()[-3000:]
                process = start_worker()
            elif unfinished() == 0 and NotificationDelivery.objects.exists():
                break
            time.sleep(0.2)
        assert unfinished() == 0, "the worker never finished: " + log_path.read_text()[-3000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log_path.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert state["kills"] == kills_wanted and push.run == kills_wanted + 1
    rows = {row.idempotency_key: row for row in NotificationDelivery.objects.all()}
    # One digest per buyer and thread, each composed once, each delivered: nothing lost.
    assert sorted(row.user_id for row in rows.values()) == sorted(f"buyer{n}" for n in range(BUYERS))
    assert {row.status for row in rows.values()} == {DeliveryStatus.DELIVERED}
    assert set(Notification.objects.values_list("status", flat=True)) == {NotificationStatus.SENT}
    assert all(p.signed for p in push.received)
    by_key: dict[str, list[Push]] = defaultdict(list)
    keys_per_digest: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in push.received:
        by_key[record.key].append(record)
        keys_per_digest[(record.payload["user_id"], record.payload["order_id"])].add(record.key)
    assert set(by_key) == set(rows), "a push carried a key no row has, or a row was never sent"
    assert {p.key for p in push.accepted()} == set(rows)
    assert all(len(keys) == 1 for keys in keys_per_digest.values()), "one digest went out under two keys"
    for key, requests in by_key.items():
        assert {r.body for r in requests} == {requests[0].body}, f"{key}: a retry changed the body"
        assert requests[0].payload["count"] == 2
    for key in killed_keys:  # the push the worker died in was sent again, unchanged, by a later run
        runs = [r.run for r in by_key[key]]
        assert len(runs) >= 2 and max(runs) > min(runs)
