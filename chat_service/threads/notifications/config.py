"""The notification settings (``settings.NOTIFY``, read from the environment in
chat_service/settings.py; see docs/operations.md), as one typed value read on use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat_service.machinery.env import ConfigError


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    webhook_url: str | None  # None: no push channel
    signing_secret: str  # NOTIFY_SECRET, else BRIDGE_SECRET
    digest_delay_s: float
    offer_reminder_lead_s: float
    dispute_reminder_lead_s: float
    timeout_s: float
    lease_s: float
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    batch: int
    email_from: str


def notify_config() -> NotifyConfig:
    raw: dict[str, Any] = settings.NOTIFY
    url = raw.get("WEBHOOK_URL") or None
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"NOTIFY_WEBHOOK_URL must be an http(s) URL, got {url!r}")
    timeout_s, lease_s = float(raw["TIMEOUT_S"]), float(raw["LEASE_S"])
    if lease_s <= timeout_s:
        raise ConfigError(f"NOTIFY_LEASE_S ({lease_s}) must be longer than NOTIFY_TIMEOUT_S ({timeout_s})")
    return NotifyConfig(
        webhook_url=url,
        signing_secret=raw.get("SECRET") or settings.BRIDGE["SECRET"],
        digest_delay_s=float(raw["DIGEST_DELAY_S"]),
        offer_reminder_lead_s=float(raw["OFFER_REMINDER_LEAD_S"]),
        dispute_reminder_lead_s=float(raw["DISPUTE_REMINDER_LEAD_S"]),
        timeout_s=timeout_s,
        lease_s=lease_s,
        max_attempts=int(raw["MAX_ATTEMPTS"]),
        backoff_base_s=float(raw["BACKOFF_BASE_S"]),
        backoff_max_s=float(raw["BACKOFF_MAX_S"]),
        batch=int(raw["BATCH"]),
        email_from=str(raw["EMAIL_FROM"]),
    )
