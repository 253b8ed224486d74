"""``manage.py demo [--port 8000] [--host 127.0.0.1] [--no-serve]``: the whole service, seeded.

Migrates (quietly), seeds the demo data (``seed_demo``), prints where to look — the URLs,
a token for the buyer and one seller, a curl line and the two terminal-client commands —
and then serves the ASGI application with Daphne in this process until Ctrl+C.

It needs nothing configured: on the embedded default (SQLite under VAR_DIR, the in-memory
broker) one process is the whole service. Set DATABASE_URL / REDIS_URL and it
runs against those instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections
from django.http.request import validate_host

from chat_service import demo_data
from chat_service.serving import web_argv
from chat_service.transport.identity import token_mint

# Long enough for an afternoon with the demo: the supervisor closes a socket whose token
# expired, which would end the terminal chats.
TOKEN_TTL_S = 12 * 3600

# Where to look: (label, scheme, path). A new page is one more line here.
LINKS: tuple[tuple[str, str, str], ...] = (
    ("Sign in (web UI)", "http", "/login/"),
    ("Manage Orders", "http", "/orders/"),
    ("Seller console", "http", "/console/"),
    ("Embed example", "http", "/embed/"),
    ("Health", "http", "/healthz"),
    ("Threads API", "http", "/api/threads/"),
    ("OpenAPI schema", "http", "/api/schema/"),
    ("WebSocket", "ws", "/ws/"),
)


def url_authority(host: str, port: int) -> str:
    """``host:port`` as a client should dial it; a wildcard bind is reached on loopback."""
    if host in {"", "0.0.0.0"}:
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def python_command() -> str:
    """The interpreter running this command, relative to the working directory if inside it
    (``.venv/bin/python`` from the repository root), so the printed commands run as shown."""
    executable = sys.executable or "python"
    relative = os.path.relpath(executable)
    return relative if not relative.startswith("..") else executable


def guide(*, host: str, port: int, buyer_token: str, seller_token: str, python: str) -> str:
    """The "where to look" text: pure, so the printed instructions are testable."""
    authority = url_authority(host, port)
    urls = {path: f"{scheme}://{authority}{path}" for _, scheme, path in LINKS}
    width = max(len(label) for label, _, _ in LINKS)
    buyer = demo_data.BUYER
    order = demo_data.CHAT_ORDER
    seller = demo_data.USERS[order.seller_id]
    client = f"{python} -m chat_service.client --url {urls['/ws/']}"
    lines = [
        "",
        "Where to look",
        *(f"  {label:<{width}}  {urls[path]}" for label, _, path in LINKS),
        "",
        f"Tokens (valid {TOKEN_TTL_S // 3600} h; more with `manage.py chat_token USER_ID`)",
        f"  buyer   {buyer.id} ({buyer.name}): {buyer_token}",
        f"  seller  {seller.id} ({seller.name}): {seller_token}",
        "",
        "The buyer's threads over HTTP:",
        f'  curl -H "Authorization: Bearer {buyer_token}" {urls["/api/threads/"]}',
        "",
        f"Chat in order {order.order_id} from two terminals (run from the repository root):",
        f"  buyer:  {client} --token {buyer_token} --order {order.order_id}",
        f"  seller: {client} --token {seller_token} --order {order.order_id}",
    ]
    hostname = authority.rsplit(":", 1)[0]  # IPv6 stays bracketed, as in ALLOWED_HOSTS
    if not validate_host(hostname, settings.ALLOWED_HOSTS):
        lines += [
            "",
            f"Note: {hostname} is not in ALLOWED_HOSTS, so requests to it are refused; "
            f"set ALLOWED_HOSTS={','.join([*settings.ALLOWED_HOSTS, hostname])}.",
        ]
    return "\n".join(lines) + "\n\n"


def daphne_argv(*, host: str, port: int) -> list[str]:
    """The Procfile's web command (Daphne on uvloop, its frame cap, listen backlog and
    connect timeout; chat_service.serving) on ``host:port``."""
    return web_argv(port=port, interface=host)


def serve(*, host: str, port: int) -> None:
    """Become the server: this process is replaced by the Procfile's web command, so the
    demo serves exactly as production does (Daphne's loop must be chosen before Daphne is
    imported, which this process, with Django set up, is past)."""
    connections.close_all()
    sys.stdout.flush()
    argv = daphne_argv(host=host, port=port)
    os.execv(argv[0], argv)


class Command(BaseCommand):
    help = "Migrate, seed the demo data, print where to look, and serve with Daphne."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        parser.add_argument("--no-serve", action="store_true", help="prepare and print, but do not start the server")

    def handle(self, *args: Any, **options: Any) -> None:
        host: str = options["host"]
        port: int = options["port"]
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo", stdout=self.stdout, verbosity=1)
        order = demo_data.CHAT_ORDER
        seller = demo_data.USERS[order.seller_id]
        buyer = demo_data.BUYER
        self.stdout.write(
            guide(
                host=host,
                port=port,
                buyer_token=token_mint(user_id=buyer.id, name=buyer.name, ttl_s=TOKEN_TTL_S),
                seller_token=token_mint(user_id=seller.id, name=seller.name, ttl_s=TOKEN_TTL_S),
                python=python_command(),
            )
        )
        if options["no_serve"]:
            again = f"{python_command()} manage.py demo --host {host} --port {port}"
            self.stdout.write(f"Not serving (--no-serve). Serve with: {again}")
            return
        self.stdout.write(f"Serving on http://{url_authority(host, port)}/ with Daphne; Ctrl+C stops it.")
        self.stdout.flush()
        serve(host=host, port=port)
