"""Reads behind the seller indicator: who has a visible presence, and how fast they reply.

Both are read on every subscribe of a page of up to 200 sellers, so both are answered
from the process's cache (Django's cache, per process by default) and computed for all
cache misses of a page in one query.

Invariants:
* Only a user who is the seller of at least one order has a visible presence. For any
  other id the callers reveal nothing (offline, no last_seen, no pushes). A user who
  becomes a seller is visible within ``PRESENCE_CACHE_S`` at the latest; being a seller
  is never revoked by the order system, so positive answers may be cached as long.
* The typical reply time of a seller is the median, over the last 30 days, of the time
  from a buyer's message that starts a wait (the first buyer message after the seller's
  previous message, or the first in the thread) to the seller's next message in that
  thread, in whole seconds; None without such a pair. Consecutive buyer messages count
  once: the buyer waited once.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from chat_service.commerce.models import Order
from chat_service.threads.models import Event, EventKind, Role

REPLY_WINDOW = timedelta(days=30)
# Bounds the rows one cache miss reads; past it the page's threads are sampled in id order.
REPLY_SAMPLE_MAX_ROWS = 50_000
_MISSING = object()


def _cache_s() -> int:
    return int(settings.CHAT["PRESENCE_CACHE_S"])


def sellers_among(*, user_ids: Iterable[str]) -> set[str]:
    """The ids among ``user_ids`` that are the seller of at least one order."""
    ids = list(dict.fromkeys(user_ids))
    cached = cache.get_many([f"presence:seller:{i}" for i in ids])
    known = {i: cached[f"presence:seller:{i}"] for i in ids if f"presence:seller:{i}" in cached}
    missing = [i for i in ids if i not in known]
    if missing:
        found = set(Order.objects.filter(seller_id__in=missing).values_list("seller_id", flat=True).distinct())
        fresh = {i: i in found for i in missing}
        # A "not a seller" answer is kept briefly: a first order may arrive any moment.
        cache.set_many({f"presence:seller:{i}": True for i, v in fresh.items() if v}, _cache_s())
        cache.set_many({f"presence:seller:{i}": False for i, v in fresh.items() if not v}, min(60, _cache_s()))
        known.update(fresh)
    return {i for i, visible in known.items() if visible}


def typical_reply_seconds(*, seller_ids: Iterable[str]) -> dict[str, int | None]:
    """Each seller's typical reply time in seconds (see the module docstring), cached."""
    ids = list(dict.fromkeys(seller_ids))
    cached = cache.get_many([f"presence:reply:{i}" for i in ids])
    result: dict[str, int | None] = {}
    missing = []
    for seller_id in ids:
        value = cached.get(f"presence:reply:{seller_id}", _MISSING)
        if value is _MISSING:
            missing.append(seller_id)
        else:
            result[seller_id] = value
    if missing:
        fresh = _reply_medians(missing, since=timezone.now() - REPLY_WINDOW)
        # None is cached too (as such): a seller without replies costs no query either.
        cache.set_many({f"presence:reply:{i}": v for i, v in fresh.items()}, _cache_s())
        result.update(fresh)
    return result


def _reply_medians(seller_ids: list[str], *, since: datetime) -> dict[str, int | None]:
    rows = (
        Event.objects.filter(
            thread__seller_id__in=seller_ids,
            kind=EventKind.MESSAGE,
            created_at__gte=since,
            author_role__in=[Role.BUYER, Role.SELLER],
        )
        .order_by("thread_id", "seq")
        .values_list("thread__seller_id", "thread_id", "author_role", "created_at")[:REPLY_SAMPLE_MAX_ROWS]
    )
    waits: dict[str, list[float]] = defaultdict(list)
    thread: str | None = None
    waiting_since: datetime | None = None
    for seller_id, thread_id, role, created_at in rows:
        if thread_id != thread:
            thread, waiting_since = thread_id, None
        if role == Role.BUYER:
            if waiting_since is None:
                waiting_since = created_at
        elif waiting_since is not None:
            waits[seller_id].append((created_at - waiting_since).total_seconds())
            waiting_since = None
    return {i: round(statistics.median(waits[i])) if waits.get(i) else None for i in seller_ids}
