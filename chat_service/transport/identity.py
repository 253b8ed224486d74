"""Who is calling: marketplace tokens and same-site sessions.

The marketplace mints a short-lived JWT (HS256, ``CHAT_TOKEN_SECRET``) with the claims
``sub`` (user id), ``name`` and ``exp``. Same-site pages (the embedded demo) may instead
carry a Django session holding the same identity under ``SESSION_KEY``. The service never
stores passwords: an ``Identity`` is only what a valid token or session says.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from django.conf import settings
from django.http import HttpRequest

from chat_service.machinery.db import db_call
from chat_service.protocol.frames import ID_RE

SESSION_KEY = "chat_identity"
ALGORITHM = "HS256"
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]{1,189}\Z")


@dataclass(frozen=True, slots=True)
class Identity:
    id: str
    name: str
    expires_at: float | None  # unix time; None for sessions
    # The optional ``email`` claim: where notification e-mail goes (docs/protocol.md).
    email: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


class TokenError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "missing", "invalid" or "expired"


def token_mint(
    *, user_id: str, name: str, ttl_s: int = 3600, secret: str | None = None, email: str | None = None
) -> str:
    """Mint a token the way the marketplace does (the demo and tests use this)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "name": name, "iat": now, "exp": now + ttl_s}
    if email is not None:
        claims["email"] = email
    return jwt.encode(claims, secret or settings.CHAT_TOKEN_SECRET, algorithm=ALGORITHM)


def token_verify(token: str | None) -> Identity:
    """Validate a token; raise TokenError("missing"|"invalid"|"expired")."""
    if not token:
        raise TokenError("missing")
    try:
        claims = jwt.decode(
            token,
            settings.CHAT_TOKEN_SECRET,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("expired") from None
    except jwt.PyJWTError:
        raise TokenError("invalid") from None
    sub, name = claims.get("sub"), claims.get("name", "")
    # User ids name channel-layer groups, so they share the protocol's id format.
    if not isinstance(sub, str) or not ID_RE.match(sub) or not isinstance(name, str) or len(name) > 200:
        raise TokenError("invalid")
    email = claims.get("email")
    # A malformed address is ignored (no e-mail), never a reason to refuse the token.
    if not isinstance(email, str) or not EMAIL_RE.match(email):
        email = None
    return Identity(id=sub, name=name or sub, expires_at=float(claims["exp"]), email=email)


def identity_from_session(session: Any) -> Identity | None:
    data = session.get(SESSION_KEY) if session is not None else None
    if isinstance(data, dict) and isinstance(data.get("id"), str) and ID_RE.match(data["id"]):
        return Identity(id=data["id"], name=str(data.get("name") or data["id"]), expires_at=None)
    return None


def identity_from_request(request: HttpRequest) -> Identity:
    """HTTP: ``Authorization: Bearer <token>``, else the session. Raises TokenError."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise TokenError("invalid")
        return token_verify(token.strip())
    session_identity = identity_from_session(getattr(request, "session", None))
    if session_identity is not None:
        return session_identity
    raise TokenError("missing")


class IdentityMiddleware:
    """ASGI middleware for the WebSocket: puts ``identity`` (or ``identity_error``) in scope.

    A socket with ``?token=`` (the marketplace's widget) is judged by its token alone and
    goes straight to the consumer: no cookie parsing, and no session wrapper around every
    frame it is sent. A socket without one (a same-site page) goes through Channels'
    session middleware and is judged by its session.

    The consumer, not this middleware, refuses a bad identity, so that it can close with
    a close code the client understands instead of a bare handshake failure.
    """

    def __init__(self, app: Any) -> None:
        from channels.sessions import SessionMiddlewareStack

        self.app = app
        self.with_session = SessionMiddlewareStack(_SessionIdentity(app))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("token") or [None])[0]
        if token is None:
            return await self.with_session(scope, receive, send)
        scope = dict(scope)
        scope["identity"], scope["identity_error"] = None, None
        try:
            scope["identity"] = token_verify(token)
        except TokenError as exc:
            scope["identity_error"] = exc.reason
        return await self.app(scope, receive, send)


class _SessionIdentity:
    """The identity a same-site page's session holds (inside the session middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        scope["identity"], scope["identity_error"] = None, None
        session = scope.get("session")
        identity = await db_call(identity_from_session, session) if session is not None else None
        if identity is None:
            scope["identity_error"] = "missing"
        scope["identity"] = identity
        return await self.app(scope, receive, send)
