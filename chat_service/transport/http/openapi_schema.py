"""The building blocks of the OpenAPI 3.1 document (chat_service.transport.http.openapi):
responses, parameters and the wire's shared shapes, written once. Patterns come from
chat_service.protocol.frames, so the document and the parsers cannot disagree."""

from __future__ import annotations

from typing import Any

from chat_service.protocol import frames

ERROR = {"$ref": "#/components/schemas/Error"}
ID_PATTERN = f"^{frames.ID_PATTERN}$"
CLIENT_MSG_ID_PATTERN = f"^{frames.CLIENT_MSG_ID_PATTERN}$"
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
MONEY = {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$", "examples": ["12.50"]}
MONEY_OR_NULL = {**MONEY, "type": ["string", "null"]}
ORDER_ID = {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": ID_PATTERN}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(name: str) -> dict[str, Any]:
    return {"oneOf": [ref(name), {"type": "null"}]}


def errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", "content": {"application/json": {"schema": ERROR}}} for s in statuses}


def ok(schema: dict[str, Any], status: int = 200) -> dict[str, Any]:
    return {str(status): {"description": "ok", "content": {"application/json": {"schema": schema}}}}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}
