"""Fixtures of the resilience suite (issue 8): real Daphne processes, and what the abuse
tests share.

``daphne`` (a factory, servers live for one test) and ``module_daphne`` (one server per
module) come from tests/e2e/conftest.py, and so does the report hook that attaches each
server's stderr to a failed test.

``db_state.snapshot()`` is the database's state as far as a refused request could have
changed it, ``db_state.changed_since(snapshot)`` what differs now (both sync: wrap them in
database_sync_to_async in async tests); ``http(...)`` is one plain HTTP request to a live
server (no client of the service's own, so nothing is normalised on the way).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps

from chat_service.commerce.models import Dispute, Offer, Order
from chat_service.threads.models import Thread
from tests.e2e.conftest import daphne, module_daphne, pytest_runtest_makereport  # noqa: F401

HTTP_TIMEOUT_S = 20


class DbState:
    @staticmethod
    def snapshot() -> dict[str, Any]:
        """Every table's row count and highest id, and the state of what a command can
        change. (NotificationProfile rows are touched by every socket connect; their
        count is here, their timestamps are not.)"""
        state: dict[str, Any] = {}
        for model in apps.get_models():
            rows = model.objects.all()
            last = rows.order_by("-pk").values_list("pk", flat=True).first()
            state[model._meta.label] = (rows.count(), str(last))
        state["threads"] = list(
            Thread.objects.order_by("pk").values_list(
                "pk", "last_seq", "buyer_read_seq", "seller_read_seq", "buyer_unread", "seller_unread"
            )
        )
        state["orders"] = list(
            Order.objects.order_by("pk").values_list("pk", "status", "version", "amount", "feedback_at", "updated_at")
        )
        state["offers"] = list(Offer.objects.order_by("pk").values_list("pk", "status", "price", "closed_at"))
        state["disputes"] = list(
            Dispute.objects.order_by("pk").values_list(
                "pk", "status", "refund_amount", "counter_amount", "return_tracking_number"
            )
        )
        return state

    def changed_since(self, before: dict[str, Any]) -> dict[str, Any]:
        """What differs from ``before`` ({} when nothing was written): key -> (then, now)."""
        after = self.snapshot()
        return {
            key: (before.get(key), after.get(key))
            for key in before.keys() | after.keys()
            if before.get(key) != after.get(key)
        }


@pytest.fixture
def db_state() -> DbState:
    return DbState()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def is_json(self) -> bool:
        return self.headers.get("Content-Type", "").startswith("application/json")


def http_call(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> Answer:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


@pytest.fixture
def http() -> Callable[..., Answer]:
    return http_call


# --- issue 8, faults half: servers of the test's own (tests/resilience/faults.py) ---------------

from tests.resilience.faults import (  # noqa: E402
    PostgresCluster,
    RedisServer,
    cleanup_postgres,
    cleanup_redis,
    start_postgres,
    start_redis,
)


@pytest.fixture
def fault_redis():
    """A redis-server of this test's own on a free port (restartable, pausable); stopped and
    its directory removed at the end, also on failure. Request it before ``daphne`` so the
    servers are stopped before it is."""
    server: RedisServer = start_redis()
    yield server
    cleanup_redis(server)


@pytest.fixture
def fault_postgres():
    """A throwaway PostgreSQL cluster (run as the postgres user) on a free port; stopped and
    deleted at the end, also on failure. Request it before ``daphne``."""
    cluster: PostgresCluster = start_postgres()
    yield cluster
    cleanup_postgres(cluster)
