"""The bridge's configuration, as the bridge's code reads it.

The shared secrets and the signature window come from ``settings.BRIDGE`` (environment
variables BRIDGE_SECRET, BRIDGE_SECRET_PREVIOUS, BRIDGE_WINDOW_S), which refuses at
start-up, with DEBUG off, a secret that is unset, the development default or short.
The outbox's settings below are read from the environment on use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat_service.machinery.env import ConfigError, env_float, env_int, env_str
from chat_service.machinery.signatures import DEFAULT_WINDOW_S


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    secret: str  # signs what we send; first of the accepted ones
    previous_secret: str | None
    window_s: int

    @property
    def accepted_secrets(self) -> list[str]:
        """Secrets a webhook may be signed with: current first, then the previous one."""
        return [self.secret] + ([self.previous_secret] if self.previous_secret else [])


def bridge_config() -> BridgeConfig:
    bridge: dict[str, Any] = settings.BRIDGE
    return BridgeConfig(
        secret=bridge["SECRET"],
        previous_secret=bridge.get("SECRET_PREVIOUS") or None,
        window_s=int(bridge.get("WINDOW_S") or DEFAULT_WINDOW_S),
    )


# --- Out: the outbox and the order system (orders_bridge.delivery, .transport) -----------------
#
#     ORDER_SYSTEM_URL              where actions are POSTed; unset: the built-in local order
#                                   system applies them (orders_bridge.local_order_system)
#     ORDER_SYSTEM_TIMEOUT_S        one request's timeout (5)
#     ORDERS_OUTBOX_LEASE_S         how long a claimed row is hidden from other workers (60);
#                                   must be longer than the timeout
#     ORDERS_OUTBOX_MAX_ATTEMPTS    attempts before a row is marked failed (12)
#     ORDERS_OUTBOX_BACKOFF_BASE_S  retry n waits base·2^n, jittered to half..full (1)
#     ORDERS_OUTBOX_BACKOFF_MAX_S   and at most this (3600)
#     ORDERS_OUTBOX_BATCH           rows per delivery pass (50)


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    order_system_url: str | None
    # Signs outbound requests: BRIDGE_SECRET (bridge_config().secret); None for the local system.
    signing_secret: str | None
    timeout_s: float
    # A worker killed mid-delivery leaves its row to be retried when the lease ends. Longer
    # than the timeout, or a slow request could overlap another worker's retry of the row.
    lease_s: float
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    batch: int


def outbox_config() -> OutboxConfig:
    url = env_str("ORDER_SYSTEM_URL")
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"ORDER_SYSTEM_URL must be an http(s) URL, got {url!r}")
    timeout_s = env_float("ORDER_SYSTEM_TIMEOUT_S", 5.0, minimum=0.1)
    lease_s = env_float("ORDERS_OUTBOX_LEASE_S", 60.0, minimum=0.5)
    if lease_s <= timeout_s:
        raise ConfigError(f"ORDERS_OUTBOX_LEASE_S ({lease_s}) must be longer than ORDER_SYSTEM_TIMEOUT_S ({timeout_s})")
    base_s = env_float("ORDERS_OUTBOX_BACKOFF_BASE_S", 1.0, minimum=0.001)
    return OutboxConfig(
        order_system_url=url,
        signing_secret=bridge_config().secret if url else None,
        timeout_s=timeout_s,
        lease_s=lease_s,
        max_attempts=env_int("ORDERS_OUTBOX_MAX_ATTEMPTS", 12, minimum=1),
        backoff_base_s=base_s,
        backoff_max_s=env_float("ORDERS_OUTBOX_BACKOFF_MAX_S", 3600.0, minimum=base_s),
        batch=env_int("ORDERS_OUTBOX_BATCH", 50, minimum=1),
    )
