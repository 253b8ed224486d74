"""Reads of orders for the Manage Orders list, its tabs, order detail and disputes.

No writes, no pushes. Every selector takes the caller's ``user_id`` and shows only orders
the caller is a party to (buyer or seller); anyone else's order does not exist for them
(``NotFound``, as in chat_service.threads.selectors), so order ids cannot be probed.

Paging is by keyset, never by offset, so a page costs the same at any depth and no item is
skipped or repeated while new orders arrive: a cursor is the (time, id) of the last item
seen plus a direction, and the next page is the rows strictly beyond it in the list's
order (newest first: ``ordered_at`` desc, then ``order_id`` desc).

The caller's orders as buyer and as seller are read by two queries, one per role, each
walking its own index ``(buyer_id | seller_id, [status,] ordered_at desc, order_id desc)``
(migration 0003) and stopping after ``limit + 1`` rows; the two are merged here. On
PostgreSQL ids are compared and sorted with the "C" collation, byte order, which is also
Python's order for ids (ASCII) and SQLite's, so the database and the merge agree whatever
the database's default collation is.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Collate
from django.utils import timezone

from chat_service.commerce.models import Dispute, Offer, Order
from chat_service.commerce.policies import Actor
from chat_service.commerce.policies import dispute as dispute_policy
from chat_service.commerce.policies import offer as offer_policy
from chat_service.commerce.policies import order as order_policy
from chat_service.commerce.policies.order import AfterSale
from chat_service.protocol.commerce import dispute_wire, money, offer_wire, order_wire
from chat_service.protocol.errors import BadRequest, NotFound
from chat_service.protocol.frames import iso
from chat_service.threads.models import Event, EventKind, Role, Thread
from chat_service.threads.selectors import thread_for_participant, unread_of

# The Manage Orders tabs: one per order status, plus two that cut across statuses.
TAB_DISPUTES = "disputes"  # orders with an open dispute
TAB_UNREAD = "unread"  # orders whose thread has events the caller has not read
STATUS_FILTERS = (*order_policy.STATUSES, TAB_DISPUTES, TAB_UNREAD)
ROLES = (Role.BUYER.value, Role.SELLER.value)
# Dispute list filters: "open" (not resolved or cancelled), "closed", or one status.
DISPUTE_STATUSES = (
    dispute_policy.OPEN,
    dispute_policy.COUNTERED,
    dispute_policy.REJECTED,
    dispute_policy.ESCALATED,
    dispute_policy.AWAITING_RETURN,
    dispute_policy.RETURN_SHIPPED,
    dispute_policy.RESOLVED,
    dispute_policy.CANCELLED,
)
DISPUTE_FILTERS = ("open", "closed", *DISPUTE_STATUSES)

PAGE_DEFAULT = 20
PAGE_MAX = 50
TIMELINE_MAX = 500  # order/offer/dispute events in one detail; chat messages are not counted
ORDERS = "orders"  # cursor kinds
DISPUTES = "disputes"
NEXT = "next"  # towards older items
PREV = "prev"  # towards newer items
NO_ORDER = "There is no order with that id for you."

Row = TypeVar("Row", Order, Dispute)


# --- Cursors ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a newest-first list: the (time, id) of an item, and which way to go.

    ``kind`` names the list ("orders" or "disputes") so a cursor of one list is refused
    by the other; dispute ids are numbers, order ids strings."""

    kind: str
    at: datetime
    id: str | int
    direction: str  # NEXT (older than the item) or PREV (newer than the item)

    def encode(self) -> str:
        raw = json.dumps([self.kind, _micros(self.at), self.id, self.direction], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, *, kind: str, field: str = "cursor") -> Cursor:
        """Parse a client's cursor; BadRequest for anything this module did not make."""
        invalid = BadRequest(f"{field} is not valid: use the next or prev value of a previous page.", field=field)
        if not token or len(token) > 512:
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            token_kind, micros, item_id, direction = json.loads(raw)
            at = _EPOCH + timedelta(microseconds=micros)
        except (binascii.Error, ValueError, TypeError, OverflowError, UnicodeDecodeError):
            raise invalid from None
        id_type = int if kind == DISPUTES else str
        if (
            token_kind != kind
            or isinstance(micros, bool)
            or not isinstance(micros, int)
            or isinstance(item_id, bool)
            or not isinstance(item_id, id_type)
            or direction not in (NEXT, PREV)
            or (isinstance(item_id, str) and not 0 < len(item_id) <= 64)
        ):
            raise invalid
        return cls(kind=kind, at=at, id=item_id, direction=direction)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    # Exact integer arithmetic: a float timestamp would round some microseconds away.
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next: str | None  # cursor to the older items after this page, None at the end
    prev: str | None  # cursor to the newer items before this page, None at the start


