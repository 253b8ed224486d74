"""Signed HTTP delivery: one POST of a stored payload, signed and keyed, classified.

The body is signed with the contract's scheme (``X-Bridge-Signature: t=<unix>,v1=<hex>``,
v1 = HMAC-SHA256(secret, "<t>.<raw body>"); ``signatures``) and carries the row's
``Idempotency-Key``. It is the same bytes on every attempt (the payload is stored and
serialised deterministically: ``payload_bytes``), so the receiver can drop repeats by the
key and compare bodies if it wants to. Used by the order system's outbox
(orders_bridge.transport) and the notifications' webhook channel.

How an answer is classified (``retryable`` says whether another attempt can help):
* 2xx: accepted.
* 408, 409, 425, 429 and every 5xx: not accepted, retryable (the receiver is busy,
  restarting, or still working on the same key).
* Any other 4xx, and 3xx (redirects are not followed: a POST must not turn into a GET):
  not accepted, not retryable. The row goes to failed and waits for a person (admin
  "Retry delivery").
* Timeouts, refused or reset connections, malformed responses: retryable.
``post_signed`` never raises for any of these; it answers with a DeliveryResult.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from chat_service.machinery import signatures

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


def payload_bytes(row: Any) -> bytes:
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
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def,unused-ignore]
        return None  # the 3xx surfaces as an HTTPError and is classified above


def no_redirect_opener() -> urllib.request.OpenerDirector:
    """An opener that never follows redirects (a POST must not turn into a GET)."""
    return urllib.request.build_opener(_NoRedirects)


def post_signed(
    opener: urllib.request.OpenerDirector,
    url: str,
    *,
    body: bytes,
    idempotency_key: str,
    secret: str,
    timeout_s: float,
    now: int,
    user_agent: str,
) -> DeliveryResult:
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
        return DeliveryResult(
            accepted=accepted, status=error.code, retryable=retryable, error=f"HTTP {error.code}: {text}".strip()
        )
    except (OSError, http.client.HTTPException) as error:
        # URLError (refused, DNS), TimeoutError, ConnectionResetError, RemoteDisconnected…
        reason = getattr(error, "reason", error)
        return DeliveryResult(
            accepted=False, retryable=True, error=f"{type(error).__name__}: {reason}"[:ERROR_BODY_CHARS]
        )
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
