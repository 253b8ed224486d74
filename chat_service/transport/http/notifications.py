"""HTTP endpoints of notification preferences and thread mutes (docs/protocol.md). Each
parses, calls one service or selector, and frames the answer."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from chat_service.protocol import frames
from chat_service.protocol.errors import BadRequest
from chat_service.threads.notifications import selectors, services
from chat_service.transport.http.api import json_body, json_endpoint
from chat_service.transport.identity import Identity

Result = tuple[int, dict[str, Any]]


@json_endpoint("GET", "PUT")
def preferences(request: HttpRequest, identity: Identity) -> Result:
    if request.method == "GET":
        return 200, selectors.notification_preferences(user_id=identity.id)
    body = json_body(request)
    return 200, services.notification_preferences_update(
        user_id=identity.id,
        email=frames.bool_field(body, "email", required=False),
        push=frames.bool_field(body, "push", required=False),
    )


@json_endpoint("POST")
def thread_mute(request: HttpRequest, identity: Identity, order_id: str) -> Result:
    if not frames.ID_RE.match(order_id):
        raise BadRequest("order_id must be 1-64 letters, digits, '-', '_' or '.'.", field="order_id")
    muted = frames.bool_field(json_body(request), "muted", required=True)
    assert muted is not None
    return 200, {
        "order_id": order_id,
        "muted": services.thread_mute_set(user_id=identity.id, order_id=order_id, muted=muted),
    }