@dataclass(frozen=True, slots=True)
class _List:
    """How one list is ordered: by ``time_field`` then ``id_field``, newest first."""

    kind: str
    time_field: str
    id_field: str

    def id_key(self) -> Any:
        # String ids sort in byte order (see the module docstring); numbers as numbers.
        if self.kind == ORDERS and connection.vendor == "postgresql":
            return Collate(F(self.id_field), "C")
        return F(self.id_field)

    def key(self, row: Any) -> tuple[datetime, Any]:
        return getattr(row, self.time_field), getattr(row, self.id_field)


_ORDER_LIST = _List(kind=ORDERS, time_field="ordered_at", id_field="order_id")
_DISPUTE_LIST = _List(kind=DISPUTES, time_field="opened_at", id_field="id")


def _keyset(queryset: QuerySet[Row], *, order: _List, cursor: Cursor | None, limit: int) -> list[Row]:
    """Up to ``limit`` rows of ``queryset`` beyond ``cursor``, in the order they are read:
    newest first, or oldest first when paging towards newer items."""
    queryset = queryset.alias(_key_id=order.id_key())
    at = order.time_field
    if cursor is not None and cursor.direction == NEXT:
        # The redundant bound on the time alone lets the index range start at the cursor.
        queryset = queryset.filter(
            Q(**{f"{at}__lte": cursor.at}), Q(**{f"{at}__lt": cursor.at}) | Q(_key_id__lt=cursor.id)
        )
    elif cursor is not None:
        queryset = queryset.filter(
            Q(**{f"{at}__gte": cursor.at}), Q(**{f"{at}__gt": cursor.at}) | Q(_key_id__gt=cursor.id)
        )
    if cursor is not None and cursor.direction == PREV:
        ordering = (F(at).asc(), F("_key_id").asc())
    else:
        ordering = (F(at).desc(), F("_key_id").desc())
    return list(queryset.order_by(*ordering)[:limit])


def _merged_page(
    sides: Sequence[tuple[Role, QuerySet[Row]]],
    *,
    order: _List,
    cursor: Cursor | None,
    limit: int,
) -> tuple[list[tuple[Role, Row]], str | None, str | None]:
    """One page of the union of ``sides`` (disjoint querysets, one per role), newest first,
    and the cursors to the pages either side of it (None where there is nothing)."""
    if cursor is not None and cursor.kind != order.kind:
        raise BadRequest("cursor is not valid: use the next or prev value of a previous page.", field="cursor")
    rows: list[tuple[Role, Row]] = []
    for role, queryset in sides:
        rows += [(role, row) for row in _keyset(queryset, order=order, cursor=cursor, limit=limit + 1)]
    towards_newer = cursor is not None and cursor.direction == PREV
    rows.sort(key=lambda item: order.key(item[1]), reverse=not towards_newer)
    more = len(rows) > limit  # rows beyond this page, in the direction of travel
    rows = rows[:limit]
    if not rows:
        return rows, None, None
    if towards_newer:
        rows.reverse()
    # Coming from a cursor, the rows on its other side exist: the page we came from.
    older = True if towards_newer else more
    newer = more if towards_newer else cursor is not None

    def cursor_at(row: Row, direction: str) -> str:
        at, item_id = order.key(row)
        return Cursor(kind=order.kind, at=at, id=item_id, direction=direction).encode()

    return (rows, cursor_at(rows[-1][1], NEXT) if older else None, cursor_at(rows[0][1], PREV) if newer else None)


# --- The order list ----------------------------------------------------------------------


def _open_dispute() -> Q:
    # Sorted: the same SQL in every process (a frozenset's order depends on the hash seed).
    return ~Q(status__in=sorted(dispute_policy.CLOSED))


def _orders_of(*, user_id: str, role: Role) -> QuerySet[Order]:
    if role == Role.BUYER:
        return Order.objects.filter(buyer_id=user_id)
    # An order the user sold to themselves is listed once, as the buyer's.
    return Order.objects.filter(seller_id=user_id).exclude(buyer_id=user_id)


def _disputes_of(*, user_id: str, role: Role) -> QuerySet[Dispute]:
    """Disputes on the orders of _orders_of (a join, so the planner may start on either side)."""
    if role == Role.BUYER:
        return Dispute.objects.filter(order__buyer_id=user_id)
    return Dispute.objects.filter(order__seller_id=user_id).exclude(order__buyer_id=user_id)


