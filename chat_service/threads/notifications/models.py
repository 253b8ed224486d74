"""What the notification feature stores.

* ``NotificationProfile``: one row per user the service has seen: channel preferences,
  the contact e-mail address the marketplace's token carried, and ``last_online_at``
  (the last connect or disconnect of any of the user's sockets).
* ``ThreadMute``: a user muted a thread: no notification frames, no pushes, no e-mail for
  it (unread badges still count it).
* ``Notification``: one row per (thread event, recipient), written by ``event_append`` in
  the event's own transaction, and one per deadline reminder. It waits ``pending`` until
  it is due; the worker then composes every pending row of the (user, thread) into one
  digest (``sent``) or drops it (``dropped`` with a ``reason``).
* ``NotificationDelivery``: the outbox of composed digests, one row per channel, delivered
  at least once with its ``idempotency_key`` (chat_service.notification_channels.delivery).

Invariants:
* A Notification leaves ``pending`` only in the transaction that writes the deliveries it
  became (or records why it was dropped), so nothing is lost and nothing is composed twice.
* A reminder is unique per (user, ``dedupe_key``): a deadline reminds once, however often
  and by however many workers the scan runs.
* A delivery's key and payload never change after it was written: every retry is the same
  request.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from chat_service.machinery.delivery.leased import DeliveryStatus as DeliveryStatus  # its rows' states
from chat_service.machinery.delivery.leased import LeasedDelivery
from chat_service.threads.models import Thread


class NotificationProfile(models.Model):
    user_id = models.CharField(max_length=64, primary_key=True)
    email = models.CharField(max_length=254, blank=True, default="")
    email_enabled = models.BooleanField(default=True)
    push_enabled = models.BooleanField(default=True)
    last_online_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"notification profile of {self.user_id}"


class ThreadMute(models.Model):
    user_id = models.CharField(max_length=64)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="mutes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user_id", "thread"], name="thread_mute_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} muted {self.thread_id}"


class NotificationStatus(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"  # composed into a digest (see its deliveries)
    DROPPED = "dropped"  # see ``reason``


class Notification(models.Model):
    user_id = models.CharField(max_length=64)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="notifications")
    event_seq = models.PositiveBigIntegerField(null=True, blank=True)  # None: a reminder
    kind = models.CharField(max_length=32)
    urgent = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    due_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    reason = models.CharField(max_length=32, blank=True, default="")
    digest_key = models.CharField(max_length=64, blank=True, default="")
    # NULL (not "") for events: the unique constraint below covers reminders only.
    dedupe_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user_id", "dedupe_key"], condition=Q(dedupe_key__isnull=False), name="notification_dedupe"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "due_at"], name="notification_due"),
            models.Index(fields=["user_id", "thread", "status"], name="notification_group"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user_id} in {self.thread_id} ({self.status})"


class NotificationDelivery(LeasedDelivery):
    user_id = models.CharField(max_length=64)
    order_id = models.CharField(max_length=64)
    channel = models.CharField(max_length=16)  # webhook | email

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notification_delivery_due")]

    def __str__(self) -> str:
        return f"{self.channel} to {self.user_id} about {self.order_id} ({self.status})"
