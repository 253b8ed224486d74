"""The presence store: one interface, a Redis and a memory implementation.

Two things live here, both keyed by user id:

* **The connection registry.** Each live WebSocket is an entry ``(user_id, conn_id)``
  that expires ``ttl_s`` after it was last touched. The supervisor of each process
  touches its sockets' entries well inside the TTL, so a process that dies without
  running its disconnect handlers (kill -9) loses its entries within ``ttl_s``. Counting
  live entries gives the per-user connection cap.
* **The presence status** derived from it: ``online`` or ``offline``, a ``last_seen``
  time for offline users and a ``version`` that grows with every transition.

Invariants (both implementations; in Redis each operation is one Lua script, so they
hold across processes):

* A user turns online in the same atomic step that adds their first live entry, and
  only that caller is told so (``Opened.came_online``).
* A user turns offline only in ``offline_claim``, and only once no live entry has been
  seen for the grace period: after the last entry was *removed* (a closed tab) the
  grace runs from the removal; after the last entry *expired* (a killed process) the
  expiry itself was the wait. While a user is online with no live entry they stay in
  the "due" index until a claim flips them or a new connection keeps them online.
* ``offline_claim`` is a compare-and-set: of any number of concurrent callers (the grace
  timer of the closing process, the sweep of every process) exactly one gets the
  transition back, so exactly one presence.changed is pushed per transition.
* Nothing outlives its use: connection sets expire with their newest entry, the due
  index holds only online users, and an offline user's status (kept for last_seen)
  expires after ``last_seen_ttl_s``.

Times are milliseconds since the epoch of the store's clock (Redis' TIME in Redis).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PresenceState:
    online: bool
    last_seen_ms: int | None  # when the user was last known connected; None while online
    # Grows with every transition, also across a loss of the stored state: the time of
    # the transition in ms, or the previous version + 1 if that is larger. 0 = never seen.
    version: int


UNKNOWN = PresenceState(online=False, last_seen_ms=None, version=0)


@dataclass(frozen=True, slots=True)
class Opened:
    count: int  # the user's live connections including the new one
    came_online: PresenceState | None  # the new state if this call turned the user online


@dataclass(frozen=True, slots=True)
class Closed:
    count: int  # the user's remaining live connections
    offline_due_in_s: float | None  # when the last connection went: check offline after this


@dataclass(frozen=True, slots=True)
class Claim:
    went_offline: PresenceState | None  # the new state if this call turned the user offline
    retry_in_s: float | None  # still online with no connection, grace not over: ask again then


class PresenceStore(Protocol):
    async def connection_open(self, user_id: str, conn_id: str, *, ttl_s: float) -> Opened:
        """Register a live connection; the user is online from now on."""

    async def connection_close(self, user_id: str, conn_id: str, *, grace_s: float) -> Closed:
        """Forget a connection. Removing the last one starts the grace period."""

    async def connections_touch(self, entries: Iterable[tuple[str, str]], *, ttl_s: float) -> list[tuple[str, str]]:
        """Extend the life of registered connections. Never registers one: returns the
        entries that were not registered (any more) for the caller to decide about."""

    async def connected(self, user_ids: Sequence[str]) -> set[str]:
        """The users among ``user_ids`` with a live connection now."""

    async def connection_count(self, user_id: str) -> int:
        """The user's live (unexpired) connection count."""

    async def presence_get(self, user_ids: Sequence[str]) -> dict[str, tuple[PresenceState, bool]]:
        """Each user's state, and whether an offline claim is due for them (the state
        says online but no connection has been seen for the grace period: a crashed
        process not swept yet)."""

    async def offline_claim(self, user_id: str, *, last_seen_ttl_s: float) -> Claim:
        """Turn the user offline if they are online, have no live connection and their
        grace is over. Atomic: of concurrent callers, one gets ``went_offline``."""

    async def offline_due(self, *, limit: int) -> list[str]:
        """Users whose offline claim is due now (at most ``limit``)."""


@lru_cache(maxsize=1)
def get_presence_store() -> PresenceStore:
    from chat_service.machinery.redis_client import redis_enabled

    if redis_enabled():
        from chat_service.machinery.presence_store.redis_store import RedisPresenceStore

        return RedisPresenceStore()
    from chat_service.machinery.presence_store.memory import MemoryPresenceStore

    return MemoryPresenceStore()