def _unread_threads(*, user_id: str, role: Role) -> QuerySet[Thread]:
    """The user's threads with unread events in ``role`` (partial indexes, migration 0003).
    The thread's buyer and seller are the order's, so these are threads of _orders_of."""
    if role == Role.BUYER:
        return Thread.objects.filter(buyer_id=user_id, buyer_unread__gt=0)
    return Thread.objects.filter(seller_id=user_id, seller_unread__gt=0).exclude(buyer_id=user_id)


def _roles(role: str | None) -> list[Role]:
    return [Role(role)] if role else [Role.BUYER, Role.SELLER]


def day_range(*, date_from: date | None, date_to: date | None) -> tuple[datetime | None, datetime | None]:
    """Whole UTC days, both ends included: [date_from 00:00, the day after date_to 00:00)."""
    start = datetime.combine(date_from, time.min, tzinfo=UTC) if date_from else None
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC) if date_to else None
    return start, end


def orders_search(
    *,
    user_id: str,
    q: str | None = None,
    order_id: str | None = None,
    status: str | None = None,
    supplier: str | None = None,
    tracking: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    cursor: Cursor | None = None,
    limit: int = PAGE_DEFAULT,
    role: str | None = None,
) -> Page:
    """The caller's orders (as buyer and as seller, or one ``role``), newest first.

    Filters combine (AND): ``q`` a case-insensitive substring of the item title,
    ``supplier`` of the supplier name, ``order_id`` and ``tracking`` the start of the order
    id and of the tracking number (case-insensitive: people type "a1000" for A10001),
    ``status`` a status or a tab (``disputes``, ``unread``), ``date_from``/``date_to`` the
    order date (UTC days, inclusive). Validates nothing: the caller passes parsed values
    (see chat_service.transport.http.orders).
    """
    assert 1 <= limit <= PAGE_MAX and (status is None or status in STATUS_FILTERS)
    start, end = day_range(date_from=date_from, date_to=date_to)
    sides: list[tuple[Role, QuerySet[Order]]] = []
    for side in _roles(role):
        queryset = _orders_of(user_id=user_id, role=side)
        if order_id:
            queryset = queryset.filter(order_id__istartswith=order_id)
        if q:
            queryset = queryset.filter(item_title__icontains=q)
        if supplier:
            queryset = queryset.filter(supplier_name__icontains=supplier)
        if tracking:
            queryset = queryset.filter(tracking_number__istartswith=tracking)
        if start is not None:
            queryset = queryset.filter(ordered_at__gte=start)
        if end is not None:
            queryset = queryset.filter(ordered_at__lt=end)
        if status == TAB_DISPUTES:
            # The ids first, from index entries alone (the user's order ids, the open
            # disputes' order ids), then only the matching order rows.
            queryset = queryset.filter(
                pk__in=_disputes_of(user_id=user_id, role=side).filter(_open_dispute()).values("order_id")
            )
        elif status == TAB_UNREAD:
            queryset = queryset.filter(pk__in=_unread_threads(user_id=user_id, role=side).values("pk"))
        elif status:
            queryset = queryset.filter(status=status)
        sides.append((side, queryset))
    rows, next_cursor, prev_cursor = _merged_page(sides, order=_ORDER_LIST, cursor=cursor, limit=limit)
    return Page(items=_list_items(rows), next=next_cursor, prev=prev_cursor)


def _list_items(rows: list[tuple[Role, Order]]) -> list[dict[str, Any]]:
    """Each order with what the list shows beside it: three queries for the whole page."""
    ids = [order.pk for _, order in rows]
    # Not joined in the page's query: a plan that sorts the matches would join them all.
    threads = {t.pk: t for t in Thread.objects.filter(pk__in=ids)} if ids else {}
    # Offers live only while their order awaits payment (moving on expires them, see
    # chat_service.commerce.services.orders), so most pages need no offer query.
    unpaid = [order.pk for _, order in rows if order.status == order_policy.AWAITING_PAYMENT]
    live = Offer.objects.filter(order_id__in=unpaid, status__in=sorted(offer_policy.LIVE)) if unpaid else []
    offers = {offer.order_id: offer for offer in live}
    # Every dispute of the page's orders, newest first: the open one, else the last one,
    # and whether one was resolved (the rules need it).
    disputes: dict[str, list[Dispute]] = {}
    for d in Dispute.objects.filter(order_id__in=ids).order_by("-opened_at", "-pk") if ids else []:
        disputes.setdefault(d.order_id, []).append(d)
    now = timezone.now()
    items = []
    for role, order in rows:
        thread, offer, history = threads[order.pk], offers.get(order.pk), disputes.get(order.pk, [])
        dispute, resolved = _dispute_state(history)
        last = history[0] if history and dispute is None else None
        actions = _allowed_actions(
            order=order,
            actor=Actor(role.value),
            live_offer=offer,
            open_dispute=dispute,
            dispute_resolved=resolved,
            now=now,
        )
        items.append(
            {
                **order_wire(order),
                "role": role.value,
                "unread": unread_of(thread, role),
                "last_seq": thread.last_seq,
                "try_before_feedback": _try_before_feedback(order),
                "offer": _offer_brief(offer) if offer else None,
                "dispute": _dispute_brief(dispute) if dispute else None,
                # When none is open: how the last one ended (the card shows the outcome).
                "last_dispute": _dispute_brief(last) if last else None,
                "actions": actions,
            }
        )
    return items


