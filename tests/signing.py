"""An independent check of the bridge's signature scheme, for the tests' local receivers.

Written out here rather than calling chat_service.machinery.signatures.verify, so that a bug in the
service's own signing cannot be hidden by the same bug in its verification."""

import hashlib
import hmac
import time


def signature_ok(secret: str, header: str | None, body: bytes) -> bool:
    """``X-Bridge-Signature: t=<unix>,v1=<hex>`` with v1 = HMAC-SHA256(secret, "<t>." + body), fresh within 300 s."""
    if not header:
        return False
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    expected = hmac.new(secret.encode(), f"{parts.get('t')}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(parts.get("t", "0"))) <= 300
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))
