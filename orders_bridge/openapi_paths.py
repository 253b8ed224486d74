"""OpenAPI 3.1 path items and schemas of order search, order detail and disputes
(orders_bridge.views), merged into the document served at /api/schema/ by
chat_service.openapi. The prose version is docs/protocol.md."""

from __future__ import annotations

from typing import Any

from orders_bridge import selectors
from orders_bridge.policies import dispute as dispute_policy
from orders_bridge.policies import order as order_policy
from orders_bridge.views import TEXT_MAX_CHARS, TRACKING_MAX_CHARS

_ERROR = {"$ref": "#/components/schemas/Error"}
_ID_PATTERN = "^[A-Za-z0-9_.\\-]{1,64}$"
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_MONEY = {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$", "examples": ["12.50"]}
_MONEY_OR_NULL = {**_MONEY, "type": ["string", "null"]}
_ACTIONS = {"type": "array", "items": {"type": "string"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}} for s in statuses}


def _ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _nullable(name: str) -> dict[str, Any]:
    return {"oneOf": [_ref(name), {"type": "null"}]}


_ROLE = _query("role", {"type": "string", "enum": list(selectors.ROLES)},
               "only orders where the caller has this role (default: both)")
_CURSOR = _query("cursor", {"type": "string"}, "the next (older) or prev (newer) value of a previous page")
_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": selectors.PAGE_MAX},
                f"page size (default {selectors.PAGE_DEFAULT})")
_DATE = {"type": "string", "format": "date"}


def _page(name: str, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [name, "next", "prev"],
        "properties": {
            name: {"type": "array", "items": _ref(item)},
            "next": {"type": ["string", "null"], "description": "cursor to the older items; null at the end"},
            "prev": {"type": ["string", "null"], "description": "cursor to the newer items; null at the start"},
        },
    }


PATHS: dict[str, Any] = {
    "/api/orders/": {
        "get": {
            "summary": "The caller's orders (as buyer and as seller), newest first, filtered, by keyset pages",
            "parameters": [
                _query("q", {"type": "string", "maxLength": TEXT_MAX_CHARS},
                       "case-insensitive substring of the item title"),
                _query("order_id", {"type": "string", "pattern": _ID_PATTERN}, "exact order id"),
                _query("status", {"type": "string", "enum": list(selectors.STATUS_FILTERS)},
                       "an order status, or a tab: disputes (open dispute), unread (unread events for the caller)"),
                _query("supplier", {"type": "string", "maxLength": TEXT_MAX_CHARS},
                       "case-insensitive substring of the supplier name"),
                _query("tracking", {"type": "string", "maxLength": TRACKING_MAX_CHARS},
                       "tracking number, exact, any case"),
                _query("date_from", _DATE, "ordered on or after this UTC day"),
                _query("date_to", _DATE, "ordered on or before this UTC day"),
                _CURSOR,
                _LIMIT,
                _ROLE,
            ],
            "responses": {**_ok(_page("orders", "OrderListItem")), **_errors(400, 401)},
        }
    },
    "/api/orders/counts/": {
        "get": {
            "summary": "Counts for the Manage Orders tabs",
            "parameters": [_ROLE],
            "responses": {**_ok(_ref("OrderCounts")), **_errors(400, 401)},
        }
    },
    "/api/orders/{order_id}/": {
        "get": {
            "summary": "One order with its timeline, offers, dispute, feedback and the caller's allowed actions",
            "parameters": [{"name": "order_id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": _ID_PATTERN}}],
            "responses": {**_ok(_ref("OrderDetail")), **_errors(400, 401, 404)},
        }
    },
    "/api/disputes/": {
        "get": {
            "summary": "The caller's disputes (on orders bought or sold), newest opened first",
            "parameters": [
                _query("status", {"type": "string", "enum": list(selectors.DISPUTE_FILTERS)},
                       "open (not resolved or cancelled), closed, or one dispute status"),
                _CURSOR,
                _LIMIT,
                _ROLE,
            ],
            "responses": {**_ok(_page("disputes", "DisputeListItem")), **_errors(400, 401)},
        }
    },
}