def _dispute_state(history: list[Dispute]) -> tuple[Dispute | None, bool]:
    """Of an order's disputes: the open one (None if none is), and whether one was resolved."""
    open_dispute = next((d for d in history if d.status not in dispute_policy.CLOSED), None)
    return open_dispute, any(d.status == dispute_policy.RESOLVED for d in history)


def _allowed_actions(
    *,
    order: Order,
    actor: Actor,
    live_offer: Offer | None,
    open_dispute: Dispute | None,
    dispute_resolved: bool,
    now: datetime,
) -> dict[str, list[str]]:
    """What ``actor`` may do now, as the policies say: to the order, to its live offer (or
    to start one), to its open dispute."""
    state = AfterSale(
        status=order.status,
        completed_at=order.completed_at,
        feedback_left=order.feedback_at is not None,
        open_dispute=open_dispute is not None,
        dispute_resolved=dispute_resolved,
    )
    offer_status = live_offer.status if live_offer else offer_policy.NONE
    return {
        "order": order_policy.order_allowed_actions(actor=actor, state=state, now=now, protection=_protection()),
        "offer": offer_policy.offer_allowed_actions(offer_status=offer_status, order_status=order.status, actor=actor),
        "dispute": (
            dispute_policy.dispute_allowed_actions(status=open_dispute.status, actor=actor) if open_dispute else []
        ),
    }


def _try_before_feedback(order: Order) -> bool:
    """Advise using the goods for a few days before leaving feedback (electronics)."""
    return order_policy.is_electronics(category=order.category, item_title=order.item_title)


def _offer_brief(offer: Offer) -> dict[str, Any]:
    return {
        "offer_id": str(offer.pk),
        "status": offer.status,
        "price": money(offer.price),
        "currency": offer.currency,
        "expires_at": iso(offer.expires_at),
    }


def _dispute_brief(dispute: Dispute) -> dict[str, Any]:
    return {
        "dispute_id": str(dispute.pk),
        "status": dispute.status,
        "reason": dispute.reason,
        "refund_amount": money(dispute.refund_amount),
        "agreed_amount": money(dispute.agreed_amount),
        "return_item": dispute.return_item,
        "currency": dispute.currency,
        "respond_by": iso(dispute.respond_by),
        "closed_at": iso(dispute.closed_at),
    }


def _protection() -> timedelta:
    return timedelta(days=settings.ORDERS["DISPUTE_PROTECTION_DAYS"])


def user_sells(*, user_id: str) -> bool:
    """Whether ``user_id`` is the seller of any order (the pages offer the seller console
    only then)."""
    return _orders_of(user_id=user_id, role=Role.SELLER).exists()


# --- Tab counts --------------------------------------------------------------------------


def orders_counts(*, user_id: str, role: str | None = None) -> dict[str, Any]:
    """What the Manage Orders tabs show: orders per status and in all, orders with unread
    events, unread events in all, and open disputes (of the caller's orders, per ``role``
    or both)."""
    per_status = dict.fromkeys(order_policy.STATUSES, 0)
    unread_orders = unread_messages = open_disputes = 0
    for side in _roles(role):
        orders = _orders_of(user_id=user_id, role=side)
        for row in orders.order_by().values("status").annotate(n=Count("*")):
            per_status[row["status"]] = per_status.get(row["status"], 0) + row["n"]
        unread = _unread_threads(user_id=user_id, role=side).aggregate(
            orders=Count("*"), events=Sum("buyer_unread" if side == Role.BUYER else "seller_unread")
        )
        unread_orders += unread["orders"]
        unread_messages += unread["events"] or 0
        open_disputes += _disputes_of(user_id=user_id, role=side).filter(_open_dispute()).count()
    return {
        "all": sum(per_status.values()),
        "statuses": per_status,
        TAB_DISPUTES: open_disputes,
        TAB_UNREAD: unread_orders,
        "unread_messages": unread_messages,
    }


