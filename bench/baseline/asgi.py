"""ASGI entry point of the baseline: ``daphne bench.baseline.asgi:application``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baseline.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from bench.baseline.consumers import ChatConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            URLRouter([re_path(r"ws/chat/(?P<room_name>\w+)/$", ChatConsumer.as_asgi())])
        ),
    }
)
