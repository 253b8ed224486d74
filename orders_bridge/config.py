"""The bridge's settings: shared secrets and the signature window.

Interim home: these belong in chat_service/settings.py (``BRIDGE`` below, with the
unsafe-secret check at start-up like SECRET_KEY's). Until then they are read from the
environment through chat_service.env on use; a ``settings.BRIDGE`` dict, when present,
wins (that is how settings.py takes over, and how tests set them).

    BRIDGE_SECRET            the current shared secret (webhooks in, requests out)
    BRIDGE_SECRET_PREVIOUS   also accepted on webhooks while the secret is being rotated
    BRIDGE_WINDOW_S          how far a signed timestamp may be from now, both ways (300)

With DEBUG off, an unset, development-default or short BRIDGE_SECRET is refused
(ConfigError) instead of silently trusting a secret everyone can read in this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat_service.env import ConfigError, env_float, env_int, env_str
from orders_bridge.signatures import DEFAULT_WINDOW_S

DEV_BRIDGE_SECRET = "dev-only-bridge-secret-not-for-production-0000"
MIN_SECRET_CHARS = 32


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
    override: dict[str, Any] = getattr(settings, "BRIDGE", None) or {}
    secret = override.get("SECRET") or env_str("BRIDGE_SECRET") or DEV_BRIDGE_SECRET
    previous = override.get("SECRET_PREVIOUS", env_str("BRIDGE_SECRET_PREVIOUS"))
    window_s = override.get("WINDOW_S") or env_int("BRIDGE_WINDOW_S", DEFAULT_WINDOW_S, minimum=1)
    if not settings.DEBUG and (secret == DEV_BRIDGE_SECRET or len(secret) < MIN_SECRET_CHARS):
        raise ConfigError(
            "DEBUG is off but BRIDGE_SECRET is unset, the development default, or shorter than "
            f"{MIN_SECRET_CHARS} characters. Set it, or set DEBUG=1 for local use."
        )
    return BridgeConfig(secret=secret, previous_secret=previous or None, window_s=int(window_s))


