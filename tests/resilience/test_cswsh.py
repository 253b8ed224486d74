"""Cross-site WebSocket hijacking and forged identities, against a real Daphne.

tests/e2e/test_origin_and_tokens.py covers the basics (a foreign, ``null``, missing and two
look-alike Origins refused with 403; an expired token closed with 4001; a token signed with
another secret, garbage and no token closed with 4500). This module adds what an attacker
tries next:

* more look-alike Origins (prefixes, suffixes, userinfo, path/query/fragment tricks,
  upper case, neighbouring addresses), scheme and port mismatches against an origin listed
  in WS_ALLOWED_ORIGINS, and two Origin headers at once: all refused before a socket exists;
* the session cookie, the credential a hijacking page would ride on: refused from a foreign
  page (socket and HTTP writes), never readable cross-origin, never credentialed by CORS;
* forged tokens (alg=none, a tampered payload, other algorithms, another shared secret,
  missing or malformed claims, not yet valid): the socket is closed with 4500, HTTP is 401
  with a JSON error; a token expiring while connected closes the socket with 4001;
* a token for user A never reaches user B's data, whatever else comes with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from chat_service.threads.models import Event
from chat_service.transport.identity import SESSION_KEY, token_mint
from tests.e2e.servers import DaphneServer, start_blocking
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TIMEOUT_S = 10
WIDGET_ORIGIN = "https://shop.example.com"  # a marketplace page allowed to embed the widget
ALICE, BOB = "cs-alice", "cs-bob"


@pytest.fixture(scope="module")
def server(django_db_setup: None) -> Iterator[DaphneServer]:
    """One server: ALLOWED_HOSTS 127.0.0.1 and localhost, plus the widget's origin; a fast
    supervisor so that a token expiring mid-connection is noticed within a second."""
    server = start_blocking("cswsh", {"WS_ALLOWED_ORIGINS": WIDGET_ORIGIN, "CHAT_SUPERVISOR_TICK_S": "0.5"})
    yield server
    server.cleanup()


def own_origin(server: DaphneServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def handshake(
    server: DaphneServer,
    *,
    token: str | None = None,
    origin: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> tuple[str, Any]:
    """("refused", HTTP status), ("closed", close code) or ("hello", the hello frame)."""
    url = server.ws_url if token is None else f"{server.ws_url}?{urlencode({'token': token})}"
    try:
        async with websockets.connect(url, origin=origin, additional_headers=headers, open_timeout=TIMEOUT_S) as socket:
            try:
                frame = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
            except websockets.ConnectionClosed as exc:
                return "closed", exc.rcvd.code if exc.rcvd is not None else None
            return "hello", frame
    except websockets.InvalidStatus as exc:
        return "refused", exc.response.status_code


# --- Origins ------------------------------------------------------------------------------------

LOOK_ALIKES = [
    "http://evil-127.0.0.1",
    "http://127.0.0.1.evil.com",
    "http://127.0.0.2",
    "http://0.0.0.0",
    "http://[::2]",
    "http://evillocalhost",
    "http://localhost.evil.com:80",
    "http://LOCALHOST.EVIL.COM",
    "http://localhost@evil.com",
    "http://evil.com/localhost",
    "http://evil.com?localhost",
    "http://evil.com#localhost",
    "http://localhost.",
    "https://shop.example.com.evil.com",
    "https://SHOP.EXAMPLE.COM.EVIL.COM",
    "https://evilshop.example.com",
    "https://evil.shop.example.com",
    "https://shop.example.co",
    "file://",
    "chrome-extension://abcdefghijklmnop",
]
MISMATCHES = [
    "http://shop.example.com",  # the allowed origin is https only
    "wss://shop.example.com",
    "ftp://shop.example.com",
    "https://shop.example.com:8443",  # and on its default port only
    "https://shop.example.com:80",
]


@pytest.mark.parametrize("origin", LOOK_ALIKES + MISMATCHES)
async def test_look_alike_or_mismatched_origin_is_refused_before_the_socket_exists(server, origin):
    outcome = await handshake(server, token=token_for(ALICE), origin=origin)
    assert outcome == ("refused", 403), origin


@pytest.mark.parametrize("origin", ["http://127.0.0.1:80.evil.com", "http://localhost:99999", "*", ""])
async def test_malformed_origin_is_refused(server, origin):
    kind, status = await handshake(server, token=token_for(ALICE), origin=origin)
    assert kind == "refused" and 400 <= status < 500, (origin, kind, status)


@pytest.mark.parametrize("order", ["good first", "evil first"])
async def test_two_origin_headers_are_refused(server, order):
    good, evil = own_origin(server), "http://evil.com"
    pair = [good, evil] if order == "good first" else [evil, good]
    kind, status = await handshake(server, token=token_for(ALICE), headers=[("Origin", o) for o in pair])
    assert kind == "refused" and 400 <= status < 500, (pair, kind, status)


@pytest.mark.parametrize("origin", [WIDGET_ORIGIN, WIDGET_ORIGIN + ":443", "http://localhost", "http://127.0.0.1"])
async def test_allowed_origins_get_hello(server, origin):
    """The control: the checks above refuse what they must, not everything."""
    kind, frame = await handshake(server, token=token_for(ALICE), origin=origin)
    assert kind == "hello" and frame["user"]["id"] == ALICE, (origin, kind, frame)


# --- The session cookie ---------------------------------------------------------------------------


def session_cookie(user_id: str) -> str:
    """A Django session holding a same-site page's identity, as the demo login creates it."""
    store = SessionStore()
    store[SESSION_KEY] = {"id": user_id, "name": user_id.title()}
    store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


