"""The bridge's request signature, both ways (webhooks in, actions and notifications out).

    X-Bridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

Pure: no settings, no clock (``now`` is passed in), so every case is tested without either.

Invariants:
* The MAC covers the timestamp and the exact bytes on the wire, so neither can be changed
  without the secret; a captured request can be replayed only inside the window, and the
  receiver's inbox (event_id) makes such a replay a no-op.
* The window applies both ways (default 300 s): an old timestamp is a replay, one from the
  future is a skewed or forged clock.
* Comparison is constant-time (``hmac.compare_digest``) against every accepted secret, so
  a secret can be rotated without downtime: the receiver accepts the current and the
  previous one while senders switch over.
* The timestamp is judged only after a MAC matched: "expired" is said only about
  authentic requests and tells a forger nothing.
* A header may carry several ``v1`` values (a sender signing with old and new secret
  during rotation); one match is enough. Unknown keys are ignored (future schemes).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from enum import StrEnum

HEADER = "X-Bridge-Signature"
SCHEME = "v1"
DEFAULT_WINDOW_S = 300
MAX_HEADER_CHARS = 1024
_V1_RE = re.compile(r"[0-9a-fA-F]{64}")  # SHA-256, hex
_T_RE = re.compile(r"[0-9]{1,12}")  # unix seconds until the year 33658; bounds int()


class SignatureFailure(StrEnum):
    MISSING = "missing"
    MALFORMED = "malformed"
    INVALID = "invalid"
    EXPIRED = "expired"


class SignatureError(Exception):
    """A request whose signature cannot be trusted; ``reason`` says which check failed."""

    def __init__(self, reason: SignatureFailure) -> None:
        self.reason = reason
        super().__init__(f"signature {reason.value}")


def sign(secret: str, body: bytes, t: int) -> str:
    """The header value for ``body`` sent at unix time ``t``."""
    return f"t={t},{SCHEME}={_mac(secret, body, t)}"


def verify(
    header: str | None, body: bytes, secrets: Iterable[str], now: float, window_s: int = DEFAULT_WINDOW_S
) -> int:
    """Check ``header`` against ``body`` and any of ``secrets``; the signed timestamp, or
    SignatureError (missing, malformed, invalid, expired)."""
    keys = [s for s in secrets if s]
    if not keys:
        raise ValueError("verify needs at least one non-empty secret")
    if header is None or not header.strip():
        raise SignatureError(SignatureFailure.MISSING)
    t, candidates = _parse(header)
    # Every candidate is compared with every key, so the time taken does not depend on
    # which (if any) matched.
    matched = False
    for key in keys:
        expected = _mac(key, body, t)
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate.lower())
    if not matched:
        raise SignatureError(SignatureFailure.INVALID)
    if abs(now - t) > window_s:
        raise SignatureError(SignatureFailure.EXPIRED)
    return t


def _mac(secret: str, body: bytes, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > MAX_HEADER_CHARS:
        raise SignatureError(SignatureFailure.MALFORMED)
    t: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(SignatureFailure.MALFORMED)
        if key == "t":
            if t is not None or not _T_RE.fullmatch(value):
                raise SignatureError(SignatureFailure.MALFORMED)
            t = int(value)
        elif key == SCHEME:
            if not _V1_RE.fullmatch(value):
                raise SignatureError(SignatureFailure.MALFORMED)
            candidates.append(value)
    if t is None or not candidates:
        raise SignatureError(SignatureFailure.MALFORMED)
    return t, candidates
