"""Fixtures for the browser suite: Debian's Chromium driven by Playwright for Python, against
a real Daphne process (PostgreSQL test database + Redis, as in tests/e2e).

* ``browser`` is module scoped and made with ``sync_playwright`` itself, not with
  pytest-playwright, whose session fixtures keep an event loop running that breaks later
  pytest-asyncio tests (playwright-pytest#167).
* ``site`` is one server per test, started after the demo data is seeded into the test
  database (``seed_demo``), stopped before pytest-django flushes the database.
* While Playwright's loop lives in the test's thread, Django refuses ORM calls from it
  (SynchronousOnlyOperation). pytest-django's own flush after each test runs there, so the
  ``browser`` fixture sets DJANGO_ALLOW_ASYNC_UNSAFE for this suite's modules only (set
  after launch, removed at module teardown, never passed on to the servers). The tests'
  own ORM work runs through ``orm(fn)``, in a thread of its own, where after-commit pushes
  (async_to_sync) work too.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from django.core.management import call_command
from django.db import connections

from tests.e2e.servers import START_TIMEOUT_S, DaphneServer, ServerStartError, spawn

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
T = TypeVar("T")
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
SERVER_ENV = {
    "CHAT_DEMO_LOGIN": "1",
    "SESSION_COOKIE_SECURE": "0",
    "EMBEDDED_WORKER": "1",  # the local order system applies accepted offers in the server
    "CHAT_PRESENCE_GRACE_S": "1",
    "CHAT_HEARTBEAT_S": "5",
    "CHAT_SEND_RATE_COUNT": "1000",
    "CHAT_JOIN_MAX_EVENTS": "10",  # so that "Load earlier" has something to load
}


def orm(function: Callable[[], T]) -> T:
    """Run ``function`` (ORM work) in a thread of its own, and close its connection.

    The test's thread has Playwright's event loop running in it, where Django refuses the
    ORM (SynchronousOnlyOperation) and after-commit pushes cannot use async_to_sync; a
    plain thread has neither problem, and nothing like DJANGO_ALLOW_ASYNC_UNSAFE is needed.
    """

    def run() -> T:
        try:
            return function()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (never `playwright install`)")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (bash .ci/services does)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        os.environ[ASYNC_UNSAFE] = "true"
        try:
            yield chromium
        finally:
            os.environ.pop(ASYNC_UNSAFE, None)
            chromium.close()


def _wait_healthy(server: DaphneServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.alive:
            raise ServerStartError(f"daphne exited with {server.process.returncode}:\n{server.stderr_text()}")
        try:
            with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise ServerStartError(f"daphne did not become healthy:\n{server.stderr_text()}")


@dataclass
class Site:
    server: DaphneServer

    @property
    def url(self) -> str:
        return self.server.http_url


@pytest.fixture
def site(transactional_db: None, browser: object) -> Iterator[Site]:
    orm(lambda: call_command("seed_demo", verbosity=0))
    allowance = os.environ.pop(ASYNC_UNSAFE, None)  # not for the server process
    try:
        server = spawn("browser", SERVER_ENV)
    finally:
        if allowance is not None:
            os.environ[ASYNC_UNSAFE] = allowance
    try:
        _wait_healthy(server)
        yield Site(server)
    finally:
        server.cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    site = getattr(item, "funcargs", {}).get("site")
    if report.failed and report.when == "call" and isinstance(site, Site):
        report.sections.append(("daphne stderr", site.server.stderr_text()[-20_000:]))
    return report


def screenshot(page: object, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))  # type: ignore[attr-defined]
