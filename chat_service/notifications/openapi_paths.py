"""OpenAPI 3.1 path items of the notification endpoints (chat_service.notifications.views),
to be merged into the document served at /api/schema/ by chat_service.openapi
(``{**PATHS}``, like orders_bridge.openapi_paths). The prose version is docs/protocol.md."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}} for s in statuses}


def _ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


PREFERENCES: dict[str, Any] = {
    "type": "object",
    "required": ["email", "push", "email_address_known", "muted_order_ids"],
    "properties": {
        "email": {"type": "boolean", "description": "e-mail channel on"},
        "push": {"type": "boolean", "description": "push channel (NOTIFY_WEBHOOK_URL) on"},
        "email_address_known": {"type": "boolean", "description": "a token carried an `email` claim"},
        "muted_order_ids": {"type": "array", "items": {"type": "string"}},
    },
}

PATHS: dict[str, Any] = {
    "/api/notifications/preferences/": {
        "get": {"summary": "The caller's notification preferences",
                "responses": {**_ok(PREFERENCES), **_errors(401)}},
        "put": {
            "summary": "Turn the e-mail or push channel on or off (absent fields unchanged)",
            "requestBody": _body({"type": "object", "properties": {"email": {"type": "boolean"},
                                                                   "push": {"type": "boolean"}}}),
            "responses": {**_ok(PREFERENCES), **_errors(400, 401, 403, 413)},
        },
    },
    "/api/threads/{order_id}/mute/": {
        "post": {
            "summary": "Mute or unmute a thread's notifications for the caller (badges still count)",
            "parameters": [{"name": "order_id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,64}$"}}],
            "requestBody": _body({"type": "object", "required": ["muted"],
                                  "properties": {"muted": {"type": "boolean"}}}),
            "responses": {
                **_ok({"type": "object", "required": ["order_id", "muted"],
                       "properties": {"order_id": {"type": "string"}, "muted": {"type": "boolean"}}}),
                **_errors(400, 401, 403, 404, 413),
            },
        }
    },
}
