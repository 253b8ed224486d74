"""HTTP endpoints of the thread API (see docs/protocol.md). Each parses, calls one
service or selector, and frames the answer."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from chat_service.protocol import frames
from chat_service.protocol.errors import BadRequest, RateLimited
from chat_service.threads import selectors, services
from chat_service.transport.admission import message_admission_sync
from chat_service.transport.http.api import json_body, json_endpoint, query_int
from chat_service.transport.http.openapi import openapi_document
from chat_service.transport.identity import Identity
from presence.services import presence_snapshot

Result = tuple[int, dict[str, Any]]


def _order_id(order_id: str) -> str:
    if not frames.ID_RE.match(order_id):
        raise BadRequest("order_id must be 1-64 letters, digits, '-', '_' or '.'.", field="order_id")
    return order_id


@json_endpoint("GET")
def threads_list(request: HttpRequest, identity: Identity) -> Result:
    unread_only = request.GET.get("unread") in {"1", "true", "yes"}
    limit = query_int(request, "limit", default=50, minimum=1, maximum=settings.CHAT["PAGE_MAX"])
    offset = query_int(request, "offset", default=0, minimum=0, maximum=1_000_000)
    threads = selectors.threads_for_user(user_id=identity.id, unread_only=unread_only, limit=limit + 1, offset=offset)
    return 200, {
        "threads": threads[:limit],
        "has_more": len(threads) > limit,
        "unread_total": selectors.unread_total_for_user(user_id=identity.id),
    }


@json_endpoint("GET")
def thread_events(request: HttpRequest, identity: Identity, order_id: str) -> Result:
    order_id = _order_id(order_id)
    after_seq = query_int(request, "after_seq")
    before_seq = query_int(request, "before_seq", minimum=1)
    if after_seq is not None and before_seq is not None:
        raise BadRequest("Give after_seq or before_seq, not both.")
    limit = query_int(request, "limit", default=50, minimum=1, maximum=settings.CHAT["PAGE_MAX"])
    thread, _ = selectors.thread_for_participant(order_id=order_id, user_id=identity.id)
    if after_seq is not None:
        events = selectors.events_after_seq(thread_id=thread.pk, after_seq=after_seq, limit=limit)
        has_more = bool(events) and events[-1].seq < thread.last_seq
    else:
        events = selectors.events_before_seq(thread_id=thread.pk, before_seq=before_seq, limit=limit)
        has_more = bool(events) and events[0].seq > 1
    return 200, {
        "events": [frames.event_wire(e) for e in events],
        "has_more": has_more,
        "last_seq": thread.last_seq,
        "read_seq": selectors.read_markers(thread),
    }


@json_endpoint("POST")
def thread_messages(request: HttpRequest, identity: Identity, order_id: str) -> Result:
    order_id = _order_id(order_id)
    client_msg_id, body = frames.message_fields(json_body(request), max_body_chars=settings.CHAT["MAX_BODY_CHARS"])
    decision = message_admission_sync(user_id=identity.id)
    if not decision.allowed:
        raise RateLimited(retry_after_s=round(decision.retry_after_s, 3))
    outcome = services.message_send(user_id=identity.id, order_id=order_id, client_msg_id=client_msg_id, body=body)
    return (201 if outcome.created else 200), {
        "event": frames.event_wire(outcome.event),
        "duplicate": not outcome.created,
    }


@json_endpoint("POST")
def thread_read(request: HttpRequest, identity: Identity, order_id: str) -> Result:
    order_id = _order_id(order_id)
    seq = frames.read_seq_field(json_body(request))
    outcome = services.thread_read(user_id=identity.id, order_id=order_id, seq=seq)
    return 200, {"read_seq": outcome.read_seq, "unread": outcome.unread, "unread_total": outcome.unread_total}


@json_endpoint("GET")
def presence_list(request: HttpRequest, identity: Identity) -> Result:
    """The sellers' indicators, as presence.subscribe answers them (no subscription)."""
    raw = request.GET.get("seller_ids")
    if raw is None:
        raise BadRequest("seller_ids is required (comma separated).", field="seller_ids")
    seller_ids = frames.seller_ids_field([i for i in raw.split(",") if i] if raw else [])
    # The presence store is async; under ASGI this runs on the server's event loop.
    snapshot = async_to_sync(presence_snapshot)(seller_ids=seller_ids)
    return 200, frames.presence_snapshot(snapshot)


def schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document(), json_dumps_params={"indent": 2})


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: the database answers, and Redis when configured."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        from chat_service.machinery.redis_client import get_sync_redis

        try:
            get_sync_redis().ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JsonResponse({"ok": healthy, "checks": checks}, status=200 if healthy else 503)