async def test_session_cookie_opens_a_socket_only_from_an_allowed_page(server):
    cookie = await database_sync_to_async(session_cookie)(BOB)
    kind, frame = await handshake(server, origin=own_origin(server), headers=[("Cookie", cookie)])
    assert kind == "hello" and frame["user"]["id"] == BOB, (kind, frame)  # the control
    for origin in ("http://evil.com", "null", "http://127.0.0.1.evil.com", None):
        assert await handshake(server, origin=origin, headers=[("Cookie", cookie)]) == ("refused", 403), origin


async def test_session_cookie_writes_from_a_foreign_page_are_refused_and_reads_not_shared(server, http):
    order = await database_sync_to_async(make_order)(buyer_id=BOB, seller_id="cs-seller")
    cookie = await database_sync_to_async(session_cookie)(BOB)
    url = f"{server.http_url}/api/threads/{order.pk}/messages/"
    forged = await asyncio.to_thread(
        http,
        "POST",
        url,
        body={"client_msg_id": "csrf-1", "body": "transfer"},
        headers={"Cookie": cookie, "Origin": "http://evil.com", "Referer": "http://evil.com/attack"},
    )
    assert forged.status == 403 and forged.is_json and forged.json["error"]["code"] == "forbidden", forged
    stored = await database_sync_to_async(Event.objects.filter(thread_id=order.pk).count)()
    assert stored == 0
    # A cross-origin read with the cookie is answered, but without CORS headers a browser
    # keeps it from the foreign page; the widget's origin gets CORS, never with credentials.
    for origin, shared in (("http://evil.com", False), (WIDGET_ORIGIN, True)):
        for method in ("GET", "OPTIONS"):
            answer = await asyncio.to_thread(
                http,
                method,
                f"{server.http_url}/api/orders/",
                headers={"Cookie": cookie, "Origin": origin, "Access-Control-Request-Method": "GET"},
            )
            assert answer.status in (200, 204), (origin, method, answer)
            assert answer.headers.get("Access-Control-Allow-Origin") == (origin if shared else None), answer.headers
            assert "Access-Control-Allow-Credentials" not in answer.headers, answer.headers
    mine = await asyncio.to_thread(
        http, "GET", f"{server.http_url}/api/orders/", headers={"Cookie": cookie, "Origin": own_origin(server)}
    )
    assert [o["order_id"] for o in mine.json["orders"]] == [order.pk]  # the control: the cookie works


