"""Fixtures for end-to-end tests: real Daphne processes sharing Redis and PostgreSQL.

``daphne`` is a factory (servers live for one test)::

    async def test_x(daphne):
        a, b = await daphne.start(2, CHAT_SEND_RATE_COUNT="100000")
        client = await ChatClient.open(a.ws_url, token_for("buyer-1"))

Every server started in a test is stopped (SIGTERM, then SIGKILL) when it ends; a test
can ``server.kill()`` (SIGKILL) one itself. ``module_daphne`` is one server shared
by the tests of a module, for tests that only need a server, not a fresh one.

The servers read the committed state of the test database, so tests that use them run
with ``django_db(transaction=True)``. When a test fails, each server's stderr is attached
to the report ("daphne <name> stderr").
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Iterator

import pytest

from tests.e2e.servers import DaphneServer, spawn, start_blocking

MIN_OPEN_FILES = 8192
MAX_REPORTED_STDERR = 20_000  # characters, the end of the log


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    servers: list[DaphneServer] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, DaphneFactory):
            servers.extend(value.servers)
        elif isinstance(value, DaphneServer):
            servers.append(value)
    if report.failed and servers and report.when in {"setup", "call"}:
        for server in dict.fromkeys(servers):
            text = server.stderr_text() or "(empty)"
            if len(text) > MAX_REPORTED_STDERR:
                text = f"[... {len(text) - MAX_REPORTED_STDERR} characters cut ...]\n" + text[-MAX_REPORTED_STDERR:]
            report.sections.append(
                (f"daphne {server.name} (port {server.port}, exit {server.process.poll()}) stderr", text)
            )
    return report


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MIN_OPEN_FILES if hard == resource.RLIM_INFINITY else min(MIN_OPEN_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        # Inherited by the server processes too.
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class DaphneFactory:
    def __init__(self, servers: list[DaphneServer]) -> None:
        self.servers = servers

    async def start(self, count: int = 1, **env: str) -> list[DaphneServer]:
        """Start ``count`` servers with ``env`` added to their environment; wait until healthy."""
        started = []
        for _ in range(count):
            server = spawn(f"{len(self.servers) + 1}", {k: str(v) for k, v in env.items()})
            self.servers.append(server)
            started.append(server)
        outcomes = await asyncio.gather(*(s.wait_healthy() for s in started), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return started

    async def start_one(self, **env: str) -> DaphneServer:
        (server,) = await self.start(1, **env)
        return server


@pytest.fixture
def daphne(transactional_db: None) -> Iterator[DaphneFactory]:
    """A factory of Daphne processes. Requests the transactional database so that the
    servers are gone before pytest-django flushes it."""
    _raise_open_files_limit()
    servers: list[DaphneServer] = []
    yield DaphneFactory(servers)
    for server in servers:
        server.terminate()  # all at once; each then gets STOP_TIMEOUT_S before SIGKILL
    for server in servers:
        server.cleanup()


@pytest.fixture(scope="module")
def module_daphne(django_db_setup: None) -> Iterator[DaphneServer]:
    """One server with the default configuration for every test of a module."""
    _raise_open_files_limit()
    server = start_blocking("m")
    yield server
    server.cleanup()
