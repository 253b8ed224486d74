"""Real Daphne processes for end-to-end tests.

Each ``DaphneServer`` is one process started with the Procfile's web command (its exact
flags: listen backlog, connect timeout, frame cap; chat_service.serving) on a free
loopback port, configured like a production process of the service: PostgreSQL (the
pytest-django test database, so rows a test commits are visible to the servers), the
Redis broker, and the same Redis prefix and secrets as the test process, so that code in
the test and every server share one broker and one key space.

A server counts as started when ``GET /healthz`` answers 200 (database and Redis
reachable). Its stderr goes to a temporary file that the e2e conftest attaches to the
report of a failed test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

from chat_service.serving import max_message_bytes, web_argv

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = max_message_bytes()


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server process: the test process's stack, plus ``overrides``."""
    db = settings.DATABASES["default"]
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or "5432"
    user = quote(db.get("USER") or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    env = dict(os.environ)
    # Nothing of the test process's own settings module leaks into the server.
    env.pop("DATABASE_TEST_NAME", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chat_service.settings",
            # Inside a test with database access NAME is already the test database.
            "DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{quote(db['NAME'], safe='')}",
            "REDIS_URL": settings.REDIS_URL,
            "REDIS_PREFIX": settings.REDIS_PREFIX,
            "SECRET_KEY": settings.SECRET_KEY,
            "CHAT_TOKEN_SECRET": settings.CHAT_TOKEN_SECRET,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # A different settings module for every server, e.g. to check that a test fails
    # without one of the production settings:
    #   E2E_SERVER_SETTINGS=tests.e2e.settings_without_socket_timeout_fix pytest tests/e2e
    if os.environ.get("E2E_SERVER_SETTINGS"):
        env["DJANGO_SETTINGS_MODULE"] = os.environ["E2E_SERVER_SETTINGS"]
    env.update(overrides or {})
    return env


@dataclass(eq=False)  # compared and hashed by identity
class DaphneServer:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    stderr_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """kill -9: no disconnect handler runs, nothing is cleaned up."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM) without waiting."""
        if self.alive:
            self.process.terminate()

    def stop(self) -> None:
        """Terminate, then kill if it does not go within STOP_TIMEOUT_S."""
        self.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)

    def cleanup(self) -> None:
        self.stop()
        self.stderr_path.unlink(missing_ok=True)

    async def healthz_status(self) -> int | None:
        """The status code of GET /healthz, or None if the server does not answer."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 2)
        except (TimeoutError, OSError):
            return None
        try:
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 5)
            parts = status_line.split()
            return int(parts[1]) if len(parts) >= 2 else None
        except (TimeoutError, OSError, ValueError):
            return None
        finally:
            writer.close()

    async def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        status: int | None = None
        while loop.time() < deadline:
            if not self.alive:
                raise ServerStartError(
                    f"daphne {self.name} exited with {self.process.returncode} while starting; "
                    f"stderr:\n{self.stderr_text()}"
                )
            status = await self.healthz_status()
            if status == 200:
                return
            await asyncio.sleep(0.1)
        raise ServerStartError(
            f"daphne {self.name} on port {self.port} did not answer /healthz with 200 within "
            f"{timeout}s (last status {status}); stderr:\n{self.stderr_text()}"
        )


def start_blocking(name: str, env_overrides: dict[str, str] | None = None) -> DaphneServer:
    """Start one server and wait (blocking, for sync fixtures) until it is healthy."""
    server = spawn(name, env_overrides)
    try:
        asyncio.run(server.wait_healthy())
    except BaseException:
        server.cleanup()
        raise
    return server


def spawn(name: str, env_overrides: dict[str, str] | None = None) -> DaphneServer:
    """Start one server process (does not wait for it to be ready)."""
    port = free_port()
    env = server_env(env_overrides)
    fd, path = tempfile.mkstemp(prefix=f"daphne-{name}-", suffix=".stderr")
    with os.fdopen(fd, "wb") as stderr:
        process = subprocess.Popen(
            web_argv(port=port),
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return DaphneServer(name=name, port=port, process=process, stderr_path=Path(path), env=env)
