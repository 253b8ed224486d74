"""Fault injection for the resilience suite (issue 8): throwaway servers, and load that audits itself.

* ``RedisServer``: a redis-server of the test's own on a free loopback port (no persistence,
  so a restart loses everything, as a crash would), which the test can restart or pause
  (``CLIENT PAUSE``) without touching the machine's shared Redis.
* ``PostgresCluster``: a throwaway PostgreSQL cluster (initdb in a temporary directory, run
  as the ``postgres`` user because PostgreSQL refuses root), which the test can restart.
* ``ChatLoad``: the bench's ``ServicePeer``s (bench/traffic.py), two per thread, and a
  sender that keeps a steady rate of ``message.send`` going through every fault. A send is
  retried with the same ``client_msg_id`` until acknowledged (ServicePeer resends across
  reconnects by itself; after an error reply such as ``internal`` it gives up, and the
  load sends the same id again, as the widget's retry would). It records every attempt,
  so a test can say which requests failed and when.
* Broker inspection: what the broker keeps in Redis for sockets (a subscription per topic
  and process), and the id of each daphne process (a socket's connection id is
  ``<process>!<socket>``), so a test can tell live connection entries from stale ones.

Everything started here is stopped by the fixtures in tests/resilience/conftest.py, also
when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import websockets

from bench.traffic import Counters, Latencies, Party, ServicePeer, StreamAudit, ThreadPlan, audit_stream
from tests.e2e.servers import REPO_ROOT, free_port

now = time.perf_counter
START_TIMEOUT_S = 20.0
CONNECT_CONCURRENCY = 200
SEND_GIVE_UP_S = 180.0


# --- a Redis of the test's own -----------------------------------------------------------------


@dataclass(eq=False)
class RedisServer:
    """``redis-server`` on 127.0.0.1:<port>, nothing saved to disk."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> None:
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
            "--maxclients",
            "10000",
        ]
        with self.log_path.open("ab") as log:  # a file: a full pipe would stall the server
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s:\n{self.log_tail()}")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, socket_connect_timeout=2)

    def kill(self) -> None:
        """SIGKILL: the data is gone (nothing is persisted), every connection is cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self, down_s: float = 1.0) -> float:
        """Kill the server, stay down ``down_s``, start it again on the same port, empty.
        Returns how long it was unreachable."""
        started = now()
        self.kill()
        time.sleep(down_s)
        self.start()
        self.restarts += 1
        return now() - started

    def pause(self, ms: int) -> None:
        """``CLIENT PAUSE <ms> ALL``: every client's commands wait (nothing is refused)."""
        with self.client() as client:
            client.execute_command("CLIENT", "PAUSE", str(ms), "ALL")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def start_redis() -> RedisServer:
    server = RedisServer(workdir=Path(tempfile.mkdtemp(prefix="fault-redis-")))
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
        raise
    return server


def cleanup_redis(server: RedisServer) -> None:
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


# --- a throwaway PostgreSQL cluster ------------------------------------------------------------


