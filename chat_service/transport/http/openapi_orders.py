"""OpenAPI 3.1 path items and schemas of order search, order detail and disputes
(chat_service.transport.http.orders), merged into the document served at /api/schema/ by
chat_service.transport.http.openapi. The prose version is docs/protocol.md."""

from __future__ import annotations

from typing import Any

from chat_service.commerce import selectors
from chat_service.commerce.policies import dispute as dispute_policy
from chat_service.commerce.policies import order as order_policy
from chat_service.transport.http import openapi_schema as schema
from chat_service.transport.http.orders import TEXT_MAX_CHARS, TRACKING_MAX_CHARS

_ACTIONS = {"type": "array", "items": {"type": "string"}}


_ROLE = schema.query(
    "role",
    {"type": "string", "enum": list(selectors.ROLES)},
    "only orders where the caller has this role (default: both)",
)
_CURSOR = schema.query("cursor", {"type": "string"}, "the next (older) or prev (newer) value of a previous page")
_LIMIT = schema.query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": selectors.PAGE_MAX},
    f"page size (default {selectors.PAGE_DEFAULT})",
)
_DATE = {"type": "string", "format": "date"}


def _page(name: str, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [name, "next", "prev"],
        "properties": {
            name: {"type": "array", "items": schema.ref(item)},
            "next": {"type": ["string", "null"], "description": "cursor to the older items; null at the end"},
            "prev": {"type": ["string", "null"], "description": "cursor to the newer items; null at the start"},
        },
    }


PATHS: dict[str, Any] = {
    "/api/orders/": {
        "get": {
            "summary": "The caller's orders (as buyer and as seller), newest first, filtered, by keyset pages",
            "parameters": [
                schema.query(
                    "q", {"type": "string", "maxLength": TEXT_MAX_CHARS}, "case-insensitive substring of the item title"
                ),
                schema.query(
                    "order_id", {"type": "string", "pattern": schema.ID_PATTERN}, "the start of the order id, any case"
                ),
                schema.query(
                    "status",
                    {"type": "string", "enum": list(selectors.STATUS_FILTERS)},
                    "an order status, or a tab: disputes (open dispute), unread (unread events for the caller)",
                ),
                schema.query(
                    "supplier",
                    {"type": "string", "maxLength": TEXT_MAX_CHARS},
                    "case-insensitive substring of the supplier name",
                ),
                schema.query(
                    "tracking",
                    {"type": "string", "maxLength": TRACKING_MAX_CHARS},
                    "the start of the tracking number, any case",
                ),
                schema.query("date_from", _DATE, "ordered on or after this UTC day"),
                schema.query("date_to", _DATE, "ordered on or before this UTC day"),
                _CURSOR,
                _LIMIT,
                _ROLE,
            ],
            "responses": {**schema.ok(_page("orders", "OrderListItem")), **schema.errors(400, 401)},
        }
    },
    "/api/orders/counts/": {
        "get": {
            "summary": "Counts for the Manage Orders tabs",
            "parameters": [_ROLE],
            "responses": {**schema.ok(schema.ref("OrderCounts")), **schema.errors(400, 401)},
        }
    },
    "/api/orders/{order_id}/": {
        "get": {
            "summary": "One order with its timeline, offers, dispute, feedback and the caller's allowed actions",
            "parameters": [
                {
                    "name": "order_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": schema.ID_PATTERN},
                }
            ],
            "responses": {**schema.ok(schema.ref("OrderDetail")), **schema.errors(400, 401, 404)},
        }
    },
    "/api/disputes/": {
        "get": {
            "summary": "The caller's disputes (on orders bought or sold), newest opened first",
            "parameters": [
                schema.query(
                    "status",
                    {"type": "string", "enum": list(selectors.DISPUTE_FILTERS)},
                    "open (not resolved or cancelled), closed, or one dispute status",
                ),
                _CURSOR,
                _LIMIT,
                _ROLE,
            ],
            "responses": {**schema.ok(_page("disputes", "DisputeListItem")), **schema.errors(400, 401)},
        }
    },
}

