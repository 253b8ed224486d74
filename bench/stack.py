"""The deployment a bench run measures: real processes on loopback, and their CPU and memory.

``Stack`` owns, for one run:

* a PostgreSQL database of its own (``bench_chat``; the name must start with "bench"),
  created and migrated at start, seeded by the scenarios through the ORM;
* a Redis key prefix of its own on the machine's Redis (deleted at the end);
* N daphne processes of the service (``chat_service.asgi``), configured as production
  (DEBUG off, PostgreSQL, the Redis layer), and the worker (``manage.py worker``);
* N daphne processes of the baseline (``bench.baseline.asgi``) on the same Redis;
* N daphne processes of the floor (``bench.floor.asgi``, a bare broadcast: no Django, no
  Redis, no database).

Every daphne runs the Procfile's ``web`` command (``chat_service.serving.web_argv``): the
same listen backlog, connect timeout, frame cap and proxy-header handling as production,
only the port and the ASGI application differ. Nothing here writes Daphne's flags.

``Stack.sample()`` reads /proc for the CPU seconds and RSS of each process group (service,
baseline, floor, worker, redis-server, postgres) so that a scenario can say how much each
used over a window.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from chat_service import serving

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_chat"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Server:
    """What distinguishes the daphne processes of one side: the ASGI application, its
    Django settings (None: it uses none) and the path its websockets live under."""

    application: str
    settings: str | None
    ws_path: str


SERVERS = {
    "service": Server(serving.APPLICATION, "chat_service.settings", "/ws/"),
    "baseline": Server("bench.baseline.asgi:application", "bench.baseline.settings", "/ws/"),
    "floor": Server("bench.floor.asgi:application", None, "/floor/"),
}

SECRETS = {
    # Not the dev defaults (DEBUG off refuses those), not secret either: loopback only.
    "SECRET_KEY": "bench-secret-key-not-for-production-0123456789",
    "CHAT_TOKEN_SECRET": "bench-token-secret-not-for-production-0123456789",
    "BRIDGE_SECRET": "bench-bridge-secret-not-for-production-0123456789",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_open_files_limit(wanted: int = 65536) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    """utime + stime of ``pid`` (+ that of its exited, reaped children: PostgreSQL's
    backends come and go, and their time lands on the postmaster)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def pids_named(name: str, *, cmdline_has: str = "") -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name and cmdline_has in (entry / "cmdline").read_text():
                    pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return pids


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    cpu: dict[str, float]  # group -> CPU seconds so far
    rss: dict[str, int]  # group -> bytes now

    def cpu_seconds_since(self, earlier: Sample) -> dict[str, float]:
        """CPU seconds used per group between two samples."""
        return {group: round(self.cpu[group] - earlier.cpu.get(group, 0.0), 3) for group in self.cpu}

    def cpu_since(self, earlier: Sample) -> dict[str, float]:
        """CPU used per group between two samples, in cores (1.0 = one core busy)."""
        wall = max(1e-9, self.at - earlier.at)
        return {group: round(seconds / wall, 3) for group, seconds in self.cpu_seconds_since(earlier).items()}


@dataclass(eq=False)
class Process:
    name: str
    group: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


