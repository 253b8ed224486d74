"""Seller presence: the transitions, the snapshot and the presence.changed pushes.

The state lives in the presence store (``chat_service.machinery.presence_store``); this module turns the
store's transitions into pushes and its states into the wire shape. Callers:

* ``ChatConsumer`` on connect (``presence_connection_open``) and on disconnect
  (``presence_connection_close``; it hands the returned grace to the supervisor, which
  calls ``presence_offline_check`` when it ends),
* the supervisor of every web process (``presence_sweep``, every PRESENCE_SWEEP_S; and
  ``presence_connection_open`` again for a live socket whose entry the store lost),
* presence.subscribe and GET /api/presence/ (``presence_snapshot``).

Invariants:
* A push happens only for a transition that this caller made in the store (the store's
  compare-and-set), so every transition is pushed exactly once however many processes
  sweep at the same time. Each push carries the state's ``version``; sockets drop a push
  that is not newer than what they have, so a reordered or repeated push never shows a
  stale state.
* Pushes go to the topic ``p.<seller_id>`` only: a transition costs work in proportion
  to the processes with subscribers of that seller, and each fans it out to its own.
  Only a seller (see presence.selectors) can be subscribed to, so a push about anyone
  else reaches nobody, and a snapshot of such an id reveals nothing. A push carries no
  ``typical_reply_s`` (the snapshot does): a transition reads nothing from the database.
* A snapshot never shows a seller online whose connections all expired: such states
  are claimed (and pushed) on read instead of waiting for the next sweep.
* Presence is best effort (Redis holds nothing we cannot lose): a failing push is
  logged and swallowed; the next snapshot is correct.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from chat_service import fanout
from chat_service.machinery.db import db_call
from chat_service.machinery.presence_store import Closed, PresenceState, get_presence_store
from chat_service.protocol import frames
from presence import selectors

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
SWEEP_MAX_BATCHES = 20
_HIDDEN = PresenceState(online=False, last_seen_ms=None, version=0)


@dataclass(frozen=True, slots=True)
class SellerPresence:
    seller_id: str
    state: PresenceState
    typical_reply_s: int | None
    visible: bool  # False: not a seller; the state says nothing about them

    @property
    def last_seen(self) -> datetime | None:
        return _moment(self.state.last_seen_ms)


def _moment(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _chat() -> dict[str, Any]:
    return settings.CHAT


async def presence_connection_open(*, user_id: str, conn_id: str) -> int:
    """Register a live connection; push "online" if it is the user's first. Returns the
    user's live connection count (for the per-user cap). Does not validate."""
    opened = await get_presence_store().connection_open(user_id, conn_id, ttl_s=_chat()["CONNECTION_TTL_S"])
    if opened.came_online is not None:
        await _publish(user_id, opened.came_online)
    return opened.count


async def presence_connection_close(*, user_id: str, conn_id: str) -> Closed:
    """Forget a connection. When it was the user's last, ``offline_due_in_s`` says when
    to run ``presence_offline_check`` (the grace period: a reload pushes nothing)."""
    return await get_presence_store().connection_close(user_id, conn_id, grace_s=_chat()["PRESENCE_GRACE_S"])


async def presence_offline_check(*, user_id: str) -> float | None:
    """Turn the user offline (and push it) if their grace is over with no connection.
    Returns the seconds to wait before asking again, or None when nothing is pending."""
    claim = await get_presence_store().offline_claim(user_id, last_seen_ttl_s=_chat()["PRESENCE_LAST_SEEN_TTL_S"])
    if claim.went_offline is not None:
        await _publish(user_id, claim.went_offline)
    return claim.retry_in_s


async def presence_sweep(*, limit: int = SWEEP_BATCH) -> int:
    """Turn offline every user whose connections all expired (a killed process) or whose
    grace ended unobserved. Safe to run in any number of processes at once. Returns the
    number of transitions this call made (and pushed)."""
    store = get_presence_store()
    flipped = 0
    # Every claim takes its user out of the due range (flipped, or rescheduled to a
    # future due time), so each batch makes progress; the cap bounds one sweep's work.
    for _ in range(SWEEP_MAX_BATCHES):
        due = await store.offline_due(limit=limit)
        for user_id in due:
            claim = await store.offline_claim(user_id, last_seen_ttl_s=_chat()["PRESENCE_LAST_SEEN_TTL_S"])
            if claim.went_offline is not None:
                flipped += 1
                await _publish(user_id, claim.went_offline)
        if len(due) < limit:
            break
    return flipped


async def presence_visible(*, seller_ids: list[str]) -> set[str]:
    """The ids among ``seller_ids`` whose presence may be shown (sellers)."""
    return await db_call(selectors.sellers_among, user_ids=seller_ids)


async def presence_snapshot(*, seller_ids: list[str], visible: set[str] | None = None) -> list[SellerPresence]:
    """The current indicator of each id, in order. ``visible`` (from ``presence_visible``)
    saves its query when the caller already has it. Expects validated ids."""
    if visible is None:
        visible = await presence_visible(seller_ids=seller_ids)
    shown = [i for i in seller_ids if i in visible]
    store = get_presence_store()
    states = await store.presence_get(shown)
    stale = [i for i, (_, due) in states.items() if due]
    for user_id in stale:
        await presence_offline_check(user_id=user_id)
    current = {i: state for i, (state, _) in states.items()}
    if stale:
        current.update({i: state for i, (state, _) in (await store.presence_get(stale)).items()})
    replies = await db_call(selectors.typical_reply_seconds, seller_ids=shown) if shown else {}
    return [
        SellerPresence(i, current[i], replies.get(i), True) if i in visible else SellerPresence(i, _HIDDEN, None, False)
        for i in seller_ids
    ]


async def _publish(user_id: str, state: PresenceState) -> None:
    """Push a transition: one publish, no database. Only a visible seller's topic can
    have subscribers (presence.subscribe checks), so a push about anyone else reaches
    nobody; the typical reply time stays with the snapshot (it changes over days, and
    reading it per transition made every first connect of a user a database query)."""
    try:
        wire = frames.presence_wire(online=state.online, last_seen=_moment(state.last_seen_ms))
        await fanout.publish(fanout.presence_changed(seller_id=user_id, version=state.version, wire=wire))
    except Exception:  # noqa: BLE001 - see the module docstring
        log.exception("presence push failed user=%s online=%s", user_id, state.online)