_ORDER_PROPERTIES: dict[str, Any] = {
    "order_id": {"type": "string"},
    "buyer_id": {"type": "string"},
    "seller_id": {"type": "string"},
    "supplier_name": {"type": "string"},
    "item_title": {"type": "string"},
    "category": {"type": "string", "description": "the order system's product category, or empty"},
    "properties": {"type": "object"},
    "quantity": {"type": "integer"},
    "amount": schema.MONEY,
    "currency": {"type": "string"},
    "status": {"type": "string", "enum": list(order_policy.STATUSES)},
    "tracking_number": {"type": "string"},
    "ordered_at": schema.TIME,
    "version": {"type": "integer"},
    "completed_at": schema.TIME_OR_NULL,
    "receipt_confirmed_at": schema.TIME_OR_NULL,
    "feedback": schema.nullable("Feedback"),
    "role": {"type": "string", "enum": list(selectors.ROLES)},
    "unread": {"type": "integer", "description": "thread events the caller has not read"},
    "last_seq": {"type": "integer"},
}
_ORDER_REQUIRED = list(_ORDER_PROPERTIES)
_DISPUTE_STATUS = {"type": "string", "enum": list(selectors.DISPUTE_STATUSES)}

SCHEMAS: dict[str, Any] = {
    "Feedback": {
        "type": "object",
        "required": ["rating", "comment", "left_at"],
        "properties": {
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "comment": {"type": "string"},
            "left_at": schema.TIME,
        },
    },
    "OrderListItem": {
        "type": "object",
        "required": [*_ORDER_REQUIRED, "offer", "dispute", "actions"],
        "properties": {
            **_ORDER_PROPERTIES,
            "try_before_feedback": {
                "type": "boolean",
                "description": "electronics: advise using them for a few days before leaving feedback",
            },
            "offer": {
                "oneOf": [
                    {
                        "type": "object",
                        "description": "the live (requested or open) offer",
                        "properties": {
                            "offer_id": {"type": "string"},
                            "status": {"type": "string"},
                            "price": schema.MONEY_OR_NULL,
                            "currency": {"type": "string"},
                            "expires_at": schema.TIME_OR_NULL,
                        },
                    },
                    {"type": "null"},
                ]
            },
            "dispute": {"oneOf": [{**schema.ref("DisputeBrief"), "description": "the open dispute"}, {"type": "null"}]},
            "last_dispute": {
                "oneOf": [
                    {**schema.ref("DisputeBrief"), "description": "when none is open: how the last one ended"},
                    {"type": "null"},
                ]
            },
            "actions": {
                "type": "object",
                "description": "what the caller may do now: to the order, to the live offer (or start one), "
                "to the open dispute",
                "required": ["order", "offer", "dispute"],
                "properties": {"order": _ACTIONS, "offer": _ACTIONS, "dispute": _ACTIONS},
            },
        },
    },
    "DisputeBrief": {
        "type": "object",
        "properties": {
            "dispute_id": {"type": "string"},
            "status": _DISPUTE_STATUS,
            "reason": {"type": "string", "enum": list(dispute_policy.REASONS)},
            "refund_amount": schema.MONEY,
            "agreed_amount": {**schema.MONEY_OR_NULL, "description": "the refund settled on, once settled"},
            "return_item": {"type": "boolean", "description": "the item goes back to the seller"},
            "currency": {"type": "string"},
            "respond_by": schema.TIME_OR_NULL,
            "closed_at": schema.TIME_OR_NULL,
        },
    },
    "OrderCounts": {
        "type": "object",
        "required": ["all", "statuses", "disputes", "unread", "unread_messages"],
        "properties": {
            "all": {"type": "integer"},
            "statuses": {"type": "object", "properties": {s: {"type": "integer"} for s in order_policy.STATUSES}},
            "disputes": {"type": "integer", "description": "orders with an open dispute"},
            "unread": {"type": "integer", "description": "orders with unread events"},
            "unread_messages": {"type": "integer", "description": "unread events over all those orders"},
        },
    },
    "Offer": {
        "type": "object",
        "properties": {
            "offer_id": {"type": "string"},
            "order_id": {"type": "string"},
            "status": {"type": "string"},
            "price": schema.MONEY_OR_NULL,
            "currency": {"type": "string"},
            "previous_amount": schema.MONEY,
            "request_note": {"type": "string"},
            "note": {"type": "string"},
            "requested_at": schema.TIME_OR_NULL,
            "made_at": schema.TIME_OR_NULL,
            "expires_at": schema.TIME_OR_NULL,
            "closed_at": schema.TIME_OR_NULL,
        },
    },
    "Dispute": {
        "type": "object",
        "properties": {
            "dispute_id": {"type": "string"},
            "order_id": {"type": "string"},
            "status": _DISPUTE_STATUS,
            "reason": {"type": "string", "enum": list(dispute_policy.REASONS)},
            "details": {"type": "string"},
            "refund_amount": schema.MONEY,
            "counter_amount": schema.MONEY_OR_NULL,
            "agreed_amount": schema.MONEY_OR_NULL,
            "currency": {"type": "string"},
            "return_item": {"type": "boolean"},
            "return_tracking_number": {"type": "string"},
            "seller_note": {"type": "string"},
            "decision_note": {"type": "string"},
            "respond_by": schema.TIME_OR_NULL,
            "opened_at": schema.TIME,
            "closed_at": schema.TIME_OR_NULL,
        },
    },
    "OrderDetail": {
        "type": "object",
        "required": [*_ORDER_REQUIRED, "timeline", "offers", "dispute", "allowed_actions"],
        "properties": {
            **_ORDER_PROPERTIES,
            "try_before_feedback": {
                "type": "boolean",
                "description": "electronics: advise using them for a few days before leaving feedback",
            },
            "timeline": {
                "type": "array",
                "description": "the thread's order, offer and dispute events, oldest first (not chat messages)",
                "items": {
                    "type": "object",
                    "properties": {
                        "seq": {"type": "integer"},
                        "kind": {"type": "string", "enum": ["order", "offer", "dispute"]},
                        "change": {"type": ["string", "null"]},
                        "body": {"type": "string"},
                        "author_role": {"type": "string", "enum": ["buyer", "seller", "system"]},
                        "created_at": schema.TIME,
                    },
                },
            },
            "offers": {"type": "array", "items": schema.ref("Offer"), "description": "every offer, newest first"},
            "dispute": {**schema.nullable("Dispute"), "description": "the open dispute, else the last one"},
            "allowed_actions": {
                "type": "object",
                "required": ["order", "offer", "dispute"],
                "properties": {
                    "order": _ACTIONS,
                    "offer": {
                        "type": "object",
                        "properties": {"offer_id": {"type": ["string", "null"]}, "actions": _ACTIONS},
                    },
                    "dispute": {
                        "type": "object",
                        "properties": {"dispute_id": {"type": ["string", "null"]}, "actions": _ACTIONS},
                    },
                },
            },
        },
    },
    "DisputeListItem": {
        "allOf": [
            schema.ref("Dispute"),
            {
                "type": "object",
                "required": ["role", "order", "actions"],
                "properties": {
                    "role": {"type": "string", "enum": list(selectors.ROLES)},
                    "order": {
                        "type": "object",
                        "properties": {
                            "order_id": {"type": "string"},
                            "item_title": {"type": "string"},
                            "supplier_name": {"type": "string"},
                            "amount": schema.MONEY,
                            "currency": {"type": "string"},
                            "status": {"type": "string"},
                            "ordered_at": schema.TIME,
                        },
                    },
                    "actions": _ACTIONS,
                },
            },
        ],
    },
}
