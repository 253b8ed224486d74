"""The handshake on a real Daphne: Origin check first, then the token.

A page from another origin (or a non-browser client that sends no Origin) is refused
with HTTP 403 before the socket exists. Past the Origin check, a bad token gets an
accepted socket that is closed at once with a close code the client can act on: 4001
(expired: refresh the token and reconnect) or 4500 (invalid: do not retry with it).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import pytest
import websockets

from chat_service.transport.identity import token_mint
from tests.factories import token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TIMEOUT_S = 10


def with_token(ws_url: str, token: str | None) -> str:
    return ws_url if token is None else f"{ws_url}?{urlencode({'token': token})}"


async def first_frame_or_close(url: str, origin: str | None) -> tuple[str, object]:
    """("frame", the first frame), ("closed", close code) or ("open", "...") when the
    accepted socket neither sent a frame nor was closed within TIMEOUT_S."""
    async with websockets.connect(url, origin=origin, open_timeout=TIMEOUT_S) as socket:
        try:
            raw = await asyncio.wait_for(socket.recv(), TIMEOUT_S)
        except websockets.ConnectionClosed as exc:
            return "closed", exc.rcvd.code if exc.rcvd is not None else None
        except TimeoutError:
            return "open", f"no frame and no close within {TIMEOUT_S}s"
        return "frame", json.loads(raw)


@pytest.fixture
def server(module_daphne):
    return module_daphne


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "null", "http://127.0.0.1.evil.example", "https://localhost.evil.example:443", None],
    ids=["foreign", "null", "look-alike", "look-alike-localhost", "missing"],
)
async def test_handshake_from_a_foreign_or_missing_origin_is_refused_with_403(server, origin):
    url = with_token(server.ws_url, token_for("buyer-or"))
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, origin=origin, open_timeout=TIMEOUT_S):
            pass
    assert refused.value.response.status_code == 403


async def test_handshake_from_own_origin_with_valid_token_gets_hello(server):
    for origin in (f"http://127.0.0.1:{server.port}", "http://localhost"):
        kind, frame = await first_frame_or_close(with_token(server.ws_url, token_for("buyer-or")), origin)
        assert kind == "frame", (origin, frame)
        assert frame["type"] == "hello" and frame["user"]["id"] == "buyer-or"


async def test_expired_token_is_accepted_then_closed_with_4001(server):
    url = with_token(server.ws_url, token_for("buyer-or", ttl_s=-30))
    assert await first_frame_or_close(url, f"http://127.0.0.1:{server.port}") == ("closed", 4001)


@pytest.mark.parametrize(
    "token",
    [
        token_mint(user_id="buyer-or", name="Buyer", secret="another-secret-" + "z" * 32),
        "not-a-jwt",
        None,
    ],
    ids=["forged", "garbage", "missing"],
)
async def test_invalid_or_missing_token_is_accepted_then_closed_with_4500(server, token):
    url = with_token(server.ws_url, token)
    assert await first_frame_or_close(url, f"http://127.0.0.1:{server.port}") == ("closed", 4500)
