"""Threads and their events: the durable log every delivery guarantee rests on.

Invariants:
* One thread per order; its participants are the order's buyer and seller, copied here so
  that every authorization check is one indexed row read.
* ``Event.seq`` is per thread, starts at 1 and never skips or repeats: it is allocated by
  incrementing ``Thread.last_seq`` inside the inserting transaction, and the row lock that
  the increment takes is held until commit, so events become visible in ``seq`` order.
* ``(thread, author_id, client_msg_id)`` is unique: a retried send stores nothing new.
* ``buyer_unread`` / ``seller_unread`` count the events after that party's read marker
  that the party did not write themselves; they change only under the thread row lock.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    BUYER = "buyer"
    SELLER = "seller"
    SYSTEM = "system"


class EventKind(models.TextChoices):
    MESSAGE = "message"
    OFFER = "offer"
    DISPUTE = "dispute"
    ORDER = "order"
    SYSTEM = "system"


class Thread(models.Model):
    order = models.OneToOneField(
        # By label, not by import: the commerce domain writes into threads, so threads
        # name the order table without importing commerce (docs/architecture.md).
        "orders_bridge.Order",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="thread",
    )
    buyer_id = models.CharField(max_length=64)
    seller_id = models.CharField(max_length=64)
    last_seq = models.PositiveBigIntegerField(default=0)
    buyer_read_seq = models.PositiveBigIntegerField(default=0)
    seller_read_seq = models.PositiveBigIntegerField(default=0)
    buyer_unread = models.PositiveIntegerField(default=0)
    seller_unread = models.PositiveIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # "my threads, most recent first" and the unread totals, as index scans.
            models.Index(fields=["buyer_id", "-last_event_at"], name="thread_buyer_recent"),
            models.Index(fields=["seller_id", "-last_event_at"], name="thread_seller_recent"),
        ]

    def __str__(self) -> str:
        return f"thread {self.pk}"

    def role_of(self, user_id: str) -> Role | None:
        if user_id == self.buyer_id:
            return Role.BUYER
        if user_id == self.seller_id:
            return Role.SELLER
        return None


class Event(models.Model):
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    # NULL, not "": system events have no author, and NULL never collides in the unique
    # (thread, author_id, client_msg_id) constraint.
    author_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    author_role = models.CharField(max_length=16, choices=Role.choices)
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    client_msg_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - see author_id
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["thread", "seq"], name="event_thread_seq_unique"),
            models.UniqueConstraint(
                fields=["thread", "author_id", "client_msg_id"],
                condition=Q(client_msg_id__isnull=False),
                name="event_client_msg_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.thread_id}#{self.seq} {self.kind}"
