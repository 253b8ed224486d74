"""The orders bridge's worker jobs, registered with chat_service.machinery.worker when the worker
imports this module (``worker.autodiscover``).

* ``orders.outbox_deliver`` (every 1 s): delivers due outbox rows to the order system
  (orders_bridge.delivery). While passes come back full it keeps going, for about one
  interval, so a backlog drains faster than one batch a second without keeping the
  worker from its other jobs (or from a SIGTERM) for long.
* ``orders.offers_expire`` (every 30 s): expires live offers past their deadline.
* ``orders.disputes_escalate`` (every 60 s): escalates disputes the seller did not answer
  in time.

Every job is safe with several workers running it at once (row locks, SKIP LOCKED,
state re-checked under the lock), and a killed worker loses nothing: the state lives in
PostgreSQL.
"""

from __future__ import annotations

import logging
import time

from chat_service.commerce.services.disputes import disputes_escalate_overdue
from chat_service.commerce.services.offers import offers_expire_due
from chat_service.machinery.worker import Job, register
from orders_bridge.config import outbox_config
from orders_bridge.delivery import outbox_deliver_due, transport_from_settings

log = logging.getLogger(__name__)

OUTBOX_INTERVAL_S = 1.0
OFFERS_INTERVAL_S = 30.0
DISPUTES_INTERVAL_S = 60.0


def outbox_deliver() -> None:
    config = outbox_config()  # read per run: a bad value fails the run, visibly, every time
    transport = transport_from_settings(config)
    deadline = time.monotonic() + OUTBOX_INTERVAL_S
    while True:
        counts = outbox_deliver_due(transport=transport, batch=config.batch, config=config)
        if counts.claimed:
            log.info(
                "outbox pass delivered=%s retrying=%s failed=%s superseded=%s",
                counts.delivered,
                counts.retrying,
                counts.failed,
                counts.superseded,
            )
        if counts.claimed < config.batch or time.monotonic() >= deadline:
            return


def offers_expire() -> None:
    expired = offers_expire_due()
    if expired:
        log.info("offers expired count=%s", expired)


def disputes_escalate() -> None:
    escalated = disputes_escalate_overdue()
    if escalated:
        log.info("disputes escalated count=%s", escalated)


OUTBOX_JOB = register(Job("orders.outbox_deliver", OUTBOX_INTERVAL_S, outbox_deliver))
OFFERS_JOB = register(Job("orders.offers_expire", OFFERS_INTERVAL_S, offers_expire))
DISPUTES_JOB = register(Job("orders.disputes_escalate", DISPUTES_INTERVAL_S, disputes_escalate))
