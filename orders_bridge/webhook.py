"""POST /bridge/events/: the order system's webhooks in.

Transport only: read the raw body, check its signature, parse it, call ONE service
(``order_sync``) and frame the answer. Authentication is the signature, not a user, so
this is a plain view rather than a chat_service.transport.http.api.json_endpoint; refusals use the same
JSON error body ``{"error": {"code", "message", ...}}``.

    413 too_large       body above MAX_BODY_BYTES (checked before anything is parsed)
    401 unauthorized    signature missing, invalid (bad MAC, wrong secret, malformed) or
                        expired (outside the window, either way); nothing more is said
    400 bad_request     not a JSON object, event_id/type/order missing or invalid (``field``)
    422 unknown_type    an event type this service does not handle
    404 not_found       dispute.decided for a dispute this service never had
    200 {"ok": true, "outcome": "applied" | "duplicate" | "stale"}

A redelivered event and a stale version are both 200: the order system must stop
retrying them. A 500 is the last resort for a bug: logged with the event id, no detail
in the answer.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from chat_service.commerce.services.sync import order_sync
from chat_service.machinery.signatures import HEADER, SignatureError, SignatureFailure, verify
from chat_service.protocol.errors import BadRequest, ChatError, Internal, TooLarge, Unauthorized
from chat_service.transport.http.api import error_response
from orders_bridge.config import bridge_config

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
EVENT_ID_MAX_CHARS = 128  # InboxEvent.event_id
_EVENT_ID_RE = re.compile(rf"[\x21-\x7e]{{1,{EVENT_ID_MAX_CHARS}}}")  # visible ASCII, no spaces
TYPE_MAX_CHARS = 64

_UNAUTHORIZED = {
    SignatureFailure.MISSING: "The request signature is missing.",
    SignatureFailure.MALFORMED: "The request signature is invalid.",
    SignatureFailure.INVALID: "The request signature is invalid.",
    SignatureFailure.EXPIRED: "The request signature has expired.",
}


@csrf_exempt
def bridge_events(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        response = JsonResponse({"error": {"code": "method_not_allowed", "message": "Use POST."}}, status=405)
        response["Allow"] = "POST"
        return response
    event_id: str | None = None
    try:
        raw = _read_body(request)
        config = bridge_config()
        try:
            verify(request.headers.get(HEADER), raw, config.accepted_secrets, now=time.time(), window_s=config.window_s)
        except SignatureError as exc:
            log.warning("bridge event refused: signature %s", exc.reason.value)
            raise Unauthorized(_UNAUTHORIZED[exc.reason]) from None
        body = _json_object(raw)
        event_id, event_type = _event_fields(body)
        order = body.get("order")
        extra = {k: v for k, v in body.items() if k not in {"event_id", "type", "order"}}
        outcome = order_sync(event_id=event_id, event_type=event_type, order=order, extra=extra)
    except ChatError as exc:
        if event_id is not None:
            log.info("bridge event %s refused: %s %s", event_id, exc.code, exc.details.get("field", ""))
        return error_response(exc)
    except Exception:  # noqa: BLE001 - a bug is logged, never shown
        log.exception("bridge event %s failed", event_id)
        return error_response(Internal())
    log.info("bridge event %s %s: %s", event_id, event_type, outcome.value)
    return JsonResponse({"ok": True, "outcome": outcome.value})


def _read_body(request: HttpRequest) -> bytes:
    too_large = TooLarge(f"The body can be at most {MAX_BODY_BYTES} bytes.")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest("Invalid Content-Length.") from None
    if declared > MAX_BODY_BYTES:
        raise too_large
    # read() instead of .body: the stream is bounded by Content-Length, and one byte over
    # the cap is enough to refuse (Django's own upload limit never comes into play).
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    return raw


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def _event_fields(body: dict[str, Any]) -> tuple[str, str]:
    event_id = body.get("event_id")
    if not isinstance(event_id, str) or not _EVENT_ID_RE.fullmatch(event_id):
        raise BadRequest(f"event_id must be 1-{EVENT_ID_MAX_CHARS} visible ASCII characters.", field="event_id")
    event_type = body.get("type")
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= TYPE_MAX_CHARS:
        raise BadRequest("type is required.", field="type")
    return event_id, event_type