# --- Forged and broken tokens ---------------------------------------------------------------------


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def tampered(token: str, **claims: Any) -> str:
    """The token with its payload changed and its signature kept."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join([header, b64({**decoded, **claims}), signature])


def claims(sub: Any = ALICE, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "name": "Alice", "iat": now, "exp": now + 3600, **extra}


def forged_tokens() -> dict[str, str]:
    secret = settings.CHAT_TOKEN_SECRET
    now = int(time.time())
    valid_for_bob = token_for(BOB)
    without = {k: v for k, v in claims().items() if k != "exp"}
    return {
        "alg none": jwt.encode(claims(), None, algorithm="none"),
        "alg none, signature kept": ".".join(
            [b64({"alg": "none", "typ": "JWT"}), b64(claims()), valid_for_bob.split(".")[2]]
        ),
        "alg none, no signature": ".".join([b64({"alg": "none", "typ": "JWT"}), b64(claims()), ""]),
        "payload tampered (sub)": tampered(valid_for_bob, sub=ALICE),
        "payload tampered (exp)": tampered(token_for(ALICE, ttl_s=-60), exp=now + 3600),
        "HS512 with the right secret": jwt.encode(claims(), secret, algorithm="HS512"),
        "HS384 with the right secret": jwt.encode(claims(), secret, algorithm="HS384"),
        "signed with the bridge secret": jwt.encode(claims(), settings.BRIDGE["SECRET"], algorithm="HS256"),
        "signed with the Django secret": jwt.encode(claims(), settings.SECRET_KEY, algorithm="HS256"),
        "no exp": jwt.encode(without, secret, algorithm="HS256"),
        "no sub": jwt.encode({k: v for k, v in claims().items() if k != "sub"}, secret, algorithm="HS256"),
        "sub not a string": jwt.encode(claims(sub=12345), secret, algorithm="HS256"),
        "sub with a space": jwt.encode(claims(sub="cs alice"), secret, algorithm="HS256"),
        "sub a path": jwt.encode(claims(sub="../cs-bob"), secret, algorithm="HS256"),
        "sub too long": jwt.encode(claims(sub="a" * 65), secret, algorithm="HS256"),
        "sub empty": jwt.encode(claims(sub=""), secret, algorithm="HS256"),
        "not yet valid (nbf)": jwt.encode(claims(nbf=now + 3600), secret, algorithm="HS256"),
        "name not a string": jwt.encode(claims(name=["Alice"]), secret, algorithm="HS256"),
        "two tokens glued": token_for(ALICE) + "." + token_for(ALICE),
        "truncated signature": token_for(ALICE)[:-4],
    }


with warnings.catch_warnings():  # PyJWT warns that the secret is short for HS384/HS512: it is forged
    warnings.simplefilter("ignore")
    FORGED = forged_tokens()


@pytest.mark.parametrize("name", sorted(FORGED))
async def test_forged_token_closes_the_socket_with_4500(server, name):
    assert await handshake(server, token=FORGED[name], origin=own_origin(server)) == ("closed", 4500), name


@pytest.mark.parametrize("name", sorted(FORGED))
async def test_forged_token_is_401_over_http(server, http, name):
    answer = await asyncio.to_thread(http, "GET", f"{server.http_url}/api/orders/", token=FORGED[name])
    assert answer.status == 401 and answer.is_json and answer.json["error"]["code"] == "unauthorized", (name, answer)


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic Y3MtYWxpY2U6cGFzc3dvcmQ=",
        "Bearer",
        "Bearer ",
        "Token {token}",
        "{token}",
        "Bearer  x.y.z",
    ],
)
async def test_malformed_authorization_header_is_401(server, http, authorization):
    header = authorization.format(token=token_for(ALICE))
    answer = await asyncio.to_thread(http, "GET", f"{server.http_url}/api/orders/", headers={"Authorization": header})
    assert answer.status == 401 and answer.json["error"]["code"] == "unauthorized", (header, answer)


async def test_expired_token_is_401_over_http(server, http):
    answer = await asyncio.to_thread(http, "GET", f"{server.http_url}/api/threads/", token=token_for(ALICE, ttl_s=-30))
    assert answer.status == 401 and answer.json["error"] == {
        "code": "unauthorized",
        "message": "The token has expired.",
    }


@pytest.mark.parametrize("query", ["token=", "access_token={token}", "Token={token}", "token[]={token}"])
async def test_token_anywhere_but_the_token_parameter_counts_as_missing(server, query):
    url_query = query.format(token=token_for(ALICE))
    kind, code = await _handshake_query(server, url_query)
    assert (kind, code) == ("closed", 4500), query


async def _handshake_query(server: DaphneServer, query: str) -> tuple[str, Any]:
    async with websockets.connect(
        f"{server.ws_url}?{query}", origin=own_origin(server), open_timeout=TIMEOUT_S
    ) as socket:
        try:
            frame = await asyncio.wait_for(socket.recv(), TIMEOUT_S)
        except websockets.ConnectionClosed as exc:
            return "closed", exc.rcvd.code if exc.rcvd is not None else None
        return "frame", frame


async def test_token_expiring_while_connected_closes_the_socket_with_4001(server):
    token = token_mint(user_id=ALICE, name="Alice", ttl_s=2)
    url = f"{server.ws_url}?{urlencode({'token': token})}"
    async with websockets.connect(url, origin=own_origin(server), open_timeout=TIMEOUT_S) as socket:
        hello = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
        assert hello["type"] == "hello"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:  # pings keep the socket alive otherwise
                await socket.send(json.dumps({"type": "ping"}))
                await asyncio.wait_for(socket.recv(), TIMEOUT_S)
                await asyncio.sleep(0.2)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


# --- A's token, B's data ----------------------------------------------------------------------------


async def test_a_token_for_alice_never_reaches_bobs_data(server, http):
    bobs = await database_sync_to_async(make_order)(buyer_id=BOB, seller_id="cs-seller", item_title="Bob's secret")
    alices = await database_sync_to_async(make_order)(buyer_id=ALICE, seller_id="cs-seller")
    bob_cookie = await database_sync_to_async(session_cookie)(BOB)
    # Alice's token with Bob's session cookie, a claim naming Bob, and Bob's id in the query.
    disguised = token_mint(user_id=ALICE, name=BOB)
    url = f"{server.ws_url}?{urlencode({'token': disguised, 'user': BOB, 'sub': BOB})}"
    async with websockets.connect(
        url, origin=own_origin(server), additional_headers=[("Cookie", bob_cookie)], open_timeout=TIMEOUT_S
    ) as socket:
        hello = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
        assert hello["user"]["id"] == ALICE, hello
        for frame in (
            {"type": "thread.join", "ref": "j", "order_id": bobs.pk},
            {"type": "message.send", "ref": "m", "order_id": bobs.pk, "client_msg_id": "x", "body": "hi"},
            {"type": "thread.join", "ref": "j2", "order_id": bobs.pk, "user_id": BOB, "as": BOB},
        ):
            await socket.send(json.dumps(frame))
            reply = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
            assert reply["ok"] is False and reply["error"]["code"] == "not_found", (frame, reply)
            assert "secret" not in json.dumps(reply)
        await socket.send(json.dumps({"type": "thread.join", "ref": "own", "order_id": alices.pk}))
        own = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
        assert own["ok"] and own["data"]["order"]["order_id"] == alices.pk  # the control
    # Over HTTP the bearer token decides, whatever cookie comes with it.
    headers = {"Cookie": bob_cookie}
    listed = await asyncio.to_thread(http, "GET", f"{server.http_url}/api/orders/", token=disguised, headers=headers)
    assert [o["order_id"] for o in listed.json["orders"]] == [alices.pk], listed.json
    searched = await asyncio.to_thread(
        http, "GET", f"{server.http_url}/api/orders/?order_id={bobs.pk}", token=disguised, headers=headers
    )
    assert searched.json["orders"] == [], searched.json
    detail = await asyncio.to_thread(
        http, "GET", f"{server.http_url}/api/orders/{bobs.pk}/", token=disguised, headers=headers
    )
    assert detail.status == 404 and detail.json["error"]["code"] == "not_found", detail
    assert b"secret" not in detail.raw and b"secret" not in listed.raw