_ORDER_PROPERTIES: dict[str, Any] = {
    "order_id": {"type": "string"},
    "buyer_id": {"type": "string"},
    "seller_id": {"type": "string"},
    "supplier_name": {"type": "string"},
    "item_title": {"type": "string"},
    "properties": {"type": "object"},
    "quantity": {"type": "integer"},
    "amount": _MONEY,
    "currency": {"type": "string"},
    "status": {"type": "string", "enum": list(order_policy.STATUSES)},
    "tracking_number": {"type": "string"},
    "ordered_at": _TIME,
    "version": {"type": "integer"},
    "completed_at": _TIME_OR_NULL,
    "receipt_confirmed_at": _TIME_OR_NULL,
    "feedback": _nullable("Feedback"),
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
        "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 5}, "comment": {"type": "string"},
                       "left_at": _TIME},
    },
    "OrderListItem": {
        "type": "object",
        "required": [*_ORDER_REQUIRED, "offer", "dispute", "actions"],
        "properties": {
            **_ORDER_PROPERTIES,
            "offer": {"oneOf": [{
                "type": "object",
                "description": "the live (requested or open) offer",
                "properties": {"offer_id": {"type": "string"}, "status": {"type": "string"}, "price": _MONEY_OR_NULL,
                               "currency": {"type": "string"}, "expires_at": _TIME_OR_NULL},
            }, {"type": "null"}]},
            "dispute": {"oneOf": [{
                "type": "object",
                "description": "the open dispute",
                "properties": {"dispute_id": {"type": "string"}, "status": _DISPUTE_STATUS,
                               "reason": {"type": "string", "enum": list(dispute_policy.REASONS)},
                               "refund_amount": _MONEY, "currency": {"type": "string"},
                               "respond_by": _TIME_OR_NULL},
            }, {"type": "null"}]},
            "actions": {
                "type": "object",
                "description": "what the caller may do now: to the order, to the live offer (or start one), "
                               "to the open dispute",
                "required": ["order", "offer", "dispute"],
                "properties": {"order": _ACTIONS, "offer": _ACTIONS, "dispute": _ACTIONS},
            },
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
            "offer_id": {"type": "string"}, "order_id": {"type": "string"}, "status": {"type": "string"},
            "price": _MONEY_OR_NULL, "currency": {"type": "string"}, "previous_amount": _MONEY,
            "request_note": {"type": "string"}, "note": {"type": "string"}, "requested_at": _TIME_OR_NULL,
            "made_at": _TIME_OR_NULL, "expires_at": _TIME_OR_NULL, "closed_at": _TIME_OR_NULL,
        },
    },
    "Dispute": {
        "type": "object",
        "properties": {
            "dispute_id": {"type": "string"}, "order_id": {"type": "string"}, "status": _DISPUTE_STATUS,
            "reason": {"type": "string", "enum": list(dispute_policy.REASONS)}, "details": {"type": "string"},
            "refund_amount": _MONEY, "counter_amount": _MONEY_OR_NULL, "agreed_amount": _MONEY_OR_NULL,
            "currency": {"type": "string"}, "return_item": {"type": "boolean"},
            "return_tracking_number": {"type": "string"}, "seller_note": {"type": "string"},
            "decision_note": {"type": "string"}, "respond_by": _TIME_OR_NULL, "opened_at": _TIME,
            "closed_at": _TIME_OR_NULL,
        },
    },
    "OrderDetail": {
        "type": "object",
        "required": [*_ORDER_REQUIRED, "timeline", "offers", "dispute", "allowed_actions"],
        "properties": {
            **_ORDER_PROPERTIES,
            "timeline": {
                "type": "array",
                "description": "the thread's order, offer and dispute events, oldest first (not chat messages)",
                "items": {
                    "type": "object",
                    "properties": {"seq": {"type": "integer"},
                                   "kind": {"type": "string", "enum": ["order", "offer", "dispute"]},
                                   "change": {"type": ["string", "null"]}, "body": {"type": "string"},
                                   "created_at": _TIME},
                },
            },
            "offers": {"type": "array", "items": _ref("Offer"), "description": "every offer, newest first"},
            "dispute": {**_nullable("Dispute"), "description": "the open dispute, else the last one"},
            "allowed_actions": {
                "type": "object",
                "required": ["order", "offer", "dispute"],
                "properties": {
                    "order": _ACTIONS,
                    "offer": {"type": "object", "properties": {"offer_id": {"type": ["string", "null"]},
                                                               "actions": _ACTIONS}},
                    "dispute": {"type": "object", "properties": {"dispute_id": {"type": ["string", "null"]},
                                                                 "actions": _ACTIONS}},
                },
            },
        },
    },
    "DisputeListItem": {
        "allOf": [_ref("Dispute"), {
            "type": "object",
            "required": ["role", "order", "actions"],
            "properties": {
                "role": {"type": "string", "enum": list(selectors.ROLES)},
                "order": {"type": "object", "properties": {
                    "order_id": {"type": "string"}, "item_title": {"type": "string"},
                    "supplier_name": {"type": "string"}, "amount": _MONEY, "currency": {"type": "string"},
                    "status": {"type": "string"}, "ordered_at": _TIME}},
                "actions": _ACTIONS,
            },
        }],
    },
}
