"""The outbound seam to the order system: one method, ``deliver(message) -> DeliveryResult``.

``orders_bridge.delivery`` hands every claimed outbox row to a ``Transport`` and records
what it answers; it never talks HTTP itself. Tests replace the transport (httpx's
MockTransport idea); the embedded demo uses ``orders_bridge.local_order_system``.

``HttpTransport`` POSTs the row's payload as JSON to ORDER_SYSTEM_URL, signed and keyed,
and classifies the answer as chat_service.machinery.delivery.signed_http describes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from chat_service.commerce.models import OutboxMessage
from chat_service.machinery.delivery.signed_http import DeliveryResult, no_redirect_opener, payload_bytes, post_signed


class Transport(Protocol):
    def deliver(self, message: OutboxMessage) -> DeliveryResult:
        """Hand ``message`` to the order system once; never raises for delivery errors."""
        ...


class HttpTransport:
    """POST each action to the order system; see the module docstring for the rules."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"ORDER_SYSTEM_URL must be an http(s) URL, got {url!r}")
        if not secret:
            raise ValueError("the order system's signing secret is empty")
        self.url = url
        self._secret = secret
        self._timeout_s = timeout_s
        self._clock = clock
        self._opener = no_redirect_opener()

    def __repr__(self) -> str:
        return f"HttpTransport({self.url!r})"

    def deliver(self, message: OutboxMessage) -> DeliveryResult:
        return post_signed(
            self._opener,
            self.url,
            body=payload_bytes(message),
            idempotency_key=message.idempotency_key,
            secret=self._secret,
            timeout_s=self._timeout_s,
            now=int(self._clock()),
            user_agent="order-chat-bridge/1",
        )
