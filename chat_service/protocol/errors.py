"""The domain's errors.

Every refusal the service makes is a ``ChatError`` subclass with a stable ``code`` (the
contract's error codes), a ``retryable`` flag and a message that is safe to show a user.
The HTTP layer maps them to a 4xx JSON body, the socket to a reply or error frame.
Anything else that escapes a handler is a bug: it is logged and answered as ``internal``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ChatError(Exception):
    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "Something went wrong."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        body.update(self.details)
        return body


class BadRequest(ChatError):
    code = "bad_request"
    http_status = 400
    default_message = "The request is malformed."


class UnknownType(ChatError):
    code = "unknown_type"
    http_status = 400
    default_message = "Unknown frame type."


class TooLarge(ChatError):
    code = "too_large"
    http_status = 413
    default_message = "The request is too large."


class Unauthorized(ChatError):
    code = "unauthorized"
    http_status = 401
    default_message = "Sign in again: the token is missing, invalid or expired."


class Forbidden(ChatError):
    code = "forbidden"
    http_status = 403
    default_message = "You are not allowed to do that."


class NotFound(ChatError):
    code = "not_found"
    http_status = 404
    default_message = "Not found."


class InvalidState(ChatError):
    code = "invalid_state"
    http_status = 409
    default_message = "That is not possible in the current state."


class RateLimited(ChatError):
    code = "rate_limited"
    http_status = 429
    retryable = True
    default_message = "You are sending too fast. Wait a moment and try again."


class Internal(ChatError):
    code = "internal"
    http_status = 500
    retryable = True
    default_message = "Something went wrong on our side. Please try again."