# --- Order detail -------------------------------------------------------------------------


def order_detail(*, user_id: str, order_id: str) -> dict[str, Any]:
    """One order as its page shows it: the order (properties, amount, tracking, feedback),
    the timeline of order/offer/dispute events (oldest first), every offer (newest first),
    the dispute (the open one, else the last one), and the actions the caller may take now.
    NotFound for anyone but the order's buyer and seller."""
    try:
        thread, role = thread_for_participant(order_id=order_id, user_id=user_id, with_order=True)
    except NotFound:
        raise NotFound(NO_ORDER) from None
    order, actor = thread.order, Actor(role.value)
    offers = list(Offer.objects.filter(order_id=order_id).order_by("-created_at", "-pk"))
    disputes = list(Dispute.objects.filter(order_id=order_id).order_by("-opened_at", "-pk"))
    open_dispute, resolved = _dispute_state(disputes)
    dispute = open_dispute or (disputes[0] if disputes else None)
    live_offer = next((o for o in offers if o.status in offer_policy.LIVE), None)
    timeline = (
        Event.objects.filter(thread_id=order_id, kind__in=(EventKind.ORDER, EventKind.OFFER, EventKind.DISPUTE))
        .annotate(change=KT("data__change"))
        .order_by("-seq")
        .values("seq", "kind", "change", "body", "author_role", "created_at")[:TIMELINE_MAX]
    )
    actions = _allowed_actions(
        order=order,
        actor=actor,
        live_offer=live_offer,
        open_dispute=open_dispute,
        dispute_resolved=resolved,
        now=timezone.now(),
    )
    return {
        **order_wire(order),
        "role": role.value,
        "unread": unread_of(thread, role),
        "last_seq": thread.last_seq,
        "try_before_feedback": _try_before_feedback(order),
        "timeline": [{**event, "created_at": iso(event["created_at"])} for event in reversed(list(timeline))],
        "offers": [offer_wire(o) for o in offers],
        "dispute": dispute_wire(dispute) if dispute else None,
        "allowed_actions": {
            "order": actions["order"],
            "offer": {"offer_id": str(live_offer.pk) if live_offer else None, "actions": actions["offer"]},
            "dispute": {"dispute_id": str(open_dispute.pk) if open_dispute else None, "actions": actions["dispute"]},
        },
    }


# --- Disputes -------------------------------------------------------------------------------


def disputes_for_user(
    *,
    user_id: str,
    status: str | None = None,
    cursor: Cursor | None = None,
    limit: int = PAGE_DEFAULT,
    role: str | None = None,
) -> Page:
    """The caller's disputes (on orders they bought or sold, or one ``role``), newest
    opened first. ``status``: ``open`` (not resolved or cancelled), ``closed``, or one
    dispute status. Validates nothing."""
    assert 1 <= limit <= PAGE_MAX and (status is None or status in DISPUTE_FILTERS)
    sides: list[tuple[Role, QuerySet[Dispute]]] = []
    for side in _roles(role):
        # No select_related: the join then reads only index entries of the user's orders,
        # and the page's orders are read after, by id.
        queryset = _disputes_of(user_id=user_id, role=side)
        if status == "open":
            queryset = queryset.filter(_open_dispute())
        elif status == "closed":
            queryset = queryset.filter(status__in=sorted(dispute_policy.CLOSED))
        elif status:
            queryset = queryset.filter(status=status)
        sides.append((side, queryset))
    rows, next_cursor, prev_cursor = _merged_page(sides, order=_DISPUTE_LIST, cursor=cursor, limit=limit)
    orders = Order.objects.in_bulk([dispute.order_id for _, dispute in rows])
    items = []
    for side, dispute in rows:
        order = orders[dispute.order_id]
        actions = (
            []
            if dispute.status in dispute_policy.CLOSED
            else dispute_policy.dispute_allowed_actions(status=dispute.status, actor=Actor(side.value))
        )
        items.append(
            {
                **dispute_wire(dispute),
                "role": side.value,
                "order": {
                    "order_id": order.pk,
                    "item_title": order.item_title,
                    "supplier_name": order.supplier_name,
                    "amount": money(order.amount),
                    "currency": order.currency,
                    "status": order.status,
                    "ordered_at": iso(order.ordered_at),
                },
                "actions": actions,
            }
        )
    return Page(items=items, next=next_cursor, prev=prev_cursor)
