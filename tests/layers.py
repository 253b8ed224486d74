"""The channel layer as tests see it: what it leaves in Redis, and the core layer on demand.

The service runs on the pub/sub layer by default (CHANNEL_LAYER=pubsub) and supports the
core layer; both keep group membership differently:

* core: a sorted set per group (``<prefix>:asgi:group:<group>``) of channel names;
* pub/sub: a subscription per group and process (``<prefix>:asgi__group__<group>``),
  plus one per socket for its own channel.

``group_residue`` reads either, so a "nothing is left behind" test holds for the layer
in use. Tests that inject faults into the core layer's data (taking a member out of a
group's sorted set) run that layer explicitly with ``core_layer``/``CORE_LAYER_ENV``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings
from django.test import override_settings

CORE_BACKEND = "channels_redis.core.RedisChannelLayer"
CORE_LAYER_ENV = {"CHANNEL_LAYER": "core"}  # for daphne processes started by a test


def layer_is_core() -> bool:
    return settings.CHANNEL_LAYERS["default"]["BACKEND"] == CORE_BACKEND


def layer_prefix() -> str:
    return settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]


def group_residue(client: redis.Redis, group_pattern: str = "*") -> list[str]:
    """Groups matching ``group_pattern`` that still have members in Redis."""
    prefix = layer_prefix()
    if layer_is_core():
        keys = client.scan_iter(match=f"{prefix}:group:{group_pattern}", count=1000)
        return sorted(k.decode() for k in keys)
    return sorted(c.decode() for c in client.pubsub_channels(f"{prefix}__group__{group_pattern}"))


def channel_residue(client: redis.Redis) -> list[str]:
    """Sockets' own channels still known to Redis (pub/sub: subscribed; core: queued)."""
    prefix = layer_prefix()
    if layer_is_core():
        return sorted(k.decode() for k in client.scan_iter(match=f"{prefix}specific*", count=1000))
    return sorted(c.decode() for c in client.pubsub_channels(f"{prefix}specific*"))


@contextmanager
def core_layer() -> Iterator[None]:
    """This process's channel layer is the core layer inside the block."""
    with override_settings(CHANNEL_LAYERS={"default": settings.REDIS_LAYERS["core"]}):
        yield