@dataclass
class Stack:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    prefix: str = field(default_factory=lambda: f"bench{os.getpid()}")
    log_dir: Path = field(default_factory=lambda: ROOT / "var" / "bench")
    env_extra: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    # --- environment ---------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(SECRETS)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "chat_service.settings",
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "REDIS_PREFIX": self.prefix,
                "DEBUG": "0",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "WARNING",
            }
        )
        env.update(self.env_extra)
        env.update(extra)
        return env

    def configure_django(self) -> None:
        """Point this process's Django at the bench database (for seeding and audits)."""
        os.environ.update({k: v for k, v in self.env().items() if k != "PYTHONPATH"})
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()

    # --- database ------------------------------------------------------------------------
    def create_database(self) -> None:
        """Drop and create the bench database, then migrate it (as the release phase does)."""
        parts = urlsplit(self.database_url)
        name = parts.path.lstrip("/")
        if not name.startswith("bench"):
            raise SystemExit(f"refusing to recreate {name!r}: the bench database's name must start with 'bench'")
        import psycopg

        admin = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env(), check=True
        )

    # --- processes -----------------------------------------------------------------------
    def _spawn(self, name: str, group: str, argv: list[str], env: dict[str, str], port: int | None) -> Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        process = Process(name, group, popen, log_path, port)
        self.processes.append(process)
        return process

    def start_daphne(self, count: int, *, side: str = "service", **env: str) -> list[Process]:
        """``count`` daphne processes of ``side`` (a key of SERVERS), in process group
        ``side``, each on a free port with the Procfile's flags; returns once all answer
        ``/healthz``."""
        server = SERVERS[side]
        started = []
        for i in range(count):
            port = free_port()
            process_env = self.env(**env)
            if server.settings is None:
                process_env.pop("DJANGO_SETTINGS_MODULE")
            else:
                process_env["DJANGO_SETTINGS_MODULE"] = server.settings
            argv = serving.web_argv(port=port, application=server.application)
            started.append(self._spawn(f"{side}-{i + 1}", side, argv, process_env, port))
        for process in started:
            self.wait_healthy(process)
        return started

    def start_worker(self, **env: str) -> Process:
        return self._spawn("worker", "worker", [sys.executable, "manage.py", "worker"], self.env(**env), None)

    def wait_healthy(self, process: Process, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive:
                raise RuntimeError(f"{process.name} exited while starting:\n{process.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{process.port}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{process.name} did not become healthy within {timeout}s:\n{process.log_tail()}")

    def stop_group(self, group: str) -> None:
        for process in [p for p in self.processes if p.group == group]:
            process.stop()
            self.processes.remove(process)

    def stop(self) -> None:
        for process in list(self.processes):
            process.stop()
        self.processes.clear()
        self.flush_redis()

    def flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            for key in client.scan_iter(f"{self.prefix}:*", count=1000):
                client.delete(key)
            for key in client.scan_iter(f"{self.prefix}*", count=1000):
                client.delete(key)
        finally:
            client.close()

    def ws_urls(self, side: str) -> list[str]:
        """The websocket base URL of each daphne process of ``side``."""
        return [f"ws://127.0.0.1:{p.port}{SERVERS[side].ws_path}" for p in self.processes if p.group == side]

    # --- measurement ---------------------------------------------------------------------
    def sample(self, extra_pids: dict[str, int] | None = None) -> Sample:
        groups: dict[str, list[int]] = {}
        for process in self.processes:
            if process.alive:
                groups.setdefault(process.group, []).append(process.popen.pid)
        # The bench's Redis (other redis-servers on the machine are not ours) and every
        # PostgreSQL process (the postmaster counts its exited backends).
        groups["redis"] = pids_named("redis-server", cmdline_has=f":{urlsplit(self.redis_url).port or 6379}")
        groups["postgres"] = pids_named("postgres")
        for name, pid in (extra_pids or {}).items():
            groups[name] = [pid]
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}
        for group, pids in groups.items():
            times = (cpu_seconds(pid, reaped_children=group == "postgres") for pid in pids)
            cpu[group] = sum(c for c in times if c is not None)
            rss[group] = sum(r for r in map(rss_bytes, pids) if r is not None)
        return Sample(time.monotonic(), cpu, rss)

    def group_pids(self, group: str) -> list[int]:
        return [p.popen.pid for p in self.processes if p.group == group and p.alive]

    def wait_quiet(
        self, groups: tuple[str, ...], *, cores: float = 0.05, every_s: float = 0.5, timeout_s: float = 30.0
    ) -> float | None:
        """Wait until ``groups`` together use less than ``cores`` over ``every_s``: a run's
        work goes on for a while after its load generator exits (its sockets are torn
        down, the worker drains its queue), and that CPU would land in the next run's
        first window. Returns the seconds waited, or None if they were still busy after
        ``timeout_s``."""
        started = time.monotonic()
        earlier = self.sample()
        while time.monotonic() - started < timeout_s:
            time.sleep(every_s)
            later = self.sample()
            used = later.cpu_since(earlier)
            if sum(used.get(group, 0.0) for group in groups) < cores:
                return round(time.monotonic() - started, 1)
            earlier = later
        return None


def database_url_with_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name)))
