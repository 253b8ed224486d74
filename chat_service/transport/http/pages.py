"""The service's own web pages: the demo login, Manage Orders (buyers), the seller console,
an embedding example, and the static files (ES modules, CSS) the widget is made of.

Pages are thin: they check who is signed in (the session identity under
``identity.SESSION_KEY``) and render a template; everything else happens in the browser
through the public API and the socket, exactly as on a marketplace page that embeds the
widget.

The demo login lets anyone become any demo user, so it is on only with DEBUG (the embedded
demo) or CHAT_DEMO_LOGIN=1 (tests, staging). A marketplace signs its users in itself and
mints tokens (docs/embedding.md); the service never sees a password.

Static files: Daphne serves no files, so ``static_file`` does, in production too, from the
apps' static directories (no collectstatic needed): ``text/javascript`` for modules, a
Last-Modified validator (304 on If-Modified-Since) and a short public cache lifetime so a
deploy is picked up within minutes.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseNotModified
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import http_date
from django.views.decorators.http import require_http_methods, require_POST
from django.views.static import was_modified_since

from chat_service import demo_data
from chat_service.commerce import selectors as commerce_selectors
from chat_service.transport.identity import SESSION_KEY, Identity, identity_from_session, token_mint

STATIC_MAX_AGE_S = 300
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
EMBED_TOKEN_TTL_S = 3600


def demo_login_enabled() -> bool:
    return bool(settings.DEMO_LOGIN)


def _identity(request: HttpRequest) -> Identity | None:
    return identity_from_session(request.session)


def _login_url(next_path: str) -> str:
    return f"{reverse('page-login')}?next={next_path}"


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    """Pick a demo user; the identity is stored in the session (no password: a demo)."""
    if not demo_login_enabled():
        raise Http404("The demo login is off (set CHAT_DEMO_LOGIN=1 or DEBUG=1).")
    if request.method == "POST":
        user = demo_data.USERS.get(request.POST.get("user_id", ""))
        if user is None:
            return render(request, "chat/login.html", _login_context(error="Pick one of the demo users."), status=400)
        request.session.cycle_key()
        request.session[SESSION_KEY] = {"id": user.id, "name": user.name}
        default = "page-orders" if user.id == demo_data.BUYER.id else "page-console"
        target = request.POST.get("next") or ""
        if not target.startswith("/") or target.startswith("//"):
            target = reverse(default)
        return redirect(target)
    return render(request, "chat/login.html", _login_context(next_path=request.GET.get("next", "")))


def _login_context(*, error: str = "", next_path: str = "") -> dict[str, object]:
    return {
        "buyer": demo_data.BUYER,
        "sellers": demo_data.SELLERS,
        "error": error,
        "next": next_path if next_path.startswith("/") and not next_path.startswith("//") else "",
    }


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    # Sockets opened with the old session stay open until they close (see PITFALLS); the
    # page that logs out navigates away, which closes its own.
    request.session.flush()
    return redirect(reverse("page-login"))


def home(request: HttpRequest) -> HttpResponse:
    identity = _identity(request)
    if identity is None:
        return (
            redirect(reverse("page-login"))
            if demo_login_enabled()
            else HttpResponse("Order chat service. See /api/schema/ and docs/embedding.md.", content_type="text/plain")
        )
    return redirect(reverse("page-orders" if identity.id == demo_data.BUYER.id else "page-console"))


def _page(request: HttpRequest, template: str, name: str, **context: object) -> HttpResponse:
    identity = _identity(request)
    if identity is None:
        return redirect(_login_url(reverse(name)))
    context = {
        "identity": identity,
        "pay_url": "",
        "sells": commerce_selectors.user_sells(user_id=identity.id),
        **context,
    }
    return render(request, template, context)


def orders(request: HttpRequest) -> HttpResponse:
    """Manage Orders: the signed-in user's orders as a buyer."""
    return _page(request, "chat/orders.html", "page-orders")


def console(request: HttpRequest) -> HttpResponse:
    """The seller console: inbox and chat."""
    return _page(request, "chat/console.html", "page-console")


def embed_example(request: HttpRequest) -> HttpResponse:
    """A page that embeds the widget the way a marketplace does: with a token it minted for
    the signed-in user (never for anyone else)."""
    identity = _identity(request)
    if identity is None:
        return redirect(_login_url(reverse("page-embed")))
    token = token_mint(user_id=identity.id, name=identity.name, ttl_s=EMBED_TOKEN_TTL_S)
    order = demo_data.CHAT_ORDER
    return render(
        request,
        "chat/embed_example.html",
        {
            "identity": identity,
            "sells": commerce_selectors.user_sells(user_id=identity.id),
            "token": token,
            "order": order,
            "origin": request.build_absolute_uri("/").rstrip("/"),
        },
    )


def static_file(request: HttpRequest, path: str) -> HttpResponseBase:
    """Serve one file of the apps' static directories (Daphne serves none itself)."""
    if request.method not in {"GET", "HEAD"}:
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    if ".." in Path(path).parts or path.startswith("/") or "\x00" in path:
        raise Http404("No such file.")
    found = finders.find(path)
    if not found or not Path(found).is_file():
        raise Http404("No such file.")
    full = Path(found)
    stat = full.stat()
    if not was_modified_since(request.headers.get("If-Modified-Since"), int(stat.st_mtime)):
        response: HttpResponseBase = HttpResponseNotModified()
    else:
        content_type = (
            CONTENT_TYPES.get(full.suffix.lower()) or mimetypes.guess_type(full.name)[0] or "application/octet-stream"
        )
        response = FileResponse(full.open("rb"), content_type=content_type)
        response["Content-Length"] = str(stat.st_size)
    response["Last-Modified"] = http_date(stat.st_mtime)
    response["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE_S}"
    response["X-Content-Type-Options"] = "nosniff"
    # The widget's modules load from marketplace pages on other origins.
    response["Access-Control-Allow-Origin"] = "*"
    return response
