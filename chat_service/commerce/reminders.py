"""Deadline reminders of commerce: an offer about to expire (to the buyer) and a dispute
answer about to be due (to the seller), each queued once through the notifications
domain and described there at compose time by the describers registered here.

The worker runs ``reminders_schedule_due`` (chat_service.notification_channels.jobs);
``CommerceConfig.ready`` registers the kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import CharField, Exists, OuterRef, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from chat_service.commerce.models import Dispute, Offer
from chat_service.commerce.policies import dispute as dispute_policy
from chat_service.commerce.policies import offer as offer_policy
from chat_service.threads.notifications import texts
from chat_service.threads.notifications.config import NotifyConfig, notify_config
from chat_service.threads.notifications.models import Notification
from chat_service.threads.notifications.services import notification_remind, reminder_kind_register

OFFER_EXPIRING = "offer.expiring"
DISPUTE_RESPONSE_DUE = "dispute.response_due"


@dataclass(frozen=True, slots=True)
class _Deadline:
    """One kind of deadline a reminder is queued for, once per subject."""

    kind: str
    model: type[Offer] | type[Dispute]
    status: str  # the subject's state while the deadline stands
    deadline: str  # its deadline field
    lead_s: Callable[[NotifyConfig], float]
    key_prefix: str  # the reminder's dedupe key: "<prefix>:<subject id>"
    recipient: str  # the order's field naming who is reminded
    data_key: str


_DEADLINES = (
    _Deadline(OFFER_EXPIRING, Offer, offer_policy.OPEN, "expires_at", lambda c: c.offer_reminder_lead_s,
              "offer-expiring", "buyer_id", "offer_id"),
    _Deadline(DISPUTE_RESPONSE_DUE, Dispute, dispute_policy.OPEN, "respond_by", lambda c: c.dispute_reminder_lead_s,
              "dispute-response-due", "seller_id", "dispute_id"),
)  # fmt: skip


def reminders_schedule_due(*, now: datetime | None = None, limit: int = 200) -> int:
    """Queue one reminder for each open offer expiring within the lead time (to the buyer)
    and each dispute awaiting the seller's answer due within it (to the seller). Once:
    a reminder row is unique per (user, subject), so repeated scans add nothing.
    Returns how many reminders were queued."""
    now = now or timezone.now()
    config = notify_config()
    queued = 0
    for d in _DEADLINES:
        key = Concat(Value(f"{d.key_prefix}:"), Cast(OuterRef("pk"), output_field=CharField()))
        lead = timedelta(seconds=d.lead_s(config))
        due = (
            d.model.objects.select_related("order")
            .filter(status=d.status, **{f"{d.deadline}__gt": now, f"{d.deadline}__lte": now + lead})
            .filter(~Exists(Notification.objects.filter(dedupe_key=key)))
            .order_by(d.deadline)[:limit]
        )
        for subject in due:
            queued += notification_remind(
                user_id=getattr(subject.order, d.recipient),
                order_id=subject.order_id,
                kind=d.kind,
                dedupe_key=f"{d.key_prefix}:{subject.pk}",
                data={d.data_key: subject.pk},
                now=now,
            )
    return queued


def describe_offer_expiring(data: dict[str, Any], order: texts.OrderFacts, now: datetime) -> texts.Note | None:
    offer = Offer.objects.filter(pk=data["offer_id"], status=offer_policy.OPEN).first()
    if offer is None or offer.expires_at is None or offer.expires_at <= now:
        return None  # answered, withdrawn or expired meanwhile
    return texts.offer_expiring(
        order=order, price=f"{offer.price:.2f}", currency=offer.currency, expires_at=offer.expires_at
    )


def describe_dispute_response_due(data: dict[str, Any], order: texts.OrderFacts, now: datetime) -> texts.Note | None:
    dispute = Dispute.objects.filter(pk=data["dispute_id"], status=dispute_policy.OPEN).first()
    if dispute is None or dispute.respond_by is None or dispute.respond_by <= now:
        return None  # answered, cancelled or past due meanwhile
    return texts.dispute_response_due(
        order=order,
        refund_amount=f"{dispute.refund_amount:.2f}",
        currency=dispute.currency,
        respond_by=dispute.respond_by,
    )


def register() -> None:
    reminder_kind_register(OFFER_EXPIRING, describe_offer_expiring)
    reminder_kind_register(DISPUTE_RESPONSE_DUE, describe_dispute_response_due)
