"""ASGI entry point: HTTP goes to Django, ``/ws/`` to the chat consumer.

The socket stack, outermost first: Origin check (cross-site WebSocket hijacking), cookies
and session (same-site pages), identity (token or session), then the consumer.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat_service.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from chat_service.consumers import ChatConsumer  # noqa: E402
from chat_service.embedded_worker import EmbeddedWorkerMiddleware  # noqa: E402
from chat_service.identity import IdentityMiddleware  # noqa: E402


def websocket_app():
    return OriginValidator(
        SessionMiddlewareStack(IdentityMiddleware(URLRouter([path("ws/", ChatConsumer.as_asgi())]))),
        [*settings.ALLOWED_HOSTS, *settings.WS_ALLOWED_ORIGINS],
    )


application = EmbeddedWorkerMiddleware(ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_app()}))
