"""The OpenAPI 3.1 document served at /api/schema/ (kept next to the code it describes;
docs/protocol.md is the prose version). Tests check that every routed /api/ path is here."""

from __future__ import annotations

from typing import Any

from chat_service.transport.http import openapi_notifications as notification_paths
from chat_service.transport.http import openapi_orders as order_paths  # order search, detail and disputes
from chat_service.transport.http import openapi_schema as schema

_SEQ = {"type": "integer", "minimum": 0, "maximum": 2**62}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 200}


def openapi_document() -> dict[str, Any]:
    document = _thread_document()
    for part in (order_paths, notification_paths):
        document["paths"].update(part.PATHS)
        document["components"]["schemas"].update(getattr(part, "SCHEMAS", {}))
    return document


def _thread_document() -> dict[str, Any]:
    event = {"$ref": "#/components/schemas/Event"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Order chat API",
            "version": "1",
            "description": "HTTP side of the buyer-seller order chat. See docs/protocol.md.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/threads/": {
                "get": {
                    "summary": "The caller's order threads, most recent activity first",
                    "parameters": [
                        schema.query(
                            "unread", {"type": "string", "enum": ["0", "1"]}, "only threads with unread events"
                        ),
                        schema.query(
                            "limit", {"type": "integer", "minimum": 1, "maximum": 200}, "page size (default 50)"
                        ),
                        schema.query("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000}, "skip"),
                    ],
                    "responses": {
                        **schema.ok(
                            {
                                "type": "object",
                                "required": ["threads", "has_more", "unread_total"],
                                "properties": {
                                    "threads": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/ThreadSummary"},
                                    },
                                    "has_more": {"type": "boolean"},
                                    "unread_total": {"type": "integer"},
                                },
                            }
                        ),
                        **schema.errors(400, 401),
                    },
                }
            },
            "/api/threads/{order_id}/events/": {
                "get": {
                    "summary": "A page of a thread's events, oldest first",
                    "parameters": [
                        schema.ORDER_ID,
                        schema.query("after_seq", _SEQ, "events after this seq"),
                        schema.query("before_seq", {**_SEQ, "minimum": 1}, "events before this seq (default: newest)"),
                        schema.query("limit", _LIMIT, "page size (default 50, at most 200)"),
                    ],
                    "responses": {
                        **schema.ok(
                            {
                                "type": "object",
                                "required": ["events", "has_more", "last_seq", "read_seq"],
                                "properties": {
                                    "events": {"type": "array", "items": event},
                                    "has_more": {"type": "boolean"},
                                    "last_seq": {"type": "integer"},
                                    "read_seq": {"$ref": "#/components/schemas/ReadSeq"},
                                },
                            }
                        ),
                        **schema.errors(400, 401, 404),
                    },
                }
            },
            "/api/threads/{order_id}/messages/": {
                "post": {
                    "summary": "Send a message (idempotent on client_msg_id)",
                    "parameters": [schema.ORDER_ID],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["client_msg_id", "body"],
                                    "properties": {
                                        "client_msg_id": {"type": "string", "pattern": schema.CLIENT_MSG_ID_PATTERN},
                                        "body": {"type": "string", "minLength": 1, "maxLength": 4000},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        **schema.ok({"$ref": "#/components/schemas/SendResult"}, 201),
                        **schema.ok({"$ref": "#/components/schemas/SendResult"}, 200),
                        **schema.errors(400, 401, 403, 404, 413, 429),
                    },
                }
            },
            "/api/threads/{order_id}/read/": {
                "post": {
                    "summary": "Mark the thread read up to seq",
                    "parameters": [schema.ORDER_ID],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "required": ["seq"], "properties": {"seq": _SEQ}}
                            }
                        },
                    },
                    "responses": {
                        **schema.ok(
                            {
                                "type": "object",
                                "properties": {
                                    "read_seq": {"type": "integer"},
                                    "unread": {"type": "integer"},
                                    "unread_total": {"type": "integer"},
                                },
                            }
                        ),
                        **schema.errors(400, 401, 403, 404, 413),
                    },
                }
            },
            "/api/presence/": {
                "get": {
                    "summary": "Sellers' online indicators (the shape of presence.subscribe's reply)",
                    "parameters": [
                        {
                            "name": "seller_ids",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "comma-separated seller ids, at most 200",
                        }
                    ],
                    "responses": {
                        **schema.ok(
                            {
                                "type": "object",
                                "required": ["sellers"],
                                "properties": {
                                    "sellers": {
                                        "type": "object",
                                        "additionalProperties": {"$ref": "#/components/schemas/SellerPresence"},
                                    }
                                },
                            }
                        ),
                        **schema.errors(400, 401),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
                "Event": {
                    "type": "object",
                    "required": ["seq", "id", "kind", "author_role", "body", "data", "created_at"],
                    "properties": {
                        "seq": {"type": "integer"},
                        "id": {"type": "string"},
                        "kind": {"type": "string", "enum": ["message", "offer", "dispute", "order", "system"]},
                        "author_id": {"type": ["string", "null"]},
                        "author_role": {"type": "string", "enum": ["buyer", "seller", "system"]},
                        "body": {"type": "string"},
                        "data": {"type": "object"},
                        "client_msg_id": {"type": ["string", "null"]},
                        "created_at": {"type": "string", "format": "date-time"},
                    },
                },
                "ReadSeq": {
                    "type": "object",
                    "properties": {"buyer": {"type": "integer"}, "seller": {"type": "integer"}},
                },
                "SendResult": {
                    "type": "object",
                    "required": ["event", "duplicate"],
                    "properties": {"event": event, "duplicate": {"type": "boolean"}},
                },
                "SellerPresence": {
                    "type": "object",
                    "required": ["status", "color", "last_seen", "typical_reply_s"],
                    "properties": {
                        "status": {"type": "string", "enum": ["online", "offline"]},
                        "color": {"type": "string", "enum": ["orange", "grey"]},
                        "last_seen": {"type": ["string", "null"], "format": "date-time"},
                        "typical_reply_s": {"type": ["integer", "null"], "minimum": 0},
                    },
                },
                "ThreadSummary": {
                    "type": "object",
                    "properties": {
                        "order": {"type": "object"},
                        "role": {"type": "string", "enum": ["buyer", "seller"]},
                        "last_seq": {"type": "integer"},
                        "unread": {"type": "integer"},
                        "read_seq": {"$ref": "#/components/schemas/ReadSeq"},
                        "last_event": {"oneOf": [event, {"type": "null"}]},
                    },
                },
            },
        },
    }
