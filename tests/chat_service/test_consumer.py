"""The socket, in process: the real ASGI stack on the Redis channel layer and PostgreSQL."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async as db

from chat_service import fanout, services
from chat_service.client import ClientError
from chat_service.closecodes import CloseCode
from chat_service.models import Event
from tests.factories import make_order, token_for
from tests.wsclient import TestSocket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chat(settings):
    """Override chat settings for one test: chat(HEARTBEAT_S=1, ...)."""

    def override(**values):
        settings.CHAT = {**settings.CHAT, **values}

    return override


@pytest.fixture
async def order():
    return await db(make_order)(buyer_id="b", seller_id="s")


async def stored(order_id):
    return await db(lambda: list(Event.objects.filter(thread_id=order_id).order_by("seq")))()


async def test_hello_names_the_user_unread_total_and_heartbeat(order):
    await db(services.message_send)(user_id="s", order_id=order.pk, client_msg_id="c1", body="hi")
    buyer = await TestSocket.open("b")
    assert buyer.hello["user"] == {"id": "b", "name": "B"}
    assert buyer.hello["unread_total"] == 1
    assert buyer.hello["heartbeat_s"] == 25
    await buyer.close()


@pytest.mark.parametrize(
    "token, code",
    [
        (None, CloseCode.UNAUTHORIZED),
        ("not-a-jwt", CloseCode.UNAUTHORIZED),
        ("expired", CloseCode.TOKEN_EXPIRED),
        ("forged", CloseCode.UNAUTHORIZED),
        ("bad-sub", CloseCode.UNAUTHORIZED),
    ],
)
async def test_bad_tokens_are_closed_with_a_documented_code(token, code):
    if token == "expired":
        token = token_for("b", ttl_s=-10)
    elif token == "bad-sub":  # a user id that could not name a group
        from chat_service.identity import token_mint

        token = token_mint(user_id="b\n", name="B")
    elif token == "forged":
        from chat_service.identity import token_mint

        token = token_mint(user_id="b", name="B", secret="another-secret-" + "z" * 32)
    socket = await TestSocket.open(None, token=token, expect_hello=False)
    assert await socket.close_code() == code


@pytest.mark.parametrize("origin", [b"http://evil.example", b"null", b"http://localhost.evil.example", None])
async def test_foreign_or_missing_origins_are_refused_at_the_handshake(origin):
    socket = await TestSocket.open("b", origin=origin, expect_hello=False)
    assert socket.connected is False


async def test_ping_gets_pong_and_a_reply_when_it_has_a_ref():
    socket = await TestSocket.open("b")
    assert await socket.request("ping") == {}
    assert (await socket.next_frame("pong"))["type"] == "pong"
    await socket.close()


async def test_join_returns_order_markers_and_history(order):
    for i in range(3):
        await db(services.message_send)(user_id="b", order_id=order.pk, client_msg_id=f"c{i}", body=f"m{i}")
    seller = await TestSocket.open("s")
    data = await seller.request("thread.join", order_id=order.pk)
    assert data["order"]["order_id"] == order.pk and data["order"]["amount"] == "19.90"
    assert data["role"] == "seller" and data["last_seq"] == 3
    assert data["read_seq"] == {"buyer": 3, "seller": 0} and data["unread"] == 3
    assert [e["body"] for e in data["events"]] == ["m0", "m1", "m2"] and data["has_more"] is False
    await seller.close()


async def test_join_without_since_seq_returns_the_newest_page(order, chat):
    chat(JOIN_MAX_EVENTS=2)
    for i in range(5):
        await db(services.message_send)(user_id="b", order_id=order.pk, client_msg_id=f"c{i}", body=f"m{i}")
    seller = await TestSocket.open("s")
    data = await seller.request("thread.join", order_id=order.pk)
    assert [e["seq"] for e in data["events"]] == [4, 5] and data["has_more"] is True
    await seller.close()


async def test_join_with_since_seq_replays_everything_missed_then_streams_the_rest(order, chat):
    chat(JOIN_MAX_EVENTS=3)
    for i in range(8):
        await db(services.message_send)(user_id="b", order_id=order.pk, client_msg_id=f"c{i}", body=f"m{i}")
    seller = await TestSocket.open("s")
    data = await seller.request("thread.join", order_id=order.pk, since_seq=1)
    assert [e["seq"] for e in data["events"]] == [2, 3, 4] and data["has_more"] is True
    streamed = [(await seller.next_frame("thread.event"))["event"]["seq"] for _ in range(4)]
    assert streamed == [5, 6, 7, 8]
    await seller.no_frame("thread.event")
    await seller.close()


@pytest.mark.parametrize("user", ["stranger", "b2", "s2"])
async def test_non_participants_get_not_found_on_every_thread_command(order, user):
    await db(make_order)(buyer_id="b2", seller_id="s2")
    socket = await TestSocket.open(user)
    for frame_type, fields in [
        ("thread.join", {}),
        ("message.send", {"client_msg_id": "x", "body": "intrude"}),
        ("thread.read", {"seq": 0}),
        ("typing.start", {}),
    ]:
        reply = await socket.request_frame(frame_type, order_id=order.pk, **fields)
        assert (reply["ok"], reply["error"]["code"]) == (False, "not_found"), frame_type
    assert await stored(order.pk) == []
    # unknown orders answer exactly the same, so existence does not leak
    reply = await socket.request_frame("thread.join", order_id="NOPE")
    assert reply["error"]["code"] == "not_found"
    await socket.close()


async def test_non_participant_receives_no_events_of_a_thread(order):
    stranger = await TestSocket.open("stranger")
    with pytest.raises(ClientError):
        await stranger.request("thread.join", order_id=order.pk)
    buyer = await TestSocket.open("b")
    await buyer.request("message.send", order_id=order.pk, client_msg_id="c", body="private")
    await stranger.no_frame()
    await buyer.close(), await stranger.close()


async def test_message_reaches_the_other_party_and_is_acked_with_its_seq(order):
    buyer, seller = await TestSocket.open("b"), await TestSocket.open("s")
    await buyer.request("thread.join", order_id=order.pk)
    await seller.request("thread.join", order_id=order.pk)
    data = await buyer.request("message.send", order_id=order.pk, client_msg_id="c1", body="Is it in stock?")
    assert data["event"]["seq"] == 1 and data["duplicate"] is False
    pushed = await seller.next_frame("thread.event")
    assert pushed["event"] == data["event"]
    assert (await buyer.next_frame("thread.event"))["event"]["seq"] == 1  # own stream is complete too
    await buyer.close(), await seller.close()


async def test_resend_with_the_same_client_msg_id_is_acked_once_and_stored_once(order):
    buyer, seller = await TestSocket.open("b"), await TestSocket.open("s")
    await seller.request("thread.join", order_id=order.pk)
    first = await buyer.request("message.send", order_id=order.pk, client_msg_id="same", body="hello")
    again = await buyer.request("message.send", order_id=order.pk, client_msg_id="same", body="hello")
    assert again["event"] == first["event"] and again["duplicate"] is True
    assert len(await stored(order.pk)) == 1
    await seller.next_frame("thread.event")
    await seller.no_frame("thread.event")
    await buyer.close(), await seller.close()


async def test_sending_over_the_rate_is_refused_with_rate_limited(order, chat):
    chat(SEND_RATE_COUNT=3, SEND_RATE_WINDOW_S=60)
    buyer = await TestSocket.open("b")
    for i in range(3):
        await buyer.request("message.send", order_id=order.pk, client_msg_id=f"c{i}", body="x")
    reply = await buyer.request_frame("message.send", order_id=order.pk, client_msg_id="c9", body="x")
    assert reply["error"]["code"] == "rate_limited" and reply["error"]["retryable"] is True
    assert reply["error"]["retry_after_s"] > 0
    assert len(await stored(order.pk)) == 3
    assert await buyer.request("ping") == {}  # still connected
    await buyer.close()


async def test_read_updates_the_other_party_and_every_socket_of_the_reader(order):
    await db(services.message_send)(user_id="b", order_id=order.pk, client_msg_id="c1", body="one")
    await db(services.message_send)(user_id="b", order_id=order.pk, client_msg_id="c2", body="two")
    buyer = await TestSocket.open("b")
    seller_tab1, seller_tab2 = await TestSocket.open("s"), await TestSocket.open("s")
    await buyer.request("thread.join", order_id=order.pk)
    await seller_tab1.request("thread.join", order_id=order.pk)
    data = await seller_tab1.request("thread.read", order_id=order.pk, seq=2)
    assert data == {"read_seq": 2, "unread": 0, "unread_total": 0}
    assert await buyer.next_frame("thread.read_updated") == {
        "type": "thread.read_updated", "order_id": order.pk, "user_id": "s", "seq": 2,
    }
    for tab in (seller_tab1, seller_tab2):
        frame = await tab.next_frame("unread.updated")
        assert (frame["unread"], frame["unread_total"]) == (0, 0)
    await buyer.close(), await seller_tab1.close(), await seller_tab2.close()


async def test_a_new_message_raises_the_badge_on_every_socket_of_the_recipient(order):
    buyer = await TestSocket.open("b")
    seller_tabs = [await TestSocket.open("s"), await TestSocket.open("s")]
    await buyer.request("message.send", order_id=order.pk, client_msg_id="c1", body="hello")
    for tab in seller_tabs:
        assert await tab.next_frame("unread.updated") == {
            "type": "unread.updated", "order_id": order.pk, "unread": 1, "unread_total": 1,
        }
    await buyer.no_frame("unread.updated")
    for socket in (buyer, *seller_tabs):
        await socket.close()


async def test_typing_reaches_the_other_party_only_and_is_throttled(order, chat):
    chat(TYPING_THROTTLE_S=60)
    buyer, seller = await TestSocket.open("b"), await TestSocket.open("s")
    await buyer.request("thread.join", order_id=order.pk)
    await seller.request("thread.join", order_id=order.pk)
    assert await buyer.request("typing.start", order_id=order.pk) == {"throttled": False}
    assert await buyer.request("typing.start", order_id=order.pk) == {"throttled": True}
    assert await seller.next_frame("typing.started") == {
        "type": "typing.started", "order_id": order.pk, "user_id": "b",
    }
    await seller.no_frame("typing.started")
    await buyer.no_frame("typing.started")
    assert await stored(order.pk) == []  # never stored
    await buyer.close(), await seller.close()


async def test_after_leave_no_more_events_arrive(order):
    buyer, seller = await TestSocket.open("b"), await TestSocket.open("s")
    await seller.request("thread.join", order_id=order.pk)
    await seller.request("thread.leave", order_id=order.pk)
    await buyer.request("message.send", order_id=order.pk, client_msg_id="c1", body="hello")
    await seller.no_frame("thread.event")
    await buyer.close(), await seller.close()


MALFORMED = [
    ("invalid json", "{nope", "bad_request"),
    ("not an object", "[]", "bad_request"),
    ("wrong type of type", '{"type": 1, "ref": "r"}', "bad_request"),
    ("missing fields", '{"type": "message.send", "ref": "r"}', "bad_request"),
    ("wrong field types", '{"type": "message.send", "ref": "r", "order_id": "A", "client_msg_id": 1, "body": []}', "bad_request"),
    ("unknown type", '{"type": "message.delete", "ref": "r"}', "unknown_type"),
    ("huge body", None, "too_large"),
    ("binary frame", b"\x80\x81", "bad_request"),
]


@pytest.mark.parametrize("name, frame, code", MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(order, name, frame, code):
    if frame is None:
        frame = ('{"type": "message.send", "ref": "r", "order_id": "%s", "client_msg_id": "c", "body": "%s"}'
                 % (order.pk, "x" * 5000))
    buyer = await TestSocket.open("b")
    await buyer.send(frame)
    answer = await buyer.next_frame(where=lambda f: f["type"] in {"reply", "error"})
    assert answer["error"]["code"] == code
    assert answer["ok"] is False if answer["type"] == "reply" else "ref" not in answer
    assert await buyer.request("ping") == {}
    assert await stored(order.pk) == []
    await buyer.close()


async def test_a_bug_in_a_handler_is_answered_as_internal_and_the_socket_survives(order, monkeypatch):
    def broken(**kwargs):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(services, "message_send", broken)
    buyer = await TestSocket.open("b")
    reply = await buyer.request_frame("message.send", order_id=order.pk, client_msg_id="c", body="x")
    assert reply["error"] == {"code": "internal", "message": reply["error"]["message"], "retryable": True}
    assert "ZeroDivision" not in reply["error"]["message"]
    assert await buyer.request("ping") == {}
    await buyer.close()


async def test_an_event_the_layer_dropped_is_backfilled_from_the_database(order):
    seller = await TestSocket.open("s")
    await seller.request("thread.join", order_id=order.pk)

    def send_without_fanout():
        with fanout.collecting():  # collected and thrown away: the layer "lost" it
            services.message_send(user_id="b", order_id=order.pk, client_msg_id="lost", body="lost")

    await db(send_without_fanout)()
    await seller.no_frame("thread.event")
    buyer = await TestSocket.open("b")
    await buyer.request("message.send", order_id=order.pk, client_msg_id="next", body="next")
    first, second = await seller.next_frame("thread.event"), await seller.next_frame("thread.event")
    assert [(first["event"]["seq"], first["event"]["body"]), (second["event"]["seq"], second["event"]["body"])] == [
        (1, "lost"), (2, "next"),
    ]
    await seller.no_frame("thread.event")
    await buyer.close(), await seller.close()


async def test_a_dropped_last_event_is_delivered_by_the_periodic_sync(order, chat):
    chat(SUPERVISOR_TICK_S=0.1, SYNC_S=0.2)
    seller = await TestSocket.open("s")
    await seller.request("thread.join", order_id=order.pk)

    def send_without_fanout():
        with fanout.collecting():  # the layer "lost" the push, and no later event comes
            services.message_send(user_id="b", order_id=order.pk, client_msg_id="tail", body="the last word")

    await db(send_without_fanout)()
    frame = await seller.next_frame("thread.event", timeout=5)
    assert (frame["event"]["seq"], frame["event"]["body"]) == (1, "the last word")
    await seller.no_frame("thread.event", timeout=0.6)  # delivered once, not at every sync
    await seller.close()


async def test_events_repeated_by_the_layer_are_delivered_once(order):
    seller = await TestSocket.open("s")
    await seller.request("thread.join", order_id=order.pk)
    with_pushes = []

    def send_and_keep():
        with fanout.collecting() as pushed:
            services.message_send(user_id="b", order_id=order.pk, client_msg_id="c1", body="once")
        with_pushes.extend(pushed)

    await db(send_and_keep)()
    group, message = next(p for p in with_pushes if p[1]["type"] == "thread.event")
    for _ in range(3):
        await fanout.publish_now(group, message)
    assert (await seller.next_frame("thread.event"))["event"]["body"] == "once"
    await seller.no_frame("thread.event")
    await seller.close()


async def test_a_silent_socket_is_closed_with_the_heartbeat_code(chat):
    chat(HEARTBEAT_S=1, SUPERVISOR_TICK_S=0.1)
    quiet = await TestSocket.open("b")
    assert quiet.hello["heartbeat_s"] == 1
    assert await quiet.close_code(timeout=5) == CloseCode.HEARTBEAT_TIMEOUT


async def test_pings_keep_a_socket_alive(chat):
    chat(HEARTBEAT_S=1, SUPERVISOR_TICK_S=0.1)
    socket = await TestSocket.open("b")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # 3 s > 2 × heartbeat_s
        await socket.send({"type": "ping"})
        await socket.next_frame("pong")
        await asyncio.sleep(0.5)
    assert await socket.request("ping") == {}
    await socket.close()


async def test_an_expiring_token_closes_the_socket_with_the_reconnect_code(chat):
    chat(SUPERVISOR_TICK_S=0.1)
    socket = await TestSocket.open(None, token=token_for("b", ttl_s=2))
    assert socket.hello is not None
    code = await socket.close_code(timeout=6)
    assert code == CloseCode.TOKEN_EXPIRED and CloseCode(code).reconnect


async def test_the_per_user_connection_cap_is_enforced(chat):
    chat(MAX_CONNECTIONS_PER_USER=2)
    first, second = await TestSocket.open("b"), await TestSocket.open("b")
    third = await TestSocket.open("b", expect_hello=False)
    assert await third.close_code() == CloseCode.TOO_MANY_CONNECTIONS
    await third.close()
    other_user = await TestSocket.open("s")  # the cap is per user
    assert other_user.hello is not None
    await first.close()
    again = await TestSocket.open("b")
    assert again.hello is not None
    for socket in (second, other_user, again):
        await socket.close()


async def test_joining_during_a_burst_gives_a_gapless_duplicate_free_stream(order, chat):
    chat(SEND_RATE_COUNT=10_000)
    buyer = await TestSocket.open("b")

    async def burst():
        for i in range(40):
            await buyer.request("message.send", order_id=order.pk, client_msg_id=f"c{i}", body=f"m{i}")

    sending = asyncio.create_task(burst())
    await asyncio.sleep(0.05)
    seller = await TestSocket.open("s")
    data = await seller.request("thread.join", order_id=order.pk, since_seq=0)
    seen = [e["seq"] for e in data["events"]]
    await sending
    while not seen or seen[-1] < 40:
        seen.append((await seller.next_frame("thread.event"))["event"]["seq"])
    assert seen == list(range(1, 41))
    await seller.no_frame("thread.event")
    await buyer.close(), await seller.close()
