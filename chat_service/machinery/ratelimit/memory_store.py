"""In-process token buckets (embedded default; one process only)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chat_service.machinery.ratelimit import Decision


class MemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)
        self._lock = threading.Lock()

    def hit_sync(self, key: str, *, limit: int, window_s: float) -> Decision:
        rate = limit / window_s
        with self._lock:
            now = self._clock()
            tokens, updated = self._buckets.get(key, (float(limit), now))
            tokens = min(float(limit), tokens + (now - updated) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return Decision(True, 0.0)
            self._buckets[key] = (tokens, now)
            return Decision(False, (1.0 - tokens) / rate)

    def prune(self, *, idle_s: float) -> None:
        """Forget buckets untouched for ``idle_s`` (they would be full again anyway)."""
        with self._lock:
            cutoff = self._clock() - idle_s
            for bucket in [k for k, (_, updated) in self._buckets.items() if updated < cutoff]:
                del self._buckets[bucket]

    async def hit(self, key: str, *, limit: int, window_s: float) -> Decision:
        return self.hit_sync(key, limit=limit, window_s=window_s)
