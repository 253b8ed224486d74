"""The outbound seam to the order system: one method, ``deliver(message) -> DeliveryResult``.

``orders_bridge.delivery`` hands every claimed outbox row to a ``Transport`` and records
what it answers; it never talks HTTP itself. Tests replace the transport (httpx's
MockTransport idea); the embedded demo uses ``orders_bridge.local_order_system``.

``HttpTransport`` POSTs the row's payload as JSON to ORDER_SYSTEM_URL, signed with the
contract's scheme (``X-Bridge-Signature: t=<unix>,v1=<hex>``, v1 = HMAC-SHA256(secret,
"<t>.<raw body>")) and carrying the row's ``Idempotency-Key``. The body is the same bytes
on every attempt (the payload is stored, and serialised deterministically), so the order
system can drop repeats by the key and compare bodies if it wants to.

How an answer is classified (``retryable`` says whether another attempt can help):
* 2xx: accepted.
* 408, 409, 425, 429 and every 5xx: not accepted, retryable (the order system is busy,
  restarting, or still working on the same key).
* Any other 4xx, and 3xx (redirects are not followed: a POST must not turn into a GET):
  not accepted, not retryable. The row goes to failed and waits for a person (admin
  "Retry delivery").
* Timeouts, refused or reset connections, malformed responses: retryable.
``deliver`` never raises for any of these; it answers with a DeliveryResult.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from orders_bridge import signatures
from orders_bridge.models import OutboxMessage

RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# How much of an error response is kept in last_error (the admin shows it).
ERROR_BODY_CHARS = 500


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    accepted: bool
    status: int | None = None  # the HTTP status, when there was one
    error: str = ""
    retryable: bool = True

    @classmethod
    def ok(cls, status: int | None = None) -> DeliveryResult:
        return cls(accepted=True, status=status)


class Transport(Protocol):
    def deliver(self, message: OutboxMessage) -> DeliveryResult:
        """Hand ``message`` to the order system once; never raises for delivery errors."""
        ...


def payload_bytes(row: OutboxMessage | Any) -> bytes:
    """The request body: a row's stored payload, serialised the same way on every attempt."""
    return json.dumps(row.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def classify_status(status: int) -> tuple[bool, bool]:
    """(accepted, retryable) for an HTTP status code."""
    if 200 <= status < 300:
        return True, False
    if status >= 500 or status in RETRYABLE_4XX:
        return False, True
    return False, False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # the 3xx surfaces as an HTTPError and is classified above


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
        return post_signed(self._opener, self.url, body=payload_bytes(message), idempotency_key=message.idempotency_key,
                           secret=self._secret, timeout_s=self._timeout_s, now=int(self._clock()),
                           user_agent="order-chat-bridge/1")


def no_redirect_opener() -> urllib.request.OpenerDirector:
    """An opener that never follows redirects (a POST must not turn into a GET)."""
    return urllib.request.build_opener(_NoRedirects)


def post_signed(opener: urllib.request.OpenerDirector, url: str, *, body: bytes, idempotency_key: str, secret: str,
                timeout_s: float, now: int, user_agent: str) -> DeliveryResult:
    """POST ``body`` with the bridge's signature and an Idempotency-Key; classify the answer.

    Shared by every signed outbound call: actions to the order system and notification
    webhooks. Never raises for a network or HTTP failure: it becomes a DeliveryResult.
    """
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            signatures.HEADER: signatures.sign(secret, body, now),
            "User-Agent": user_agent,
        },
    )
    try:
        with opener.open(request, timeout=timeout_s) as response:
            status = response.status
            response.read(ERROR_BODY_CHARS)
    except urllib.error.HTTPError as error:  # a complete non-2xx answer
        try:
            text = _snippet(error)
        finally:
            error.close()
        accepted, retryable = classify_status(error.code)
        return DeliveryResult(accepted=accepted, status=error.code, retryable=retryable,
                              error=f"HTTP {error.code}: {text}".strip())
    except (OSError, http.client.HTTPException) as error:
        # URLError (refused, DNS), TimeoutError, ConnectionResetError, RemoteDisconnected…
        reason = getattr(error, "reason", error)
        return DeliveryResult(accepted=False, retryable=True,
                              error=f"{type(error).__name__}: {reason}"[:ERROR_BODY_CHARS])
    accepted, retryable = classify_status(status)
    if accepted:
        return DeliveryResult.ok(status)
    # A 1xx final answer cannot happen with http.client; anything else urllib let through.
    return DeliveryResult(accepted=False, status=status, retryable=retryable, error=f"HTTP {status}")


def _snippet(error: urllib.error.HTTPError) -> str:
    try:
        raw = error.read(ERROR_BODY_CHARS)
    except (OSError, http.client.HTTPException):
        return error.reason if isinstance(error.reason, str) else ""
    return raw.decode("utf-8", "replace").strip() or str(error.reason or "")
