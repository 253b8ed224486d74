"""The HTTP API under Schemathesis and hostile JSON bodies, on a real Daphne: never a 5xx.

Schemathesis reads the live server's OpenAPI document (/api/schema/) and runs its coverage,
fuzzing and stateful phases against every operation, in positive and negative mode, once
with a valid bearer token (a user with orders, offers, disputes and messages) and once
without one. Its only check is ``not_a_server_error``; the server's log is read as well:
an "Internal Server Error" or a traceback there fails the test even if the answer did not
show it. It runs as its command line (its pytest plugin does not run under pytest 9).

Schemathesis sends only what JSON Schema can describe and its serializer writes, so a
second test posts bodies no schema describes (lone surrogates as \\u escapes, NaN, integers
beyond 64 bits, nesting beyond the parser's limit, not JSON, not UTF-8, not an object) to
every operation that takes a body, with a real order id in the path so that the body is
read: each gets a 4xx with a JSON error.

The CI runs are small (MAX_EXAMPLES per operation); the ``heavy`` ones are not.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from chat_service.commerce.models import OrderStatus
from chat_service.commerce.services.disputes import dispute_open
from chat_service.commerce.services.offers import offer_make
from chat_service.threads import services
from tests.e2e.servers import DaphneServer
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

USER = "oa-user"
MAX_EXAMPLES = {"bearer": 8, "anonymous": 4}
HEAVY_MAX_EXAMPLES = 150
HOSTILE_BODIES, HEAVY_HOSTILE_BODIES = 300, 3000
RUN_TIMEOUT_S = 900


def seed_user() -> list[str]:
    """USER buys and sells, with an offer, a dispute and messages: lists have content."""
    bought = make_order(buyer_id=USER, seller_id="oa-seller")
    offer_make(user_id="oa-seller", order_id=bought.pk, price="10.00")
    sold = make_order(buyer_id="oa-buyer", seller_id=USER)
    disputed = make_order(buyer_id=USER, seller_id="oa-seller", status=OrderStatus.AWAITING_ACCEPTANCE)
    dispute_open(user_id=USER, order_id=disputed.pk, reason="wrong_size", refund_amount="5.00", return_item=False)
    for order in (bought, sold):
        services.message_send(user_id=USER, order_id=order.pk, client_msg_id=f"hello-{order.pk}", body="Hello")
    return [bought.pk, sold.pk, disputed.pk]


def schemathesis_command() -> list[str]:
    binary = Path(sys.executable).with_name("schemathesis")
    if binary.exists():
        return [str(binary)]
    found = shutil.which("schemathesis")
    assert found, "schemathesis is not installed (pip install -e '.[test]')"
    return [found]


def run_schemathesis(
    server: DaphneServer, workdir: Path, *, token: str | None, max_examples: int, run_seed: int
) -> dict[str, Any]:
    report = workdir / f"report-{'bearer' if token else 'anonymous'}.json"
    command = [
        *schemathesis_command(),
        "run",
        f"{server.http_url}/api/schema/",
        "--url",
        server.http_url,
        "--checks",
        "not_a_server_error",
        "--mode",
        "all",
        "--phases",
        "coverage,fuzzing,stateful",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(run_seed),
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    # In a scratch directory: Schemathesis keeps a cache (.schemathesis/) where it runs.
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert report.exists(), (
        f"schemathesis wrote no report (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    )
    result = json.loads(report.read_text())
    result["stdout"] = done.stdout
    result["returncode"] = done.returncode
    return result


def operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    methods = {"get", "put", "post", "patch", "delete"}
    return sorted((m.upper(), path) for path, ops in schema["paths"].items() for m in ops if m in methods)


async def fuzz(server: DaphneServer, http: Any, tmp_path: Path, *, token: str | None, max_examples: int) -> None:
    schema = (await asyncio.to_thread(http, "GET", f"{server.http_url}/api/schema/")).json
    expected = operations(schema)
    run_seed = int(os.environ.get("RESILIENCE_SEED") or random.SystemRandom().randrange(2**31))
    log_start = len(server.stderr_text())
    result = await asyncio.to_thread(
        run_schemathesis, server, tmp_path, token=token, max_examples=max_examples, run_seed=run_seed
    )
    log = server.stderr_text()[log_start:]
    server_errors = [line for line in log.splitlines() if "Internal Server Error" in line or "Traceback" in line]
    mode = "bearer token" if token else "no token"
    phases = ", ".join(f"{name}: {phase['status']}" for name, phase in result["phases"].items())
    figures = (
        f"{mode}: operations {result['operations']['tested']}/{result['operations']['total']}, "
        f"test cases {result['test_cases']['generated']}, failures {len(result['failures'])}, "
        f"errors {len(result['errors'])}, server errors logged {len(server_errors)}, "
        f"phases {{{phases}}}, "
        f"seed {run_seed}, {result['running_time']:.1f} s"
    )
    print(f"\n[openapi fuzz] {figures}")
    details = f"{figures}\n{result['stdout'][-6000:]}"
    assert result["failures"] == [] and result["errors"] == [], details
    assert result["returncode"] == 0, details
    assert server_errors == [], f"{server_errors[:5]}\n{log[-4000:]}"
    assert result["operations"]["tested"] == result["operations"]["total"] == len(expected), details
    assert result["test_cases"]["generated"] >= len(expected) * 2, details
    assert server.alive


async def test_schemathesis_with_a_bearer_token_finds_no_5xx(module_daphne, http, tmp_path):
    await database_sync_to_async(seed_user)()
    await fuzz(module_daphne, http, tmp_path, token=token_for(USER), max_examples=MAX_EXAMPLES["bearer"])


async def test_schemathesis_without_a_token_finds_no_5xx(module_daphne, http, tmp_path):
    await fuzz(module_daphne, http, tmp_path, token=None, max_examples=MAX_EXAMPLES["anonymous"])


@pytest.mark.heavy
async def test_schemathesis_heavy_run_finds_no_5xx(module_daphne, http, tmp_path):
    await database_sync_to_async(seed_user)()
    await fuzz(module_daphne, http, tmp_path, token=token_for(USER), max_examples=HEAVY_MAX_EXAMPLES)
    await fuzz(module_daphne, http, tmp_path, token=None, max_examples=HEAVY_MAX_EXAMPLES // 3)


# --- Bodies no schema describes -------------------------------------------------------------------

surrogate_text = st.tuples(
    st.text(max_size=10), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.text(max_size=10)
).map("".join)
hostile_scalars = st.one_of(
    surrogate_text,
    st.text(max_size=50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    st.none(),
    st.just("\x00"),
)
hostile_json = st.recursive(
    hostile_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=8), surrogate_text), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["client_msg_id", "body", "seq", "muted", "email", "push"]


def to_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()  # surrogates as \u escapes, NaN as NaN


raw_bodies = st.one_of(
    # Objects with the operations' own fields, given hostile values.
    st.dictionaries(st.sampled_from(FIELDS), hostile_json, min_size=1, max_size=4).map(to_json),
    st.fixed_dictionaries({"client_msg_id": st.just("c-1"), "body": surrogate_text}).map(to_json),
    hostile_json.map(to_json),
    st.integers(20, 4000).map(lambda n: b'{"seq": ' + b"9" * n + b"}"),
    st.integers(5000, 20000).map(lambda n: b'{"seq": ' + b"9" * n + b"}"),
    st.integers(2000, 20000).map(lambda n: b'{"body": ' + b"[" * n + b"]" * n + b"}"),
    st.sampled_from(
        [
            b"",
            b"{",
            b"null",
            b"[]",
            b"\xef\xbb\xbf{}",
            b'{"muted": NaN}',
            b'{"seq": Infinity}',
            b'{"body": "\\ud800", "client_msg_id": "x"}',
            b'{"a": 1}{"b": 2}',
            b"\xff\xfe{\x00}\x00",
            '{"body": "é"}'.encode("utf-16"),
            b'{"email": true, "email": "x"}',
        ]
    ),
    st.binary(max_size=200),
)


def generate_bodies(count: int, run_seed: int) -> list[bytes]:
    bodies: list[bytes] = []

    @seed(run_seed)
    @settings(
        max_examples=max(1, count // 10),
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(raw_bodies, min_size=10, max_size=10))
    def collect(batch: list[bytes]) -> None:
        bodies.extend(batch)

    collect()
    return bodies[:count]


async def hostile_bodies(server: DaphneServer, http: Any, count: int) -> None:
    order_ids = await database_sync_to_async(seed_user)()
    schema = (await asyncio.to_thread(http, "GET", f"{server.http_url}/api/schema/")).json
    targets = [
        (method, path.replace("{order_id}", order_ids[0]))
        for method, path in operations(schema)
        if "requestBody" in schema["paths"][path][method.lower()]
    ]
    assert targets, "no operation takes a body"
    run_seed = int(os.environ.get("RESILIENCE_SEED") or random.SystemRandom().randrange(2**31))
    bodies = generate_bodies(count, run_seed)
    token = token_for(USER)
    log_start = len(server.stderr_text())
    statuses: dict[int, int] = {}
    for index, body in enumerate(bodies):
        method, path = targets[index % len(targets)]
        content_type = ["application/json", "text/plain", "application/x-www-form-urlencoded"][index % 7 % 3]
        answer = await asyncio.to_thread(
            http, method, server.http_url + path, token=token, body=body, headers={"Content-Type": content_type}
        )
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        assert answer.status < 500, (method, path, body[:300], answer)
        if answer.status >= 400:
            assert answer.is_json and answer.json["error"]["code"], (method, path, body[:300], answer)
    log = server.stderr_text()[log_start:]
    figures = (
        f"bodies {len(bodies)} to {len(targets)} operations, statuses {dict(sorted(statuses.items()))}, seed {run_seed}"
    )
    print(f"\n[hostile bodies] {figures}")
    assert "Internal Server Error" not in log and "Traceback" not in log, log[-4000:]
    assert len(bodies) == count, figures


async def test_hostile_json_bodies_get_a_json_4xx_never_a_5xx(module_daphne, http):
    await hostile_bodies(module_daphne, http, HOSTILE_BODIES)


@pytest.mark.heavy
async def test_hostile_json_bodies_heavy_run(module_daphne, http):
    await hostile_bodies(module_daphne, http, HEAVY_HOSTILE_BODIES)
