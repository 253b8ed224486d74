"""Leased delivery: rows that must reach someone over the network at least once.

A row (a ``LeasedDelivery``: the order system's outbox, a notification's e-mail or
webhook) is delivered by ``deliver_leased``, which repeats three steps for up to
``batch`` rows:

1. **Claim** (one short transaction): the oldest due pending row is selected
   ``FOR UPDATE SKIP LOCKED``; its ``attempts`` goes up by one and its ``next_attempt_at``
   moves to the end of a lease (now + lease_s). COMMIT. The row stays ``pending``: the
   lease only hides it from other workers until it ends.
2. **Send**, with no transaction open and no lock held: ``send(row)``. The request
   carries the row's stored payload and ``idempotency_key``, the same on every attempt,
   so the receiver can drop repeats.
3. **Record** (one UPDATE): accepted → ``delivered``; not accepted and retryable with
   attempts left → ``next_attempt_at`` = now + backoff; otherwise → ``failed`` with
   ``last_error`` (shown in the admin, which can put it back to pending: ``retry_failed``).

Why a lease rather than holding the row lock during the request: a lock held across an
HTTP call keeps a transaction (and a pooled connection) open for up to the timeout, and a
worker that hangs inside it holds the row for as long as the hang. The lease commits at
once; a request is bounded by its timeout, which the callers' config requires to be
shorter than the lease, so a row is not handed to two workers at the same time. (The
timeout bounds each socket operation; a server that trickles its answer byte by byte
could outlast the lease, and then two workers send the same key at once: a duplicate,
which the key makes harmless, never a loss.) SKIP LOCKED keeps claimers from queueing
behind each other's claim transactions (and from getting no row at all, which a plain
FOR UPDATE with LIMIT does when the row it waited for changes).

At least once, and nothing lost, whenever a worker dies:
* during the claim: the transaction rolls back; the row is as it was.
* after the claim, before or during the request, or before the record: the row is still
  ``pending``; its lease ends and any worker claims it again and sends the same key and
  payload. The receiver may have seen it already: that is the duplicate the key is for.
* A row leaves ``pending`` only in step 3, after an answer was received.
The record of a failure names the lease it was claimed with (``next_attempt_at`` equals
the lease end), so a worker whose lease ran out (a paused process) cannot overwrite the
state a later claim set. An accepted answer is recorded whoever holds the row now.

Attempts are counted at the claim, so a row that kills every worker that sends it still
reaches max_attempts and ends ``failed`` instead of being retried for ever.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from chat_service.machinery.delivery.signed_http import DeliveryResult

log = logging.getLogger(__name__)

_random = random.Random()


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retries exhausted; visible in the admin, can be retried from there


class LeasedDelivery(models.Model):
    """The fields a row needs to be delivered by ``deliver_leased``:
    at least once, with a lease, backoff and one ``idempotency_key`` for every attempt.
    The outbox and notification deliveries both are such rows."""

    payload = models.JSONField()
    idempotency_key = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


@dataclass(slots=True)
class DeliveryCounts:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0  # not accepted, scheduled for another attempt
    failed: int = 0  # not accepted, no attempts left or not retryable
    superseded: int = 0  # the answer came after the lease ended and another claim took over


def backoff_s(attempts: int, *, base_s: float, max_s: float, rng: random.Random = _random) -> float:
    """Delay after the ``attempts``-th failed attempt: base·2^attempts, jittered down to
    half (so workers that failed together do not retry together), at most ``max_s``.
    Never shorter than the delay after the previous attempt."""
    return min(max_s, base_s * 2.0 ** min(attempts, 60) * rng.uniform(0.5, 1.0))


def deliver_leased(
    *,
    due: QuerySet[Any],
    send: Callable[[Any], DeliveryResult],
    batch: int,
    lease_s: float,
    max_attempts: int,
    backoff_base_s: float,
    backoff_max_s: float,
    now: datetime | None,
    rng: random.Random,
    describe: Callable[[Any], str],
) -> DeliveryCounts:
    """One delivery pass over the rows of ``due`` (a table with status pending/delivered/
    failed, attempts, next_attempt_at, last_error, delivered_at, idempotency_key): claim,
    send, record, up to ``batch`` rows. Shared by the outbox and notifications."""
    counts = DeliveryCounts()
    for _ in range(batch):
        claimed_at = now or timezone.now()
        lease_until = claimed_at + timedelta(seconds=lease_s)
        row = _claim(due, now=claimed_at, lease_until=lease_until)
        if row is None:
            break
        counts.claimed += 1
        try:
            result = send(row)
        except Exception as error:  # noqa: BLE001 - a broken sender is one failed attempt, not a dead worker
            log.exception("delivery raised %s id=%s key=%s", describe(row), row.pk, row.idempotency_key)
            result = DeliveryResult(accepted=False, retryable=True, error=f"{type(error).__name__}: {error}"[:500])
        outcome = _record(
            row,
            result,
            now=now or timezone.now(),
            lease_until=lease_until,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            rng=rng,
            what=describe(row),
        )
        setattr(counts, outcome, getattr(counts, outcome) + 1)
    return counts


def _claim(due: QuerySet[Any], *, now: datetime, lease_until: datetime) -> Any | None:
    with transaction.atomic():
        row = (
            due.select_for_update(skip_locked=True)
            .filter(status="pending", next_attempt_at__lte=now)
            .order_by("next_attempt_at", "pk")
            .first()
        )
        if row is None:
            return None
        row.attempts += 1
        row.next_attempt_at = lease_until
        row.save(update_fields=["attempts", "next_attempt_at"])
    return row


def _record(
    row: Any,
    result: DeliveryResult,
    *,
    now: datetime,
    lease_until: datetime,
    max_attempts: int,
    backoff_base_s: float,
    backoff_max_s: float,
    rng: random.Random,
    what: str,
) -> str:
    """Write the outcome of one leased delivery attempt.

    Accepted is the truth whoever holds the row now. A failure is recorded only while our
    lease (``next_attempt_at == lease_until``) still stands, so a worker whose lease ran
    out never overwrites a later worker's claim.
    """
    rows = type(row).objects.filter(pk=row.pk)
    if result.accepted:
        done = rows.exclude(status="delivered").update(status="delivered", delivered_at=now, last_error="")
        log.debug("delivered %s id=%s attempts=%s", what, row.pk, row.attempts)
        return "delivered" if done else "superseded"
    ours = rows.filter(status="pending", next_attempt_at=lease_until)
    error = result.error or (f"HTTP {result.status}" if result.status else "not accepted")
    if not result.retryable or row.attempts >= max_attempts:
        if not ours.update(status="failed", last_error=error):
            return "superseded"
        log.error("delivery failed for good %s id=%s attempts=%s error=%s", what, row.pk, row.attempts, error)
        return "failed"
    delay = backoff_s(row.attempts, base_s=backoff_base_s, max_s=backoff_max_s, rng=rng)
    if not ours.update(next_attempt_at=now + timedelta(seconds=delay), last_error=error):
        return "superseded"
    log.warning(
        "delivery will be retried %s id=%s attempts=%s in_s=%.1f error=%s", what, row.pk, row.attempts, delay, error
    )
    return "retrying"


def retry_failed(rows: QuerySet[Any], *, ids: list[int], now: datetime | None = None) -> int:
    """Put the failed rows of ``rows`` among ``ids`` back to pending with a fresh attempt
    budget (the admin's "Retry delivery"). Rows that are not failed are left alone.
    Returns how many were reset. The key and payload stay as they were: to the receiver
    it is the same delivery, however often it is retried."""
    return rows.filter(pk__in=ids, status=DeliveryStatus.FAILED).update(
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now or timezone.now()
    )
