"""HTTP endpoints of order search (the Manage Orders list), its tab counts, order detail
and the dispute list (see docs/protocol.md). Each parses the query, calls one selector
and frames the answer; a bad parameter is a 400 ``bad_request`` naming it."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from django.http import HttpRequest

from chat_service.commerce import selectors
from chat_service.protocol import frames
from chat_service.protocol.errors import BadRequest
from chat_service.transport.http.api import json_endpoint, query_int
from chat_service.transport.identity import Identity

Result = tuple[int, dict[str, Any]]

TEXT_MAX_CHARS = 200  # q and supplier
TRACKING_MAX_CHARS = 64
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _text(request: HttpRequest, name: str, *, max_chars: int) -> str | None:
    value = request.GET.get(name, "").strip()
    if not value:
        return None
    if len(value) > max_chars or "\x00" in value:
        raise BadRequest(f"{name} must be text of at most {max_chars} characters.", field=name)
    return value


def _choice(request: HttpRequest, name: str, choices: tuple[str, ...]) -> str | None:
    value = request.GET.get(name) or None
    if value is not None and value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}.", field=name)
    return value


def _date(request: HttpRequest, name: str) -> date | None:
    value = request.GET.get(name) or None
    if value is None:
        return None
    try:
        if not _DATE_RE.match(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date such as 2026-11-26.", field=name) from None


def _order_id(value: str | None, *, field: str = "order_id") -> str | None:
    if not value:
        return None
    if not frames.ID_RE.match(value):
        raise BadRequest(f"{field} must be 1-64 letters, digits, '-', '_' or '.'.", field=field)
    return value


def _cursor(request: HttpRequest, *, kind: str) -> selectors.Cursor | None:
    token = request.GET.get("cursor") or None
    return None if token is None else selectors.Cursor.decode(token, kind=kind)


def _limit(request: HttpRequest) -> int:
    limit = query_int(request, "limit", default=selectors.PAGE_DEFAULT, minimum=1, maximum=selectors.PAGE_MAX)
    assert limit is not None
    return limit


@json_endpoint("GET")
def orders_list(request: HttpRequest, identity: Identity) -> Result:
    date_from, date_to = _date(request, "date_from"), _date(request, "date_to")
    if date_from and date_to and date_from > date_to:
        raise BadRequest("date_to must not be before date_from.", field="date_to")
    page = selectors.orders_search(
        user_id=identity.id,
        q=_text(request, "q", max_chars=TEXT_MAX_CHARS),
        order_id=_order_id(request.GET.get("order_id", "").strip()),
        status=_choice(request, "status", selectors.STATUS_FILTERS),
        supplier=_text(request, "supplier", max_chars=TEXT_MAX_CHARS),
        tracking=_text(request, "tracking", max_chars=TRACKING_MAX_CHARS),
        date_from=date_from,
        date_to=date_to,
        cursor=_cursor(request, kind=selectors.ORDERS),
        limit=_limit(request),
        role=_choice(request, "role", selectors.ROLES),
    )
    return 200, frames.page("orders", page)


@json_endpoint("GET")
def orders_counts(request: HttpRequest, identity: Identity) -> Result:
    return 200, selectors.orders_counts(user_id=identity.id, role=_choice(request, "role", selectors.ROLES))


@json_endpoint("GET")
def order_detail(request: HttpRequest, identity: Identity, order_id: str) -> Result:
    checked = _order_id(order_id)
    if checked is None:
        raise BadRequest("order_id is required.", field="order_id")
    return 200, selectors.order_detail(user_id=identity.id, order_id=checked)


@json_endpoint("GET")
def disputes_list(request: HttpRequest, identity: Identity) -> Result:
    page = selectors.disputes_for_user(
        user_id=identity.id,
        status=_choice(request, "status", selectors.DISPUTE_FILTERS),
        cursor=_cursor(request, kind=selectors.DISPUTES),
        limit=_limit(request),
        role=_choice(request, "role", selectors.ROLES),
    )
    return 200, frames.page("disputes", page)
