"""The push channel: a signed JSON POST to NOTIFY_WEBHOOK_URL (the marketplace's mobile
push service).

Same scheme as the orders bridge: ``X-Bridge-Signature: t=<unix>,v1=<hex>`` with
v1 = HMAC-SHA256(secret, "<t>." + raw body) (``orders_bridge.signatures.sign``), and the
delivery's ``Idempotency-Key``. The body is the stored payload, serialised the same way
on every attempt. Answers are classified like the bridge's (``classify_status``): 2xx
accepted; 408/409/425/429/5xx, timeouts and connection errors retryable; other answers
(and redirects, which are not followed) not.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from chat_service.notifications.models import NotificationDelivery
from orders_bridge import signatures
from orders_bridge.transport import ERROR_BODY_CHARS, DeliveryResult, classify_status


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def payload_bytes(delivery: NotificationDelivery) -> bytes:
    return json.dumps(delivery.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookChannel:
    def __init__(self, url: str, secret: str, *, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"NOTIFY_WEBHOOK_URL must be an http(s) URL, got {url!r}")
        if not secret:
            raise ValueError("the notification webhook's signing secret is empty")
        self.url = url
        self._secret = secret
        self._timeout_s = timeout_s
        self._clock = clock
        self._opener = urllib.request.build_opener(_NoRedirects)

    def send(self, delivery: NotificationDelivery) -> DeliveryResult:
        body = payload_bytes(delivery)
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": delivery.idempotency_key,
                signatures.HEADER: signatures.sign(self._secret, body, int(self._clock())),
                "User-Agent": "order-chat-notifications/1",
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                status = response.status
                response.read(ERROR_BODY_CHARS)
        except urllib.error.HTTPError as error:
            error.close()
            accepted, retryable = classify_status(error.code)
            return DeliveryResult(accepted=accepted, status=error.code, retryable=retryable,
                                  error=f"HTTP {error.code}")
        except (OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            return DeliveryResult(accepted=False, retryable=True,
                                  error=f"{type(error).__name__}: {reason}"[:ERROR_BODY_CHARS])
        accepted, retryable = classify_status(status)
        if accepted:
            return DeliveryResult.ok(status)
        return DeliveryResult(accepted=False, status=status, retryable=retryable, error=f"HTTP {status}")
