"""The socket, in process: the real ASGI stack on the Redis broker and PostgreSQL."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async as db

from chat_service import fanout
from chat_service.client import ClientError
from chat_service.protocol.closecodes import CloseCode
from chat_service.threads import services
from chat_service.threads.models import Event
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
        from chat_service.transport.identity import token_mint

        token = token_mint(user_id="b\n", name="B")
    elif token == "forged":
        from chat_service.transport.identity import token_mint

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
    # Protocol 2: the reply is the sender's element of the stream; no thread.event repeats it.
    await buyer.no_frame("thread.event")
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
        "type": "thread.read_updated",
        "order_id": order.pk,
        "user_id": "s",
        "seq": 2,
    }
    frame = await seller_tab2.next_frame("unread.updated")
    assert (frame["unread"], frame["unread_total"]) == (0, 0)
    # The reader's own socket has its reply: no echo of its own read.
    await seller_tab1.no_frame("unread.updated")
    await seller_tab1.no_frame("thread.read_updated")
    await buyer.close(), await seller_tab1.close(), await seller_tab2.close()


async def test_a_new_message_raises_the_badge_on_every_socket_of_the_recipient(order):
    buyer = await TestSocket.open("b")
    seller_tabs = [await TestSocket.open("s"), await TestSocket.open("s")]
    await buyer.request("message.send", order_id=order.pk, client_msg_id="c1", body="hello")
    for tab in seller_tabs:  # one frame each: the notification carries the counts
        frame = await tab.next_frame("notification")
        assert (frame["order_id"], frame["unread"], frame["unread_total"]) == (order.pk, 1, 1)
        await tab.no_frame("unread.updated")
    await buyer.no_frame("unread.updated")
    await buyer.no_frame("notification")
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
        "type": "typing.started",
        "order_id": order.pk,
        "user_id": "b",
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
    (
        "wrong field types",
        '{"type": "message.send", "ref": "r", "order_id": "A", "client_msg_id": 1, "body": []}',
        "bad_request",
    ),
    ("unknown type", '{"type": "message.delete", "ref": "r"}', "unknown_type"),
    ("huge body", None, "too_large"),
    ("binary frame", b"\x80\x81", "bad_request"),
]


@pytest.mark.parametrize("name, frame, code", MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(order, name, frame, code):
    if frame is None:
        body = "x" * 5000
        frame = (
            f'{{"type": "message.send", "ref": "r", "order_id": "{order.pk}", "client_msg_id": "c", "body": "{body}"}}'
        )
    buyer = await TestSocket.open("b")
    await buyer.send(frame)
    answer = await buyer.next_frame(where=lambda f: f["type"] in {"reply", "error"})
    assert answer["error"]["code"] == code
    assert answer["ok"] is False if answer["type"] == "reply" else "ref" not in answer
    assert await buyer.request("ping") == {}
    assert await stored(order.pk) == []
    await buyer.close()


async def test_a_bug_in_a_handler_is_answered_as_internal_and_the_socket_survives(order, monkeypatch):
    async def broken(**kwargs):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(services, "amessage_send", broken)
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
        (1, "lost"),
        (2, "next"),
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
    to_thread = next(p for p in with_pushes if p[0] == f"t.{order.pk}")
    for _ in range(3):
        await fanout.publish([to_thread])
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


# --- protocol 2: the economy of the stream -------------------------------------------------------


async def frames_for_a_minute(socket: TestSocket, timeout: float = 0.4) -> list[dict]:
    frames = []
    while True:
        try:
            frames.append(await socket.next_frame(timeout=timeout))
        except TimeoutError:
            return frames


async def test_a_conversation_message_is_one_frame_per_socket_and_the_senders_reply(order):
    buyer = await TestSocket.open("b")
    seller_open, seller_elsewhere = await TestSocket.open("s"), await TestSocket.open("s")
    buyer_elsewhere = await TestSocket.open("b")
    await buyer.request("thread.join", order_id=order.pk)
    await seller_open.request("thread.join", order_id=order.pk)
    await buyer.send({"type": "message.send", "ref": "m", "order_id": order.pk, "client_msg_id": "c1", "body": "hi"})
    assert [f["type"] for f in await frames_for_a_minute(buyer)] == ["reply"]
    assert [f["type"] for f in await frames_for_a_minute(seller_open)] == ["thread.event"]
    assert [f["type"] for f in await frames_for_a_minute(seller_elsewhere)] == ["notification"]
    assert await frames_for_a_minute(buyer_elsewhere) == []  # the author's move is implied
    for socket in (buyer, seller_open, seller_elsewhere, buyer_elsewhere):
        await socket.close()


async def test_a_message_is_published_once_to_its_thread_and_once_to_the_recipient(order, monkeypatch):
    from chat_service.machinery import broadcast

    published: list[str] = []
    original = broadcast.Hub.publish

    async def record(self, publications):
        batch = list(publications)
        published.extend(topic for topic, _ in batch)
        await original(self, batch)

    monkeypatch.setattr(broadcast.Hub, "publish", record)
    buyer, seller = await TestSocket.open("b"), await TestSocket.open("s")
    await buyer.request("thread.join", order_id=order.pk)
    await seller.request("thread.join", order_id=order.pk)
    published.clear()  # the sellers' presence
    await buyer.request("message.send", order_id=order.pk, client_msg_id="c1", body="hi")
    assert published == [f"t.{order.pk}", "u.s"]
    await buyer.close(), await seller.close()


async def test_an_event_is_encoded_once_however_many_sockets_show_it(order, monkeypatch):
    from chat_service.protocol import frames

    async def encodings_for(tabs: int) -> int:
        calls = []
        real = frames.encode
        monkeypatch.setattr(frames, "encode", lambda frame: calls.append(frame["type"]) or real(frame))
        buyer = await TestSocket.open("b")
        sellers = [await TestSocket.open("s") for _ in range(tabs)]
        for socket in (buyer, *sellers):
            await socket.request("thread.join", order_id=order.pk)
        calls.clear()
        await buyer.request("message.send", order_id=order.pk, client_msg_id=f"tabs-{tabs}", body="hi")
        for seller in sellers:
            await seller.next_frame("thread.event")
        monkeypatch.setattr(frames, "encode", real)
        for socket in (buyer, *sellers):
            await socket.close()
        return len(calls)

    assert await encodings_for(1) == await encodings_for(6)


async def test_no_notification_row_is_written_for_a_recipient_who_is_connected(order):
    from chat_service.threads.notifications.models import Notification

    buyer, seller = await TestSocket.open("b"), await TestSocket.open("s")
    await buyer.request("thread.join", order_id=order.pk)
    await buyer.request("message.send", order_id=order.pk, client_msg_id="seen", body="you are here")
    await seller.next_frame("notification")
    await seller.close()
    await asyncio.sleep(0.2)  # the seller's disconnect is recorded
    await buyer.request("message.send", order_id=order.pk, client_msg_id="unseen", body="you left")
    rows = await db(lambda: list(Notification.objects.values_list("user_id", "event_seq")))()
    assert rows == [("s", 2)]
    await buyer.close()
