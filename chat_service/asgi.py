"""ASGI entry point: HTTP goes to Django, ``/ws/`` to the chat consumer.

The socket stack, outermost first: Origin check (cross-site WebSocket hijacking), identity
(a token; or, for same-site pages without one, cookies and session), then the consumer.
"""

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat_service.settings")

import django  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.db import connections  # noqa: E402

django.setup(set_prefix=False)  # what get_asgi_application() does before making the handler


class RequestConnectionsASGIHandler(ASGIHandler):
    """Django's ASGI handler, closing the request's database connections when it ends.

    Under ASGI each HTTP request runs its sync code on a thread of its own (Django's
    ThreadSensitiveContext), so a persistent connection (CONN_MAX_AGE) is never reused:
    it lingers, idle, until the dead thread's objects are collected. Under concurrent
    requests a few processes so exhausted PostgreSQL's max_connections ("too many
    clients", answered 500; tests/resilience/test_bridge_webhook_live.py). Closing in
    the request's own thread, after the response, keeps one connection per request in
    flight. Sockets are unaffected: their database work runs on long-lived threads.
    """

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().handle(scope, receive, send)
        finally:
            # Still inside the request's ThreadSensitiveContext: the thread the view used.
            await sync_to_async(_close_request_connections, thread_sensitive=True)()


def _close_request_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:  # never under a test's wrapping transaction
            conn.close()


django_asgi_app = RequestConnectionsASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from chat_service.machinery.embedded_worker import EmbeddedWorkerMiddleware  # noqa: E402
from chat_service.transport.identity import IdentityMiddleware  # noqa: E402
from chat_service.transport.socket.consumer import ChatConsumer  # noqa: E402


def websocket_app():
    return OriginValidator(
        IdentityMiddleware(URLRouter([path("ws/", ChatConsumer.as_asgi())])),
        [*settings.ALLOWED_HOSTS, *settings.WS_ALLOWED_ORIGINS],
    )


application = EmbeddedWorkerMiddleware(ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_app()}))
