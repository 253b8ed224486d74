"""OpenAPI 3.1 path items of the notification endpoints (chat_service.transport.http.notifications),
to be merged into the document served at /api/schema/ by chat_service.transport.http.openapi
(``{**PATHS}``, like chat_service.transport.http.openapi_orders). The prose version is docs/protocol.md."""

from __future__ import annotations

from typing import Any

from chat_service.transport.http import openapi_schema as schema

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
        "get": {
            "summary": "The caller's notification preferences",
            "responses": {**schema.ok(PREFERENCES), **schema.errors(401)},
        },
        "put": {
            "summary": "Turn the e-mail or push channel on or off (absent fields unchanged)",
            "requestBody": schema.body(
                {"type": "object", "properties": {"email": {"type": "boolean"}, "push": {"type": "boolean"}}}
            ),
            "responses": {**schema.ok(PREFERENCES), **schema.errors(400, 401, 403, 413)},
        },
    },
    "/api/threads/{order_id}/mute/": {
        "post": {
            "summary": "Mute or unmute a thread's notifications for the caller (badges still count)",
            "parameters": [schema.ORDER_ID],
            "requestBody": schema.body(
                {"type": "object", "required": ["muted"], "properties": {"muted": {"type": "boolean"}}}
            ),
            "responses": {
                **schema.ok(
                    {
                        "type": "object",
                        "required": ["order_id", "muted"],
                        "properties": {"order_id": {"type": "string"}, "muted": {"type": "boolean"}},
                    }
                ),
                **schema.errors(400, 401, 403, 404, 413),
            },
        }
    },
}
