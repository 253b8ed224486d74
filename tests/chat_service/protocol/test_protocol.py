"""Frame parsing and building: pure, no database."""

import json

import pytest

from chat_service.protocol import frames
from chat_service.protocol.frames import FrameError, Limits, parse_frame

LIMITS = Limits(max_frame_bytes=65536, max_body_chars=4000)


def parse(frame: object) -> frames.Command:
    return parse_frame(frame if isinstance(frame, str) else json.dumps(frame), None, LIMITS)


def error_of(text: str | None, data: bytes | None = None) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse_frame(text, data, LIMITS)
    return info.value


def test_message_send_is_parsed_into_a_typed_command():
    command = parse({"type": "message.send", "ref": "r1", "order_id": "A-1", "client_msg_id": "c1", "body": "hi"})
    assert command == frames.MessageSend("r1", "A-1", "c1", "hi")


def test_join_since_seq_is_optional():
    assert parse({"type": "thread.join", "order_id": "A1"}) == frames.ThreadJoin(None, "A1", None)
    assert parse({"type": "thread.join", "order_id": "A1", "since_seq": 7}).since_seq == 7


@pytest.mark.parametrize(
    "text, code, ref",
    [
        ("not json", "bad_request", None),
        ("[1, 2]", "bad_request", None),
        ('{"type": 5, "ref": "a"}', "bad_request", "a"),
        ('{"ref": "a"}', "bad_request", "a"),
        ('{"type": "no.such", "ref": "a"}', "unknown_type", "a"),
        ('{"type": "ping", "ref": 5}', "bad_request", None),
        ('{"type": "thread.join", "ref": "a"}', "bad_request", "a"),
        ('{"type": "thread.join", "ref": "a", "order_id": 12}', "bad_request", "a"),
        ('{"type": "thread.join", "ref": "a", "order_id": "has space"}', "bad_request", "a"),
        ('{"type": "thread.join", "ref": "a", "order_id": "T1\\n"}', "bad_request", "a"),
        ('{"type": "thread.join", "ref": "a", "order_id": "A1", "since_seq": -1}', "bad_request", "a"),
        ('{"type": "thread.join", "ref": "a", "order_id": "A1", "since_seq": true}', "bad_request", "a"),
        ('{"type": "thread.join", "ref": "a", "order_id": "A1", "since_seq": 1.5}', "bad_request", "a"),
        (
            '{"type": "thread.join", "ref": "a", "order_id": "A1", "since_seq": 99999999999999999999999}',
            "bad_request",
            "a",
        ),
        ('{"type": "thread.read", "ref": "a", "order_id": "A1"}', "bad_request", "a"),
        ('{"type": "message.send", "ref": "a", "order_id": "A1", "body": "x"}', "bad_request", "a"),
        ('{"type": "message.send", "ref": "a", "order_id": "A1", "client_msg_id": "c", "body": 3}', "bad_request", "a"),
        (
            '{"type": "message.send", "ref": "a", "order_id": "A1", "client_msg_id": "c", "body": "   "}',
            "bad_request",
            "a",
        ),
        (
            '{"type": "message.send", "ref": "a", "order_id": "A1", "client_msg_id": "c", "body": "a\\u0000b"}',
            "bad_request",
            "a",
        ),
        (
            '{"type": "message.send", "ref": "a", "order_id": "A1", "client_msg_id": "with space", "body": "x"}',
            "bad_request",
            "a",
        ),
        (
            '{"type": "message.send", "ref": "a", "order_id": "A1", "client_msg_id": "c1\\n", "body": "x"}',
            "bad_request",
            "a",
        ),
    ],
)
def test_bad_frames_raise_with_code_and_ref(text, code, ref):
    error = error_of(text)
    assert (error.error.code, error.ref) == (code, ref)


def test_body_over_the_limit_is_too_large():
    frame = {"type": "message.send", "ref": "a", "order_id": "A1", "client_msg_id": "c", "body": "x" * 4001}
    assert error_of(json.dumps(frame)).error.code == "too_large"
    frame["body"] = "x" * 4000
    assert parse(frame).body == "x" * 4000


def test_frame_over_the_byte_limit_is_too_large_counting_utf8_bytes():
    # 30,000 three-byte characters: under 64 KiB in characters, over it in bytes.
    text = json.dumps({"type": "ping", "pad": "€" * 30000}, ensure_ascii=False)
    assert len(text) < 65536 < len(text.encode())
    assert error_of(text).error.code == "too_large"


def test_binary_frame_is_a_bad_request():
    assert error_of(None, b"\x00\x01").error.code == "bad_request"


def test_deeply_nested_json_is_a_bad_request_not_a_crash():
    assert error_of("[" * 30000 + "]" * 30000).error.code == "bad_request"


def test_reply_and_error_frames_follow_the_contract():
    from chat_service.protocol.errors import Forbidden

    assert frames.reply_ok("r", {"a": 1}) == {"type": "reply", "ref": "r", "ok": True, "data": {"a": 1}}
    assert frames.reply_error("r", Forbidden()) == {
        "type": "reply",
        "ref": "r",
        "ok": False,
        "error": {"code": "forbidden", "message": Forbidden.default_message, "retryable": False},
    }
    assert frames.reply_error(None, Forbidden())["type"] == "error"
