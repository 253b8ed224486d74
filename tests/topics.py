"""What the broadcast broker leaves in Redis: the topics some process is subscribed to.

A process subscribes to a topic (``<prefix>:t.<order_id>``, ``u.<user_id>``,
``p.<seller_id>``) while one of its sockets needs it (chat_service.machinery.broadcast); a
subscription lives with the process's connection, so a killed process leaves none.
"""

from __future__ import annotations

import redis
from django.conf import settings


def topic_residue(client: redis.Redis, pattern: str = "*", *, prefix: str | None = None) -> list[str]:
    """Topics matching ``pattern`` that some process is still subscribed to."""
    prefix = prefix or settings.REDIS_PREFIX
    channels = client.pubsub_channels(f"{prefix}:{pattern}")
    return sorted(c.decode().removeprefix(f"{prefix}:") for c in channels)
