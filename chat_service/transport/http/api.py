"""The JSON HTTP API's plumbing: authentication, body parsing and error mapping.

``@json_endpoint`` turns a view ``(request, identity, **kwargs) -> (status, body)`` into
an endpoint that answers every refusal as ``{"error": {"code", "message"}}`` with a 4xx
status. Bearer-token calls are exempt from CSRF (no ambient credential); calls that rely
on the session cookie get Django's CSRF check on unsafe methods.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, overload

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from chat_service.protocol.errors import BadRequest, ChatError, Forbidden, Internal, TooLarge, Unauthorized
from chat_service.protocol.frames import MAX_SEQ, has_lone_surrogate, iso
from chat_service.transport.identity import Identity, TokenError, identity_from_request

log = logging.getLogger(__name__)

View = Callable[..., tuple[int, dict[str, Any]]]
_csrf = CsrfViewMiddleware(lambda request: HttpResponse())


class WireEncoder(DjangoJSONEncoder):
    """JSON of the HTTP API: a datetime that reaches it unformatted is written in the wire's
    one timestamp format (chat_service.protocol.frames.iso), like every other."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return iso(o)
        return super().default(o)


def error_response(error: ChatError, *, status: int | None = None) -> JsonResponse:
    body = {"error": {"code": error.code, "message": error.message, **error.details}}
    response = JsonResponse(body, status=status or error.http_status)
    if error.code == "rate_limited" and "retry_after_s" in error.details:
        response["Retry-After"] = str(max(1, round(float(error.details["retry_after_s"]) + 0.5)))
    return response


def json_endpoint(*methods: str) -> Callable[[View], Callable[..., HttpResponse]]:
    allowed = set(methods)

    def decorate(view: View) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def endpoint(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            return _with_cors(request, _answer(request, **kwargs), methods=allowed)

        def _answer(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if request.method == "OPTIONS":
                return HttpResponse(status=204)  # a CORS preflight; headers added by _with_cors
            if request.method not in allowed:
                response = JsonResponse(
                    {"error": {"code": "method_not_allowed", "message": f"Use {', '.join(sorted(allowed))}."}},
                    status=405,
                )
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            try:
                identity = _authenticate(request)
                status, body = view(request, identity, **kwargs)
            except ChatError as exc:
                return error_response(exc)
            except Exception:  # noqa: BLE001 - a bug is logged, never shown
                log.exception("endpoint %s failed", request.path)
                return error_response(Internal())
            return JsonResponse(body, status=status, encoder=WireEncoder, json_dumps_params={"ensure_ascii": False})

        return endpoint

    return decorate


def _with_cors(request: HttpRequest, response: HttpResponse, *, methods: set[str]) -> HttpResponse:
    """Let pages of WS_ALLOWED_ORIGINS (the marketplace embedding the widget) call the API
    with a bearer token. No credentials: cookies never cross origins."""
    origin = request.headers.get("Origin")
    if origin and origin in settings.CORS_ALLOWED_ORIGINS:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = ", ".join(sorted(methods | {"OPTIONS"}))
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response["Access-Control-Max-Age"] = "600"
    response["Vary"] = "Origin"
    return response


def _authenticate(request: HttpRequest) -> Identity:
    try:
        identity = identity_from_request(request)
    except TokenError as exc:
        raise Unauthorized(
            "The token has expired." if exc.reason == "expired" else Unauthorized.default_message
        ) from None
    if identity.expires_at is None and request.method not in {"GET", "HEAD", "OPTIONS"}:
        # Session (cookie) authentication: guard against cross-site request forgery.
        if _csrf.process_view(request, _no_view, (), {}) is not None:
            raise Forbidden("CSRF check failed: send the X-CSRFToken header.")
    return identity


def json_body(request: HttpRequest) -> dict[str, Any]:
    limit = settings.CHAT["MAX_FRAME_BYTES"]
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest("Invalid Content-Length.") from None
    if declared > limit:
        raise TooLarge(f"The body can be at most {limit} bytes.")
    raw = request.body
    if len(raw) > limit:
        raise TooLarge(f"The body can be at most {limit} bytes.")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, RecursionError):
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    if b"\\u" in raw and has_lone_surrogate(body):  # could be neither stored nor echoed
        raise BadRequest("Text must be valid Unicode: a \\u escape spells a lone surrogate.")
    return body


def _no_view(request: HttpRequest) -> HttpResponse:  # the CSRF check looks only at the request
    raise AssertionError("never called")


@overload
def query_int(request: HttpRequest, name: str, *, default: int, minimum: int = 0, maximum: int = MAX_SEQ) -> int: ...


@overload
def query_int(
    request: HttpRequest, name: str, *, default: None = None, minimum: int = 0, maximum: int = MAX_SEQ
) -> int | None: ...


def query_int(
    request: HttpRequest, name: str, *, default: int | None = None, minimum: int = 0, maximum: int = MAX_SEQ
) -> int | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number.", field=name) from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum} and {maximum}.", field=name)
    return value
