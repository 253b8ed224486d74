"""chat_service.transport.http.pages over Django's test client (no browser): the demo login and its gate,
the pages' redirects, the embed example's token, and the static file view."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils.http import http_date

from chat_service import demo_data
from chat_service.transport.identity import SESSION_KEY, token_verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_login(settings) -> None:
    settings.DEMO_LOGIN = True  # CHAT_DEMO_LOGIN=1


def test_the_demo_login_is_off_without_debug_or_chat_demo_login(client: Client, settings) -> None:
    settings.DEMO_LOGIN = False
    assert client.get("/login/").status_code == 404
    assert client.post("/login/", {"user_id": demo_data.BUYER.id}).status_code == 404


def test_signing_in_as_the_demo_buyer_stores_the_identity_and_opens_manage_orders(
    client: Client, demo_login: None
) -> None:
    page = client.get("/login/")
    assert page.status_code == 200
    assert demo_data.SELLERS[0].name in page.content.decode()
    response = client.post("/login/", {"user_id": demo_data.BUYER.id})
    assert response.status_code == 302 and response["Location"] == "/orders/"
    assert client.session[SESSION_KEY] == {"id": demo_data.BUYER.id, "name": demo_data.BUYER.name}
    assert client.get("/orders/").status_code == 200


def test_a_seller_lands_on_the_console_and_foreign_next_urls_are_ignored(client: Client, demo_login: None) -> None:
    seller = demo_data.SELLERS[0]
    response = client.post("/login/", {"user_id": seller.id, "next": "//evil.example/"})
    assert response["Location"] == "/console/"
    response = client.post("/login/", {"user_id": seller.id, "next": "/orders/"})
    assert response["Location"] == "/orders/"


def test_an_unknown_user_cannot_sign_in(client: Client, demo_login: None) -> None:
    response = client.post("/login/", {"user_id": "mallory"})
    assert response.status_code == 400
    assert SESSION_KEY not in client.session


def test_pages_send_the_anonymous_to_the_login(client: Client) -> None:
    for path in ("/orders/", "/console/", "/embed/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == f"/login/?next={path}"


def test_logout_forgets_the_identity(client: Client, demo_login: None) -> None:
    client.post("/login/", {"user_id": demo_data.BUYER.id})
    assert client.post("/logout/").status_code == 302
    assert SESSION_KEY not in client.session
    assert client.get("/logout/").status_code == 405


def test_the_embed_example_mints_a_token_for_the_signed_in_user_only(client: Client, demo_login: None) -> None:
    client.post("/login/", {"user_id": demo_data.BUYER.id})
    html = client.get("/embed/").content.decode()
    token = re.search(r'src="/static/chat/embed.js" data-token="([^"]+)"', html).group(1)
    assert token_verify(token).id == demo_data.BUYER.id


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("chat/embed.js", "text/javascript"),
        ("chat/order-chat.js", "text/javascript"),
        ("chat/chat.css", "text/css"),
    ],
)
def test_static_files_are_served_with_their_type_and_cache_headers(
    client: Client, path: str, content_type: str
) -> None:
    response = client.get(f"/static/{path}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert response["Cache-Control"] == "public, max-age=300"
    assert b"".join(response.streaming_content)
    again = client.get(f"/static/{path}", HTTP_IF_MODIFIED_SINCE=response["Last-Modified"])
    assert again.status_code == 304


def test_static_files_outside_the_static_directories_are_not_served(client: Client) -> None:
    for path in (
        "/static/../settings.py",
        "/static/chat/../../settings.py",
        "/static/chat/missing.js",
        "/static/%2e%2e/chat_service/settings.py",
    ):
        assert client.get(path).status_code == 404, path
    assert client.get("/static/chat/embed.js", HTTP_IF_MODIFIED_SINCE=http_date(0)).status_code == 200