def postgres_bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return Path(candidates[-1]).parent


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root (see ../shared/PITFALLS.md).
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass(eq=False)
class PostgresCluster:
    root: Path
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=postgres_bindir)
    restarts: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        result = subprocess.run(
            _as_postgres([str(self.bindir / argv[0]), *argv[1:]]),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{self.log_tail()}"
            )

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )

    def initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.log_path), "-w", "start")

    def restart(self) -> float:
        """``pg_ctl restart -m fast``: every session is cut; returns how long it took."""
        started = now()
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            self._options(),
            "-l",
            str(self.log_path),
            "-m",
            "fast",
            "-w",
            "restart",
        )
        self.restarts += 1
        return now() - started

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)

    def createdb(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (FileNotFoundError, PermissionError):
            return ""


def start_postgres() -> PostgresCluster:
    root = Path(tempfile.mkdtemp(prefix="fault-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = PostgresCluster(root=root)
    try:
        cluster.initdb()
        cluster.start()
    except BaseException:
        cleanup_postgres(cluster)
        raise
    return cluster


def cleanup_postgres(cluster: PostgresCluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """``manage.py <args>`` in a process with ``env`` (e.g. migrate a throwaway database)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


# --- threads to talk in --------------------------------------------------------------------------


def seed_threads(count: int, tag: str) -> list[str]:
    """``count`` orders with their threads (ORM of the current process), each with its own
    buyer ``<tag>-b<i>`` and seller ``<tag>-s<i>``. Returns the order ids."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from chat_service.commerce.models import Order, OrderStatus
    from chat_service.threads.models import Thread

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
    Order.objects.bulk_create(orders, batch_size=1000)
    Thread.objects.bulk_create(
        [Thread(order=o, buyer_id=o.buyer_id, seller_id=o.seller_id) for o in orders], batch_size=1000
    )
    return [o.order_id for o in orders]


def seed_threads_in(env: dict[str, str], count: int, tag: str) -> list[str]:
    """``seed_threads`` in another process, against the database of ``env`` (DATABASE_URL)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, json, sys; django.setup(); from tests.resilience.faults import seed_threads; "
            f"print(json.dumps(seed_threads({count}, {tag!r})))",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if out.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{out.stderr[-3000:]}")
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def thread_plans(order_ids: list[str], tag: str, *, ttl_s: int = 3600) -> list[ThreadPlan]:
    from chat_service.transport.identity import token_mint

    def party(user_id: str) -> Party:
        return Party(user_id, token_mint(user_id=user_id, name=user_id, ttl_s=ttl_s))

    return [ThreadPlan(order_id, party(f"{tag}-b{i}"), party(f"{tag}-s{i}")) for i, order_id in enumerate(order_ids)]


def orm_last_seqs(order_ids: Iterable[str]) -> dict[str, int]:
    from chat_service.threads.models import Thread

    return dict(Thread.objects.filter(pk__in=list(order_ids)).values_list("pk", "last_seq"))


def orm_stored_messages(order_ids: Iterable[str]) -> dict[tuple[str, str, str], int]:
    """(order_id, author_id, client_msg_id) -> seq of every stored message."""
    from chat_service.threads.models import Event

    rows = Event.objects.filter(thread_id__in=list(order_ids), client_msg_id__isnull=False).values_list(
        "thread_id", "author_id", "client_msg_id", "seq"
    )
    return {(t, a, c): s for t, a, c, s in rows}


def pg_last_seqs(url: str, order_ids: Iterable[str]) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT order_id, last_seq FROM chat_service_thread WHERE order_id = ANY(%s)", [list(order_ids)]
        ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def pg_stored_messages(url: str, order_ids: Iterable[str]) -> dict[tuple[str, str, str], int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT thread_id, author_id, client_msg_id, seq FROM chat_service_event "
            "WHERE thread_id = ANY(%s) AND client_msg_id IS NOT NULL",
            [list(order_ids)],
        ).fetchall()
    return {(t, a, c): int(s) for t, a, c, s in rows}


# --- load ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Attempt:
    """One request a test made and how it ended."""

    kind: str  # "message.send", "thread.join", "connect", "GET /api/..."
    started: float  # perf_counter
    ended: float
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class Acked:
    order_id: str
    author_id: str
    client_msg_id: str
    seq: int


class ChatLoad:
    """Two ServicePeers per thread (buyer, seller) and a steady sender (see the module docstring).

    Buyer and seller of a thread start on different servers when there are several, so every
    message crosses processes through Redis.
    """

    def __init__(self, threads: list[ThreadPlan], urls: list[str], *, jitter_s: float = 1.0, seed: int = 8) -> None:
        self.threads = threads
        self.counters = Counters()
        self.latencies = Latencies()
        self.peers: list[ServicePeer] = []
        for i, thread in enumerate(threads):
            for j, party in enumerate((thread.buyer, thread.seller)):
                self.peers.append(
                    ServicePeer(
                        _rotated(urls, i + j),
                        party,
                        thread.order_id,
                        counters=self.counters,
                        latencies=self.latencies,
                        jitter_s=jitter_s,
                    )
                )
        self.rng = random.Random(seed)
        self.acked: list[Acked] = []
        self.unacked: list[str] = []
        self.attempts: list[Attempt] = []
        self.sent = 0
        self.refusals = 0  # error replies (e.g. internal) after which the same id was sent again
        self._in_flight: set[asyncio.Task[None]] = set()
        self._sender: asyncio.Task[None] | None = None
        self._stop_sending = asyncio.Event()

    def set_urls(self, urls: list[str]) -> None:
        """Point every peer at ``urls`` (e.g. a replacement process on a new port); each keeps
        its own starting server."""
        for index, peer in enumerate(self.peers):
            peer.urls = _rotated(urls, index // 2 + index % 2)

    @property
    def reconnects(self) -> int:
        return sum(p.connects for p in self.peers) - len(self.peers)

    async def connect(self, timeout: float = 120) -> int:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(peer: ServicePeer) -> None:
            async with gate:
                peer.start()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(peer.connected.wait(), timeout)

        await asyncio.gather(*(one(p) for p in self.peers))
        return sum(1 for p in self.peers if p.connected.is_set())

    def start_sending(self, rate: float) -> None:
        self._stop_sending = asyncio.Event()  # this sender's own: a paused one may still be ending
        self._sender = asyncio.get_running_loop().create_task(self._send_at(rate, self._stop_sending))

    def pause_sending(self) -> None:
        """Start no more sends (those started go on); ``start_sending`` resumes."""
        self._stop_sending.set()

    async def stop_sending(self, timeout: float = SEND_GIVE_UP_S + 30) -> None:
        """Stop starting sends and wait until every started one is acknowledged (or gave up)."""
        self._stop_sending.set()
        if self._sender is not None:
            await self._sender
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout)

    async def _send_at(self, rate: float, stop: asyncio.Event) -> None:
        senders = list(self.peers)
        self.rng.shuffle(senders)
        loop = asyncio.get_running_loop()
        started, started_count, cursor = loop.time(), self.sent, 0
        while not stop.is_set():
            due = int(rate * (loop.time() - started)) - (self.sent - started_count)
            for _ in range(max(0, due)):
                peer = senders[cursor % len(senders)]
                cursor += 1
                self.send_one(peer)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.01)

    def send_one(self, peer: ServicePeer) -> asyncio.Task[None]:
        self.sent += 1
        task = asyncio.get_running_loop().create_task(self._send(peer))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def _send(self, peer: ServicePeer) -> None:
        message_id = uuid.uuid4().hex
        deadline = now() + SEND_GIVE_UP_S
        while True:
            started = now()
            seq = await peer.send(client_msg_id=message_id, give_up_after_s=max(1.0, deadline - started))
            self.attempts.append(
                Attempt(
                    "message.send",
                    started,
                    now(),
                    seq is not None,
                    "" if seq is not None else "error reply (see error_replies)",
                )
            )
            if seq is not None:
                self.acked.append(Acked(peer.order_id, peer.party.user_id, message_id, seq))
                return
            if now() >= deadline:
                self.unacked.append(message_id)
                return
            self.refusals += 1  # an error reply (ServicePeer gives up on those): the same id again
            await asyncio.sleep(0.2)

    async def wait_caught_up(self, last_seqs: Callable[[], Awaitable[dict[str, int]]], timeout: float = 60) -> bool:
        """Until every peer is connected and has seen its thread's last seq (a liveness bound;
        the audit afterwards decides)."""
        deadline = now() + timeout
        while now() < deadline:
            last = await last_seqs()
            if all(p.connected.is_set() and p.last_seq >= last.get(p.order_id, 0) for p in self.peers):
                return True
            await asyncio.sleep(0.25)
        return False

    def behind(self, last: dict[str, int]) -> list[str]:
        return [
            f"{p.party.user_id}@{p.order_id}: saw {p.last_seq}/{last.get(p.order_id)} connected={p.connected.is_set()}"
            for p in self.peers
            if not (p.connected.is_set() and p.last_seq >= last.get(p.order_id, 0))
        ]

    async def close(self) -> None:
        self._stop_sending.set()
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*(p.stop() for p in self.peers), return_exceptions=True)

    def audit(self, last: dict[str, int], stored: dict[tuple[str, str, str], int]) -> dict[str, Any]:
        """Every peer's stream against the stored log, and every acknowledged message
        against the stored messages."""
        total = StreamAudit()
        worst: list[str] = []
        for peer in self.peers:
            audit = audit_stream(peer.seen, last.get(peer.order_id, 0))
            total.add(audit)
            if (audit.lost or audit.duplicated or audit.out_of_order) and len(worst) < 5:
                worst.append(f"{peer.party.user_id}@{peer.order_id}: {audit.as_dict()} seen[-8:]={peer.seen[-8:]}")
        not_stored = [a for a in self.acked if stored.get((a.order_id, a.author_id, a.client_msg_id)) != a.seq]
        return {
            **total.as_dict(),
            "sent": self.sent,
            "acked": len(self.acked),
            "unacked": len(self.unacked),
            "acked_not_stored": len(not_stored),
            "stored_messages": len(stored),
            "resent_after_error_reply": self.refusals,
            "examples": worst + [f"acked, not stored as acked: {a}" for a in not_stored[:3]],
        }

    def socket_figures(self) -> dict[str, Any]:
        return {
            "sockets": len(self.peers),
            "drops": self.counters.drops,
            "reconnects": self.reconnects,
            "close_codes": dict(self.counters.close_codes),
            "handshake_errors": self.counters.handshake_errors,
            "handshake_error_kinds": dict(self.counters.handshake_error_kinds),
            "error_replies": dict(self.counters.error_replies),
            "resends": self.counters.resends,
        }


def _rotated(urls: list[str], by: int) -> list[str]:
    k = by % len(urls)
    return urls[k:] + urls[:k]


# --- the broker in Redis ---------------------------------------------------------------------------


def topic_subscriptions(client: redis.Redis, redis_prefix: str) -> list[str]:
    """What the broker keeps in Redis for sockets: every subscribed topic, once per process
    subscribed to it (chat_service.machinery.broadcast)."""
    residue = []
    for channel in client.pubsub_channels(f"{redis_prefix}:*"):
        subscribers = int(dict(client.pubsub_numsub(channel))[channel])
        residue += [channel.decode().removeprefix(f"{redis_prefix}:")] * subscribers
    return sorted(residue)


def process_of(conn_id: str) -> str:
    """``<process id>!<socket id>`` (ChatConsumer.conn_id) -> the process id."""
    return conn_id.split("!", 1)[0]


def connection_entries(client: redis.Redis, redis_prefix: str) -> dict[str, list[tuple[str, float]]]:
    """The presence registry's ``conn:<user>`` sets: user -> (conn id, expires at ms)."""
    marker = f"{redis_prefix}:conn:"
    entries: dict[str, list[tuple[str, float]]] = {}
    for key in client.scan_iter(match=f"{marker}*", count=1000):
        members = client.zrange(key, 0, -1, withscores=True)
        if members:
            entries[key.decode()[len(marker) :]] = [(m.decode(), float(s)) for m, s in members]
    return entries


def redis_time_ms(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds * 1000 + micros / 1000


async def process_id(ws_url: str, token: str, user_id: str, client: redis.Redis, redis_prefix: str) -> str:
    """The id of the daphne process behind ``ws_url``: open a socket as a user nobody else
    uses, read its one connection entry (``<process id>!<socket id>``), close it."""
    from tests.e2e.servers import MAX_MESSAGE_BYTES

    origin = "http://" + ws_url.split("://", 1)[1].split("/", 1)[0]
    async with websockets.connect(f"{ws_url}?token={token}", origin=origin, max_size=MAX_MESSAGE_BYTES) as socket:
        hello = json.loads(await asyncio.wait_for(socket.recv(), 20))
        assert hello["type"] == "hello", hello
        members = await asyncio.to_thread(client.zrange, f"{redis_prefix}:conn:{user_id}", 0, -1)
        assert len(members) == 1, f"{user_id} has connection entries {members}"
        return process_of(members[0].decode())


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.2) -> bool:
    deadline = now() + timeout
    while True:
        if await condition():
            return True
        if now() >= deadline:
            return False
        await asyncio.sleep(every)


def report(name: str, figures: dict[str, Any]) -> str:
    """Print the figures of a fault run (pytest -s shows them) and return them for messages."""
    text = f"[{name}] " + json.dumps(figures, sort_keys=True, default=str)
    print(text, flush=True)
    return text


def signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        return signal.Signals(-code).name
    return str(code)


# --- probes: requests made on a cadence, each recorded with when it was made -----------------


class Probes:
    """Requests a test makes on a steady cadence through a fault, each an ``Attempt``:
    ``GET`` endpoints of the HTTP API, ``thread.join`` on a long-lived socket, and fresh
    socket connects (hello needs the database)."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    def start_http(self, base_url: str, token: str, paths: list[str], every_s: float) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._http(base_url, token, paths, every_s)))

    def start_join(self, ws_url: str, token: str, order_id: str, every_s: float) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._join(ws_url, token, order_id, every_s)))

    def start_connect(self, ws_url: str, token: str, every_s: float) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._connect(ws_url, token, every_s)))

    def halt(self) -> None:
        """Make no more requests (those in flight go on)."""
        self._stop.set()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _tick(self, every_s: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), every_s)
        return not self._stop.is_set()

    async def _http(self, base_url: str, token: str, paths: list[str], every_s: float) -> None:
        import urllib.error
        import urllib.request

        def get(path: str) -> tuple[bool, str]:
            request = urllib.request.Request(base_url + path, headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    return response.status == 200, str(response.status)
            except urllib.error.HTTPError as error:
                return False, f"{error.code} {error.read()[:200]!r}"
            except OSError as error:
                return False, f"{type(error).__name__}: {error}"

        index = 0
        while await self._tick(every_s):
            path = paths[index % len(paths)]
            index += 1
            started = now()
            ok, detail = await asyncio.to_thread(get, path)
            self.attempts.append(Attempt(f"GET {path.split('?')[0]}", started, now(), ok, detail))

    async def _join(self, ws_url: str, token: str, order_id: str, every_s: float) -> None:
        client = None
        try:
            while await self._tick(every_s):
                if client is None or client.closed.is_set():
                    client = await self._open(ws_url, token)
                    if client is None:
                        continue
                started = now()
                try:
                    reply = await client.request_frame("thread.join", order_id=order_id, since_seq=0, timeout=30)
                    ok, detail = reply["ok"], "" if reply["ok"] else str(reply["error"].get("code"))
                except (TimeoutError, ConnectionError, websockets.ConnectionClosed) as error:
                    ok, detail = False, f"{type(error).__name__}: {error}"
                self.attempts.append(Attempt("thread.join", started, now(), ok, detail))
        finally:
            if client is not None:
                await client.close()

    async def _open(self, ws_url: str, token: str) -> Any:
        """A ChatClient once its hello arrived, or None (the failed connect is recorded)."""
        from chat_service.client import ChatClient

        started = now()
        client = None
        try:
            client = await ChatClient.open(ws_url, token, wait_hello=False, open_timeout=30)
            hello = asyncio.ensure_future(client.next_frame("hello", timeout=30))
            closed = asyncio.ensure_future(client.closed.wait())
            await asyncio.wait({hello, closed}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            if not hello.done():
                hello.cancel()
                raise ConnectionError(f"closed {client.close_code} before hello")
            hello.result()
        except (TimeoutError, OSError, websockets.WebSocketException) as error:
            self.attempts.append(Attempt("connect", started, now(), False, f"{type(error).__name__}: {error}"))
            if client is not None:
                await client.close()
            return None
        self.attempts.append(Attempt("connect", started, now(), True))
        return client

    async def _connect(self, ws_url: str, token: str, every_s: float) -> None:
        origin = "http://" + ws_url.split("://", 1)[1].split("/", 1)[0]
        while await self._tick(every_s):
            started = now()
            try:
                async with websockets.connect(f"{ws_url}?token={token}", origin=origin, open_timeout=30) as socket:
                    first = json.loads(await asyncio.wait_for(socket.recv(), 30))
                    ok, detail = first.get("type") == "hello", str(first.get("type"))
            except websockets.ConnectionClosed as error:
                ok, detail = False, f"closed {error.rcvd.code if error.rcvd else None}"
            except (TimeoutError, OSError, websockets.WebSocketException) as error:
                ok, detail = False, f"{type(error).__name__}: {error}"
            self.attempts.append(Attempt("connect", started, now(), ok, detail))


def failures_by_phase(attempts: Iterable[Attempt], down_at: float, back_at: float) -> dict[str, Any]:
    """Failed attempts, by when they were made: before the outage, during it (made before
    the service was back, also if they ended after), after it (made once it was back)."""
    phases: dict[str, dict[str, int]] = {"before": {}, "during": {}, "after": {}}
    made: dict[str, int] = {}
    examples: dict[str, list[str]] = {"before": [], "during": [], "after": []}
    for attempt in attempts:
        made[attempt.kind] = made.get(attempt.kind, 0) + 1
        if attempt.ok:
            continue
        phase = "after" if attempt.started >= back_at else "before" if attempt.ended < down_at else "during"
        phases[phase][attempt.kind] = phases[phase].get(attempt.kind, 0) + 1
        if len(examples[phase]) < 3:
            examples[phase].append(f"{attempt.kind} +{attempt.started - back_at:.2f}s: {attempt.detail[:160]}")
    return {"made": made, "failed": phases, "examples": {k: v for k, v in examples.items() if v}}


# --- a receiver that fails: the order system and the push service, 30 % of the time ------------


@dataclass
class Request:
    path: str
    key: str
    body: bytes
    outcome: str  # "200", "500", "503", "reset", "killed" (the worker was killed while waiting)
    run: int  # which worker process sent it

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class FlakyReceiver:
    """An HTTP server on loopback standing in for the order system (``/bridge/actions/``)
    and the push service (``/push/``). It checks each request's signature with its own
    HMAC (tests/signing.py), fails ``fail_rate`` of them at random (500, 503, or a reset
    connection: RST, no answer) and may call ``on_request`` first, which returns True to
    leave the request unanswered (the test kills the worker meanwhile): such a request was
    received and applied, only its answer is lost.

    Like the real receivers it applies each Idempotency-Key once: ``applied`` holds the body
    of the first accepted request per key; an accepted repeat is acknowledged and counted
    in ``repeats`` only.
    """

    def __init__(self, *, secrets: dict[str, str], fail_rate: float, seed: int) -> None:
        import threading

        self.secrets = secrets  # path -> signing secret
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.applied: dict[str, bytes] = {}
        self.repeats: dict[str, int] = {}
        self.bad_signatures = 0
        self.run = 0
        self.on_request: Callable[[Request], bool] | None = None

    def start(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                receiver.handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a worker killed mid-request, or a connection we reset

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def handle(self, http: Any) -> None:
        import socket
        import struct

        from tests.signing import signature_ok

        body = http.rfile.read(int(http.headers.get("Content-Length", "0")))
        key = http.headers.get("Idempotency-Key", "")
        with self.lock:
            if not signature_ok(self.secrets.get(http.path, ""), http.headers.get("X-Bridge-Signature"), body):
                self.bad_signatures += 1
                outcome = "401"
            elif self.rng.random() < self.fail_rate:
                outcome = self.rng.choice(["500", "503", "reset"])
            else:
                outcome = "200"
            record = Request(http.path, key, body, outcome, self.run)
            self.requests.append(record)
        if self.on_request is not None and self.on_request(record):
            # The receiver did the work; the answer never reaches the (killed) sender.
            record.outcome = "killed"
            self._apply(key, body)
            http.close_connection = True
            return
        if outcome == "reset":
            http.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            http.close_connection = True
            return
        if outcome == "200":
            self._apply(key, body)
        answer = b'{"ok":true}' if outcome == "200" else b'{"error":"try again"}'
        http.send_response(int(outcome))
        http.send_header("Content-Type", "application/json")
        http.send_header("Content-Length", str(len(answer)))
        http.end_headers()
        http.wfile.write(answer)

    def _apply(self, key: str, body: bytes) -> None:
        with self.lock:
            if key in self.applied:
                self.repeats[key] = self.repeats.get(key, 0) + 1
            else:
                self.applied[key] = body

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for request in self.requests:
            counts[request.outcome] = counts.get(request.outcome, 0) + 1
        return counts


# --- daphne as the Procfile runs it ---------------------------------------------------------------


async def start_daphne(factory: Any, count: int, **env: str) -> list[Any]:
    """``count`` servers from the e2e factory (tests/e2e/conftest.py): the Procfile's web
    command (listen backlog 4,096, 20 s connect timeout, the frame cap), joined to the
    factory's list so that its fixture stops them and reports their stderr."""
    return list(await factory.start(count, **{k: str(v) for k, v in env.items()}))
