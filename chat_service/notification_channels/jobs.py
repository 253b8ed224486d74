"""The notification worker jobs, registered with chat_service.machinery.worker when the worker
imports this module (``worker.autodiscover``).

* ``notifications.compose`` (every 1 s): turns due pending notifications into digests
  (or drops them: read, muted, online, no channel) — ``services.notifications_compose_due``.
* ``notifications.deliver`` (every 1 s): sends composed digests through their channels,
  at least once with an idempotency key — ``delivery.notifications_deliver_due``. While
  passes come back full it keeps going for about one interval.
* ``notifications.remind`` (every 60 s): queues a reminder for offers about to expire and
  dispute answers about to be due, once each — ``chat_service.commerce.reminders.reminders_schedule_due``.

Safe with several workers at once; a killed worker loses nothing (PostgreSQL holds it all).
"""

from __future__ import annotations

import logging
import time

from chat_service.commerce.reminders import reminders_schedule_due
from chat_service.machinery.worker import Job, register
from chat_service.notification_channels.channel import channels_from_settings
from chat_service.notification_channels.delivery import notifications_deliver_due
from chat_service.threads.notifications.config import notify_config
from chat_service.threads.notifications.services import notifications_compose_due

log = logging.getLogger(__name__)

COMPOSE_INTERVAL_S = 1.0
DELIVER_INTERVAL_S = 1.0
REMIND_INTERVAL_S = 60.0


def compose() -> None:
    counts = notifications_compose_due()
    if counts.groups:
        log.info(
            "notifications composed digests=%s sent=%s dropped=%s skipped=%s",
            counts.digests,
            counts.sent,
            counts.dropped,
            counts.skipped,
        )


def deliver() -> None:
    config = notify_config()
    channels = channels_from_settings()
    deadline = time.monotonic() + DELIVER_INTERVAL_S
    while True:
        counts = notifications_deliver_due(channels=channels, config=config)
        if counts.claimed:
            log.info(
                "notifications delivered=%s retrying=%s failed=%s superseded=%s",
                counts.delivered,
                counts.retrying,
                counts.failed,
                counts.superseded,
            )
        if counts.claimed < config.batch or time.monotonic() >= deadline:
            return


def remind() -> None:
    queued = reminders_schedule_due()
    if queued:
        log.info("notification reminders queued count=%s", queued)


COMPOSE_JOB = register(Job("notifications.compose", COMPOSE_INTERVAL_S, compose))
DELIVER_JOB = register(Job("notifications.deliver", DELIVER_INTERVAL_S, deliver))
REMIND_JOB = register(Job("notifications.remind", REMIND_INTERVAL_S, remind))
