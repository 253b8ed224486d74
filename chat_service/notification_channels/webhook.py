"""The push channel: a signed JSON POST to NOTIFY_WEBHOOK_URL (the marketplace's mobile
push service).

Same scheme as the orders bridge: ``X-Bridge-Signature: t=<unix>,v1=<hex>`` with
v1 = HMAC-SHA256(secret, "<t>." + raw body) (``chat_service.machinery.signatures.sign``), and the
delivery's ``Idempotency-Key``. The body is the stored payload, serialised the same way
on every attempt. Answers are classified like the bridge's (``classify_status``): 2xx
accepted; 408/409/425/429/5xx, timeouts and connection errors retryable; other answers
(and redirects, which are not followed) not.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chat_service.machinery.delivery.signed_http import DeliveryResult, no_redirect_opener, payload_bytes, post_signed
from chat_service.threads.notifications.models import NotificationDelivery


class WebhookChannel:
    def __init__(
        self, url: str, secret: str, *, timeout_s: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"NOTIFY_WEBHOOK_URL must be an http(s) URL, got {url!r}")
        if not secret:
            raise ValueError("the notification webhook's signing secret is empty")
        self.url = url
        self._secret = secret
        self._timeout_s = timeout_s
        self._clock = clock
        self._opener = no_redirect_opener()

    def send(self, delivery: NotificationDelivery) -> DeliveryResult:
        return post_signed(
            self._opener,
            self.url,
            body=payload_bytes(delivery),
            idempotency_key=delivery.idempotency_key,
            secret=self._secret,
            timeout_s=self._timeout_s,
            now=int(self._clock()),
            user_agent="order-chat-notifications/1",
        )
