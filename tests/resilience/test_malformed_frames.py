"""Hostile frames on a live socket of a real Daphne: every one is answered, nothing is stored.

Hypothesis generates the frames (``hostile_frames``): text that is not JSON, JSON that is
not an object, nesting far beyond the parser's recursion limit, integers beyond 64 bits
and beyond Python's 4,300-digit parse limit, floats, NaN and Infinity, NUL bytes, lone
surrogates spelled as ``\\ud800`` escapes, very long strings, duplicate keys, binary
frames, text frames that are not UTF-8, frames above the 64 KiB cap, and, for every
command type of chat_service.protocol.frames, frames in which at least one field has a wrong
type or value (the others are valid, with real order, offer and dispute ids of the
sender, so the refusals are reached deep inside the services).

For each frame the test knows what the contract says must happen, from the bytes on the
wire alone: a frame over 64 KiB or a text frame that is not UTF-8 makes Daphne drop the
connection (the client reconnects and goes on); any other frame gets exactly one answer,
in order: a ``reply`` with ``ok: false`` for a frame whose ``ref`` can be read, else an
``error`` frame, with a refusal code (never ``internal``, never success). Afterwards the
server is alive, the socket answers a ping and a ``thread.join``, no database row was
written, its resident memory stayed roughly flat, and its log holds no traceback.

The CI run sends FRAMES (10,000; ``RESILIENCE_FRAMES`` overrides), the ``heavy`` one
100,000. ``RESILIENCE_SEED`` replays a run (each run prints its seed).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import string
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
import websockets
from channels.db import database_sync_to_async
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from chat_service.commerce.models import OrderStatus
from chat_service.commerce.services.disputes import dispute_open
from chat_service.commerce.services.offers import offer_make
from chat_service.protocol import frames
from chat_service.threads.models import Event
from tests.e2e.servers import MAX_MESSAGE_BYTES, DaphneServer
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FRAMES = int(os.environ.get("RESILIENCE_FRAMES", "10000"))
HEAVY_FRAMES = 100_000
CHUNK = 5_000  # frames generated per Hypothesis run (generation and sending alternate)
BATCH = 50  # frames per Hypothesis example
WINDOW = 64  # frames in flight before their answers are read
PROBE_EVERY = 1_000  # a ping that must be answered, between the hostile frames
TIMEOUT_S = 20
# Resident memory may grow by RSS_SLACK_KIB (allocator arenas, caches) plus a tenth of the
# bytes sent: a server keeping even a tenth of what it was sent fails (10,000 frames are
# ~45 MB, 100,000 ~450 MB; the growth measured here is ~10 MB either way).
RSS_SLACK_KIB = 32 * 1024
RSS_LEAK_SHARE = 0.1

USER = "fuzz-user"
OTHER_BUYER, OTHER_SELLER = "fuzz-other-buyer", "fuzz-other-seller"
REFUSALS = frozenset({"bad_request", "unknown_type", "too_large", "not_found", "forbidden", "invalid_state"})
REASONS = ("not_as_described", "wrong_colour", "wrong_size", "works_poorly", "low_quality", "not_received")
# Daphne refuses these by dropping the TCP connection (autobahn's failByDrop: no close
# frame, the client sees 1006); a close frame would carry 1009 (too big) / 1007 (not UTF-8).
CLOSE_TOO_BIG = frozenset({1006, 1009})
CLOSE_NOT_UTF8 = frozenset({1006, 1007})


# --- The sender's world: real ids the valid fields of hostile frames point at ------------------


@dataclass(frozen=True)
class World:
    """Orders of every kind for USER, and one of someone else's."""

    buying: str  # awaiting payment, with an open offer from its seller
    selling: str  # awaiting payment, USER is the seller
    disputed: str  # awaiting acceptance, USER opened a dispute
    completed: str  # completed, no feedback yet: feedback would be allowed
    foreign: str  # neither buyer nor seller
    offer_id: str
    foreign_offer_id: str
    dispute_id: str

    @property
    def order_ids(self) -> list[str]:
        return [self.buying, self.selling, self.disputed, self.completed, self.foreign, "T999999"]


def seed_world() -> World:
    buying = make_order(buyer_id=USER, seller_id=OTHER_SELLER)
    offer = offer_make(user_id=OTHER_SELLER, order_id=buying.pk, price="15.00")
    selling = make_order(buyer_id=OTHER_BUYER, seller_id=USER)
    disputed = make_order(buyer_id=USER, seller_id=OTHER_SELLER, status=OrderStatus.AWAITING_ACCEPTANCE)
    dispute = dispute_open(
        user_id=USER,
        order_id=disputed.pk,
        reason="not_received",
        refund_amount="19.90",
        return_item=False,
        details="never came",
    )
    completed = make_order(
        buyer_id=USER, seller_id=OTHER_SELLER, status=OrderStatus.COMPLETED, completed_at=timezone.now()
    )
    foreign = make_order(buyer_id=OTHER_BUYER, seller_id=OTHER_SELLER)
    foreign_offer = offer_make(user_id=OTHER_SELLER, order_id=foreign.pk, price="9.00")
    return World(
        buying.pk,
        selling.pk,
        disputed.pk,
        completed.pk,
        foreign.pk,
        str(offer.pk),
        str(foreign_offer.pk),
        str(dispute.pk),
    )


# --- Frames ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text spliced in as is: numbers Python's json.dumps cannot write, nesting."""

    text: str


@dataclass(frozen=True)
class Hostile:
    kind: str  # what was spoiled, for the figures
    payload: str | bytes
    wire: str = "text"  # "text", "binary", or "raw-text" (bytes sent in a text frame)
    codes: frozenset[str] = REFUSALS  # the refusal codes the contract allows for it


@dataclass(frozen=True)
class Expect:
    close_codes: frozenset[int] | None  # the connection is dropped; else one answer
    ref: str | None = None  # the reply must carry this ref; None: an ``error`` frame


def dump(value: Any, *, ascii_only: bool) -> str:
    """JSON text of ``value``; a list of pairs is an object (keys may repeat), Raw is spliced."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return (
            "{"
            + ",".join(f"{dump(k, ascii_only=ascii_only)}:{dump(v, ascii_only=ascii_only)}" for k, v in value.items)
            + "}"
        )
    if isinstance(value, dict):
        return dump(Pairs(list(value.items())), ascii_only=ascii_only)
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only=ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)  # NaN and Infinity as Python writes them


@dataclass(frozen=True)
class Pairs:
    items: list[tuple[str, Any]]


def to_text(value: Any, ascii_only: bool) -> str:
    text = dump(value, ascii_only=ascii_only)
    if not encodable(text):  # a lone surrogate has no UTF-8: send it as a \u escape
        text = dump(value, ascii_only=True)
    return text


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def readable_ref(frame: Any) -> str | None:
    """The ref the server must echo, worked out independently of chat_service.protocol.frames."""
    if not isinstance(frame, dict):
        return None
    ref = frame.get("ref")
    if isinstance(ref, str) and len(ref) <= frames.MAX_REF_LENGTH and encodable(ref):
        return ref
    return None


def expectation(hostile: Hostile) -> Expect:
    raw = hostile.payload if isinstance(hostile.payload, bytes) else hostile.payload.encode("utf-8")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Expect(CLOSE_TOO_BIG)
    if hostile.wire == "raw-text":
        return Expect(CLOSE_NOT_UTF8)
    if hostile.wire == "binary":
        return Expect(None)
    try:
        frame = json.loads(hostile.payload)
    except (ValueError, RecursionError):
        return Expect(None)
    return Expect(None, readable_ref(frame))


# --- Value strategies: valid ones for the fields left alone, invalid ones to spoil a field -----

ID_CHARS = string.ascii_letters + string.digits + "_.-"
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
raw_numbers = st.one_of(
    st.sampled_from(
        [
            Raw("NaN"),
            Raw("Infinity"),
            Raw("-Infinity"),
            Raw("1e999"),
            Raw("-1e999"),
            Raw("1E+2"),
            Raw("1.5e-400"),
            Raw("18446744073709551616"),
            Raw("-9223372036854775809"),
            Raw("0.0"),
        ]
    ),
    # Beyond 64 bits, then beyond the 4,300 digits Python's json parses (then: not JSON).
    st.integers(20, 4000).map(lambda n: Raw("9" * n)),
    st.integers(5000, 20000).map(lambda n: Raw("9" * n)),
)
# Shallow enough to parse, or far past the parser's recursion limit (never near it: the
# test process and the server count their stack depth from different starting points).
# At least two levels: "[]" would be a valid (empty) seller_ids.
nesting = st.one_of(st.integers(2, 400), st.integers(2000, 12000)).flatmap(
    lambda n: st.sampled_from([Raw("[" * n + "]" * n), Raw('{"a":' * n + "1" + "}" * n)])
)
non_strings = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    raw_numbers,
    nesting,
)


def long_text(min_chars: int, max_chars: int) -> st.SearchStrategy[str]:
    """Just over a limit, mostly; a character repeated (drawing each one would be slow)."""
    lengths = st.one_of(st.integers(min_chars, min_chars + 16), st.integers(min_chars, max_chars))
    return st.tuples(lengths, st.sampled_from(["x", "é", "€", "😀", "A"])).map(lambda t: t[1] * t[0])


def spoiled(valid: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid string with one bad character put somewhere in it."""
    return st.tuples(valid, bad, st.integers(0, 64)).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :])


def bad_text(max_chars: int) -> st.SearchStrategy[Any]:
    """Never valid for an optional text field of at most ``max_chars`` (None would be)."""
    return st.one_of(
        non_strings,
        long_text(max_chars + 1, max_chars + 3000),
        spoiled(st.text(max_size=30), st.just("\x00")),
        spoiled(st.text(max_size=30), surrogates),
    )


valid_id = st.text(ID_CHARS, min_size=1, max_size=64)
bad_id = st.one_of(
    non_strings,
    st.just(""),
    long_text(65, 3000),
    spoiled(valid_id, st.one_of(st.characters(exclude_characters=ID_CHARS), surrogates, st.just("\x00"))),
    valid_id.map(lambda s: s + "\n"),
)
bad_numeric_id = st.one_of(
    non_strings,
    st.sampled_from(["", "-1", "1.0", " 1", "0x1", "１"]),
    st.integers(19, 60).map(lambda n: "1" * n),
    st.integers(10**12, 10**18 - 1).map(str),  # well formed, but no such offer or dispute
)
bad_seq = st.one_of(
    st.booleans(),
    st.integers(max_value=-1),
    st.integers(min_value=2**62 + 1, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    raw_numbers,
    nesting,
)
valid_client_msg_id = st.text(PRINTABLE, min_size=1, max_size=64)
bad_client_msg_id = st.one_of(
    non_strings,
    st.just(""),
    long_text(65, 3000),
    spoiled(valid_client_msg_id, st.one_of(st.characters(exclude_characters=PRINTABLE), surrogates)),
)
valid_body = st.text(min_size=1, max_size=200).filter(lambda s: bool(s.strip()) and "\x00" not in s)
bad_body = st.one_of(
    non_strings,
    st.just(""),
    st.sampled_from([" ", "\n\t ", "\u2003\u3000"]),
    long_text(4001, 6000),
    spoiled(valid_body, st.just("\x00")),
    spoiled(valid_body, surrogates),
)
valid_seller_ids = st.lists(valid_id, max_size=5)
bad_seller_ids = st.one_of(
    st.text(max_size=20),
    st.integers(),
    st.booleans(),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.integers(201, 320).map(lambda n: [f"s{i}" for i in range(n)]),
    st.tuples(valid_seller_ids, bad_id, st.integers(0, 5)).map(lambda t: t[0][: t[2]] + [t[1]] + t[0][t[2] :]),
    nesting,
)
bad_bool = st.one_of(
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.booleans(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.booleans(), max_size=2),
    raw_numbers,
)
bad_price = st.one_of(
    st.floats(allow_nan=True),
    st.integers(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "sNaN",
            "-1",
            "0",
            "0.00",
            "-0.01",
            "1.234",
            "abc",
            "",
            "1e400",
            "99999999999.00",
            "12,50",
        ]
    ),
)
bad_currency = st.one_of(
    st.integers(),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
    st.sampled_from(["EUR", "usd", "", "US", "USDX", "USD\x00"]),
)
bad_expires = st.one_of(
    st.integers(max_value=59),
    st.integers(min_value=30 * 86400 + 1, max_value=2**70),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=6),
    raw_numbers,
)
bad_reason = st.one_of(
    st.text(max_size=30).filter(lambda s: s not in REASONS),
    non_strings,
    st.sampled_from([r.upper() for r in REASONS] + [r + " " for r in REASONS]),
)
bad_amount = st.one_of(
    st.floats(allow_nan=True),
    st.integers(),
    st.booleans(),
    st.sampled_from(["NaN", "Infinity", "-1", "0", "0.00", "1.001", "abc", "", "1e9", "19.91", "sNaN"]),
)
bad_action = st.one_of(
    st.text(max_size=12).filter(lambda s: s not in ("accept", "reject", "counter")),
    non_strings,
    st.sampled_from(["ACCEPT", "accept ", "counter\x00"]),
)
bad_tracking = st.one_of(
    non_strings,
    st.sampled_from(["", "   "]),
    long_text(65, 2000),
    spoiled(st.text(min_size=1, max_size=20), st.just("\x00")),
    spoiled(st.text(min_size=1, max_size=20), surrogates),
)
bad_rating = st.one_of(
    st.integers().filter(lambda r: not 1 <= r <= 5),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=3),
    raw_numbers,
    st.just(Raw("5.0")),
)
bad_ref = st.one_of(  # anything but null (no ref) or a string of at most 128 characters
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    long_text(129, 2000),
    spoiled(st.text(max_size=20), surrogates),
    raw_numbers,
    nesting,
)
valid_ref = st.one_of(st.text(max_size=12), st.text(max_size=12), st.text(max_size=frames.MAX_REF_LENGTH), st.none())
junk_keys = st.sampled_from(
    [
        "user_id",
        "author_id",
        "sender",
        "role",
        "__proto__",
        "constructor",
        "id",
        "x",
        "\x00",
        "\ud800",
        "order",
        "seq\x00",
        "",
    ]
)
junk_values = st.one_of(
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    raw_numbers,
    spoiled(st.text(max_size=5), surrogates),
)


@dataclass(frozen=True)
class Field:
    required: bool
    valid: st.SearchStrategy[Any]
    invalid: st.SearchStrategy[Any]  # never a valid value, never null for optional fields


def command_fields(world: World) -> dict[str, dict[str, Field]]:
    """Every command type of chat_service.protocol.frames, with its fields (docs/protocol.md)."""
    order = Field(True, st.sampled_from(world.order_ids), bad_id)
    offer = Field(True, st.sampled_from([world.offer_id, world.foreign_offer_id, "999999999999"]), bad_numeric_id)
    dispute = Field(True, st.sampled_from([world.dispute_id, "999999999999"]), bad_numeric_id)

    def optional(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> Field:
        return Field(False, valid, invalid)

    note = optional(st.text(max_size=40), bad_text(500))
    return {
        "ping": {},
        "thread.join": {"order_id": order, "since_seq": optional(st.integers(0, 100), bad_seq)},
        "thread.leave": {"order_id": order},
        "message.send": {
            "order_id": order,
            "client_msg_id": Field(True, valid_client_msg_id, bad_client_msg_id),
            "body": Field(True, valid_body, bad_body),
        },
        "thread.read": {"order_id": order, "seq": Field(True, st.integers(0, 100), bad_seq)},
        "typing.start": {"order_id": order},
        "presence.subscribe": {"seller_ids": Field(True, valid_seller_ids, bad_seller_ids)},
        "presence.unsubscribe": {"seller_ids": Field(True, valid_seller_ids, bad_seller_ids)},
        "notifications.mute": {"order_id": order, "muted": Field(True, st.booleans(), bad_bool)},
        "notifications.preferences": {
            "email": optional(st.booleans(), bad_bool),
            "push": optional(st.booleans(), bad_bool),
        },
        "offer.request": {"order_id": order, "note": note},
        "offer.make": {
            "order_id": order,
            "price": Field(True, st.sampled_from(["12.50", "1", "0.01"]), bad_price),
            "currency": optional(st.just("USD"), bad_currency),
            "note": note,
            "expires_in_s": optional(st.integers(60, 30 * 86400), bad_expires),
        },
        "offer.accept": {"offer_id": offer},
        "offer.decline": {"offer_id": offer},
        "offer.withdraw": {"offer_id": offer},
        "dispute.open": {
            "order_id": order,
            "reason": Field(True, st.sampled_from(REASONS), bad_reason),
            "refund_amount": Field(True, st.sampled_from(["1.00", "19.90"]), bad_amount),
            "return_item": Field(True, st.booleans(), bad_bool),
            "details": optional(st.text(max_size=40), bad_text(2000)),
        },
        "dispute.respond": {
            "dispute_id": dispute,
            "action": Field(True, st.sampled_from(["accept", "reject", "counter"]), bad_action),
            "refund_amount": optional(st.sampled_from(["1.00", "5.00"]), bad_amount),
            "note": optional(st.text(max_size=40), bad_text(2000)),
        },
        "dispute.accept_counter": {"dispute_id": dispute},
        "dispute.escalate": {"dispute_id": dispute},
        "dispute.cancel": {"dispute_id": dispute},
        "dispute.add_return_tracking": {
            "dispute_id": dispute,
            "tracking_number": Field(True, st.just("LP123456789CN"), bad_tracking),
        },
        "dispute.confirm_return": {"dispute_id": dispute},
        "order.cancel": {"order_id": order},
        "order.confirm_receipt": {"order_id": order},
        "order.leave_feedback": {
            "order_id": order,
            "rating": Field(True, st.integers(1, 5), bad_rating),
            "comment": optional(st.text(max_size=40), bad_text(1000)),
        },
    }


def bad_type(valid_type: str) -> st.SearchStrategy[Any]:
    near_misses = [
        valid_type.upper(),
        valid_type + " ",
        " " + valid_type,
        valid_type + "\x00",
        valid_type.replace(".", "_"),
        valid_type + "\ud800",
        valid_type.title(),
    ]
    return st.one_of(
        st.sampled_from(near_misses),
        st.text(max_size=80),
        non_strings,
        st.none(),
    ).filter(lambda t: not (isinstance(t, str) and t in frames.COMMANDS))


@dataclass(frozen=True)
class CommandSpec:
    """A command type's fields, and the strategies that spoil its frames (built once:
    Hypothesis validates a strategy the first time it draws from it)."""

    frame_type: str
    fields: dict[str, Field]
    bad_type: st.SearchStrategy[Any]
    spoiled_fields: st.SearchStrategy[frozenset[str]]


def command_specs(world: World) -> list[CommandSpec]:
    specs = []
    for frame_type, fields in sorted(command_fields(world).items()):
        names = sorted(fields)
        spoiled_fields = (
            st.frozensets(st.sampled_from(names), min_size=1, max_size=2) if names else st.just(frozenset({"ref"}))
        )
        specs.append(CommandSpec(frame_type, fields, bad_type(frame_type), spoiled_fields))
    return specs


# What a command frame has spoiled: one of its fields (mostly), its ref, its type, or several.
SPOIL_MODES = st.sampled_from(["fields"] * 6 + ["ref", "type", "ref+fields", "type+ref"])
DECOYS = st.sampled_from(["ping", "message.send", 1, None, "x"])


def command_frame(specs: list[CommandSpec]) -> st.SearchStrategy[Hostile]:
    """A frame of a known command type with at least one of ref, type or a field spoiled."""

    @st.composite
    def build(draw: st.DrawFn) -> Hostile:
        spec = draw(st.sampled_from(specs))
        frame_type, fields = spec.frame_type, spec.fields
        mode = draw(SPOIL_MODES)
        spoil = set(draw(spec.spoiled_fields)) if "fields" in mode else set()
        spoil |= {part for part in ("ref", "type") if part in mode.split("+")}
        if frame_type == "dispute.respond" and "refund_amount" in spoil:
            spoil.discard("action")  # the amount is only read for a counter
        pairs: list[tuple[str, Any]] = []
        if "type" in spoil:
            value = draw(spec.bad_type)
            if value is not None or draw(st.booleans()):
                pairs.append(("type", value))
        else:
            pairs.append(("type", frame_type))
        ref = draw(bad_ref) if "ref" in spoil else draw(valid_ref)
        if ref is not None:
            pairs.append(("ref", ref))
        for name, f in fields.items():
            if name in spoil:
                if f.required and draw(st.integers(0, 4)) == 0:
                    continue  # a required field left out
                pairs.append((name, draw(f.invalid)))
            elif name == "action" and "refund_amount" in spoil:
                pairs.append((name, "counter"))
            elif f.required or draw(st.booleans()):
                pairs.append((name, draw(f.valid)))
        pairs += draw(st.lists(st.tuples(junk_keys, junk_values), max_size=2))
        pairs = draw(st.permutations(pairs))
        if pairs and draw(st.integers(0, 9)) == 0:
            # A key twice, a decoy first: JSON parsers keep the last one, which stays spoiled.
            key = draw(st.sampled_from([k for k, _ in pairs]))
            pairs.insert(0, (key, draw(DECOYS)))
        text = to_text(Pairs(pairs), ascii_only=draw(st.booleans()))
        if "type" in spoil:
            return Hostile("type", text, codes=frozenset({"bad_request", "unknown_type"}))
        if "ref" in spoil:
            return Hostile("ref", text, codes=frozenset({"bad_request"}))
        return Hostile(f"field {frame_type}", text)

    return build()


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=12,
    )


def is_command(text: str) -> bool:
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(frame, dict) and frame.get("type") in frames.COMMANDS


def hostile_frames(world: World) -> st.SearchStrategy[Hostile]:
    specs = command_specs(world)
    commands = command_frame(specs)
    bad_request = frozenset({"bad_request"})
    garbage = (
        st.text(max_size=300)
        .filter(lambda t: not is_command(t))
        .map(lambda t: Hostile("not json", t, codes=bad_request))
    )
    truncated = st.tuples(commands, st.integers(1, 10_000)).map(
        lambda t: Hostile("truncated", t[0].payload[: max(1, len(t[0].payload) - t[1])], codes=bad_request)
    )
    trailing = st.tuples(commands, st.sampled_from([" x", "}", "]", ",", "{}", "\x00", "//", "\ufeff"])).map(
        lambda t: Hostile("trailing junk", t[0].payload + t[1], codes=bad_request)
    )
    not_object = (
        json_values()
        .filter(lambda v: not isinstance(v, dict))
        .map(lambda v: Hostile("not an object", to_text(v, ascii_only=False), codes=bad_request))
    )
    deep = st.one_of(nesting, st.integers(12000, 32000).map(lambda n: Raw("[" * n + "]" * n))).map(
        lambda raw: Hostile("deep nesting", raw.text, codes=bad_request)
    )
    # A field the command reads, nested (no field of the protocol takes a list or an object
    # of lists); the command's other fields are missing.
    read_fields = [
        (spec.frame_type, name)
        for spec in specs
        for name in spec.fields
        if (spec.frame_type, name) != ("dispute.respond", "refund_amount")
    ]
    deep_field = st.tuples(st.sampled_from(read_fields), nesting).map(
        lambda t: Hostile("deep field", f'{{"type":"{t[0][0]}","ref":"deep","{t[0][1]}":{t[1].text}}}')
    )
    python_literal = st.sampled_from(
        [
            "{'type': 'ping'}",
            "{type: 'ping'}",
            '{"type":"ping",}',
            "\ufeff{}",
            "",
            "   ",
            "{",
            "}",
            "null",
            "NaN",
            '{"type":"ping"}{"type":"ping"}',
        ]
    ).map(lambda t: Hostile("not json", t, codes=bad_request))
    binary = st.one_of(
        st.binary(max_size=2048),
        commands.map(lambda h: h.payload.encode("utf-8")),
        st.just(b'{"type":"ping","ref":"bin"}'),
    ).map(lambda b: Hostile("binary", b, wire="binary", codes=bad_request))
    not_utf8 = st.tuples(
        st.binary(max_size=64),
        st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80"]),
        st.binary(max_size=64),
    ).map(lambda t: Hostile("not utf-8", b'{"type":"ping","x":"' + t[0] + t[1] + t[2] + b'"}', wire="raw-text"))
    oversized = st.one_of(
        st.integers(MAX_MESSAGE_BYTES + 1, 3 * MAX_MESSAGE_BYTES).map(lambda n: Hostile("oversized", "x" * n)),
        st.integers(MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES).map(
            lambda n: Hostile("oversized", json.dumps({"type": "ping", "ref": "big", "pad": "y" * n}))
        ),
        st.integers(MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES).map(
            lambda n: Hostile("oversized", b"\x00" * n, wire="binary")
        ),
    )
    rare = st.one_of(garbage, truncated, trailing, not_object, deep, deep_field, python_literal, binary)
    # Mostly command frames; every frame that drops the connection costs a reconnect. (The
    # rare branches sit mid-range: Hypothesis favours the ends of an integer range.)
    return st.integers(0, 999).flatmap(
        lambda r: st.one_of(oversized, not_utf8) if 500 <= r < 505 else rare if 600 <= r < 750 else commands
    )


def generate(world: World, count: int, run_seed: int) -> list[Hostile]:
    """``count`` hostile frames from Hypothesis, drawn BATCH to an example (its engine's
    cost is per example), exploring and mutating as it does for any property."""
    frames: list[Hostile] = []

    @seed(run_seed)
    @settings(
        max_examples=-(-count // BATCH),
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(hostile_frames(world), min_size=BATCH, max_size=BATCH))
    def collect(batch: list[Hostile]) -> None:
        frames.extend(batch)

    collect()
    return frames[:count]


# --- Driving the storm -------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class Storm:
    server: DaphneServer
    user: str
    world: World
    socket: Any = None
    sent: int = 0
    bytes_sent: int = 0
    error_replies: int = 0  # {"type": "reply", "ok": false}
    error_frames: int = 0  # {"type": "error"}
    closes: int = 0
    probes: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[int] = field(default_factory=Counter)

    def figures(self) -> str:
        return (
            f"frames sent {self.sent} ({self.bytes_sent / 1e6:.1f} MB), error replies {self.error_replies}, "
            f"error frames {self.error_frames}, closes {self.closes} {dict(self.close_codes)}, "
            f"probes answered {self.probes}, server alive {self.server.alive}"
        )

    async def connect(self) -> None:
        url = f"{self.server.ws_url}?{urlencode({'token': token_for(self.user)})}"
        self.socket = await websockets.connect(
            url,
            origin=f"http://127.0.0.1:{self.server.port}",
            open_timeout=TIMEOUT_S,
            ping_interval=None,
            max_size=2**22,
        )
        hello = await self.receive("hello")
        assert hello["type"] == "hello" and hello["user"]["id"] == self.user, hello

    async def receive(self, waiting_for: str) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.socket.recv(), TIMEOUT_S)
        except websockets.ConnectionClosed as exc:
            raise AssertionError(f"connection closed ({exc}) waiting for {waiting_for}; {self.figures()}") from None
        except TimeoutError:
            raise AssertionError(f"no answer within {TIMEOUT_S}s to {waiting_for}; {self.figures()}") from None
        return json.loads(raw)

    async def send(self, hostile: Hostile) -> None:
        if hostile.wire == "binary":
            await self.socket.send(hostile.payload)
        elif hostile.wire == "raw-text":
            await self.socket.send(hostile.payload, text=True)
        else:
            await self.socket.send(hostile.payload)
        self.sent += 1
        self.bytes_sent += len(hostile.payload if isinstance(hostile.payload, bytes) else hostile.payload.encode())
        self.kinds[hostile.kind] += 1

    async def run(self, frames: list[Hostile]) -> None:
        pending: list[tuple[Hostile, Expect]] = []
        for hostile in frames:
            expect = expectation(hostile)
            if expect.close_codes is not None:
                await self.settle(pending)
                await self.send(hostile)
                await self.dropped(hostile, expect.close_codes)
                await self.connect()
                continue
            await self.send(hostile)
            pending.append((hostile, expect))
            if len(pending) >= WINDOW:
                await self.settle(pending)
            if self.sent % PROBE_EVERY == 0:
                await self.settle(pending)
                await self.probe()
        await self.settle(pending)

    async def settle(self, pending: list[tuple[Hostile, Expect]]) -> None:
        """Read the one answer of each pending frame, in the order they were sent."""
        for hostile, expect in pending:
            what = f"{hostile.kind} frame {shown(hostile.payload)}"
            answer = await self.receive(what)
            if expect.ref is not None:
                assert answer.get("type") == "reply" and answer.get("ref") == expect.ref, (what, answer)
                assert answer["ok"] is False, (what, answer, self.figures())
                self.error_replies += 1
            else:
                assert answer.get("type") == "error", (what, answer, self.figures())
                self.error_frames += 1
            code = answer["error"]["code"]
            self.codes[code] += 1
            assert code in hostile.codes, (what, answer, self.figures())
        pending.clear()

    async def dropped(self, hostile: Hostile, close_codes: frozenset[int]) -> None:
        what = f"{hostile.kind} frame of {len(hostile.payload)} characters/bytes"
        try:
            answer = await asyncio.wait_for(self.socket.recv(), TIMEOUT_S)
        except websockets.ConnectionClosed:
            pass
        except TimeoutError:
            raise AssertionError(f"the {what} neither got an answer nor closed the socket; {self.figures()}") from None
        else:
            raise AssertionError(f"the {what} got {answer[:300]!r} instead of a closed connection")
        code = self.socket.close_code
        assert code in close_codes, (what, code, close_codes)
        self.closes += 1
        self.close_codes[int(code)] += 1

    async def probe(self) -> None:
        """The socket still serves: a ping is answered with pong and its reply."""
        ref = f"probe-{self.sent}"
        await self.socket.send(json.dumps({"type": "ping", "ref": ref}))
        assert (await self.receive("pong"))["type"] == "pong"
        assert await self.receive(f"reply to {ref}") == {"type": "reply", "ref": ref, "ok": True, "data": {}}
        self.probes += 1

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()


def shown(payload: str | bytes, limit: int = 300) -> str:
    text = repr(payload)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(payload)} long)"


async def storm(daphne: Any, db_state: Any, count: int) -> None:
    (server,) = await daphne.start(1)
    world = await database_sync_to_async(seed_world)()
    fields = command_fields(world)
    assert set(fields) == set(frames.COMMANDS), "every command type of the protocol is fuzzed"
    run_seed = int(os.environ.get("RESILIENCE_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\n[malformed frames] seed {run_seed} (RESILIENCE_SEED={run_seed} replays it), frames {count}")
    driver = Storm(server, USER, world)
    await driver.connect()
    before = await database_sync_to_async(db_state.snapshot)()
    stderr_at_start = len(server.stderr_text())
    await driver.probe()
    rss_before = rss_kib(server.process.pid)
    started = time.monotonic()
    try:
        for chunk_index in itertools.count():
            left = count - driver.sent
            if left <= 0:
                break
            chunk = generate(world, min(CHUNK, left), run_seed + chunk_index)
            assert chunk, "Hypothesis generated no frames"
            await driver.run(chunk)
        await driver.probe()
        joined = await request(driver, "thread.join", order_id=world.buying)
        assert joined["ok"] and joined["data"]["order"]["order_id"] == world.buying, joined
    finally:
        await driver.close()
    elapsed = time.monotonic() - started
    rss_after = rss_kib(server.process.pid)
    changed = await database_sync_to_async(db_state.changed_since)(before)
    crashes = 0 if server.alive else 1
    log = server.stderr_text()[stderr_at_start:]
    figures = (
        f"{driver.figures()}; crashes {crashes}; rows written/changed {len(changed)}; "
        f"RSS before {rss_before} KiB, after {rss_after} KiB (+{rss_after - rss_before} KiB); "
        f"{elapsed:.1f} s, {driver.sent / elapsed:.0f} frames/s"
    )
    print(f"[malformed frames] {figures}")
    print(f"[malformed frames] kinds {dict(driver.kinds.most_common())}")
    print(f"[malformed frames] codes {dict(driver.codes.most_common())}")
    assert crashes == 0, f"the server died (exit {server.process.returncode}); {figures}"
    assert await server.healthz_status() == 200, figures
    assert driver.sent >= count, figures
    assert driver.error_replies + driver.error_frames + driver.closes == driver.sent, figures
    assert changed == {}, f"rows written: {changed}; {figures}"
    assert "Traceback" not in log, f"the server logged an exception: {log[-5000:]}; {figures}"
    bound_kib = RSS_SLACK_KIB + RSS_LEAK_SHARE * driver.bytes_sent / 1024
    assert rss_after - rss_before <= bound_kib, f"resident memory grew over {bound_kib:.0f} KiB; {figures}"


async def request(driver: Storm, frame_type: str, **fields: Any) -> dict[str, Any]:
    ref = f"req-{uuid.uuid4().hex}"
    await driver.socket.send(json.dumps({"type": frame_type, "ref": ref, **fields}))
    while True:
        frame = await driver.receive(f"reply to {frame_type}")
        if frame.get("ref") == ref:
            return frame


async def test_10k_hostile_frames_are_each_refused_and_change_nothing(daphne, db_state):
    await storm(daphne, db_state, FRAMES)


@pytest.mark.heavy
async def test_100k_hostile_frames_are_each_refused_and_change_nothing(daphne, db_state):
    await storm(daphne, db_state, HEAVY_FRAMES)


# --- The send rate limit -----------------------------------------------------------------------

RATE_COUNT = 5
RATE_USER = "fuzz-rate"


def disguised_sends(order_id: str) -> list[str]:
    """Valid message.send frames in every shape the parser accepts (all with a ref)."""

    def frame(**extra: Any) -> dict[str, Any]:
        return {
            "type": "message.send",
            "ref": f"s-{uuid.uuid4().hex[:8]}",
            "order_id": order_id,
            "client_msg_id": uuid.uuid4().hex,
            "body": "hello",
            **extra,
        }

    plain = json.dumps(frame())
    return [
        plain,
        json.dumps(frame(body="x" * 4000)),  # the longest body
        json.dumps(frame(body="  padded  \n")),
        json.dumps(frame(body="😀 émoji ‮rtl‬ zero​width")),
        json.dumps(frame(body="😀 escaped pair"), ensure_ascii=True),
        json.dumps(frame(client_msg_id="~" * 64)),
        json.dumps(frame(ref="")),
        json.dumps(frame(ref="r" * frames.MAX_REF_LENGTH)),
        json.dumps(frame(user_id="someone-else", author_id="x", rate_limit=False, sender="system")),
        '{"type":"ping",' + plain[1:],  # a decoy type first: the last one counts
        json.dumps(frame(), separators=(",", ":")),
        " \n" + plain + "\t ",
    ]


async def test_hostile_frames_neither_bypass_nor_drain_the_send_rate_limit(daphne, http):
    a, b = await daphne.start(2, CHAT_SEND_RATE_COUNT=str(RATE_COUNT), CHAT_SEND_RATE_WINDOW_S="3600")
    order = await database_sync_to_async(make_order)(buyer_id=RATE_USER, seller_id=OTHER_SELLER)
    world = World(order.pk, order.pk, order.pk, order.pk, order.pk, "1", "1", "1")
    token = token_for(RATE_USER)
    sockets = []
    for server in (a, a, b):  # two sockets on one process, one on another
        s = Storm(server, RATE_USER, world)
        await s.connect()
        sockets.append(s)
    hostile = generate(world, 300, 8)
    hostile = [h for h in hostile if expectation(h).close_codes is None]
    accepted: list[str] = []
    refused: Counter[str] = Counter()
    attempts = 0
    channels = itertools.cycle(["socket 0", "socket 1", "socket 2", "http a", "http b"])
    frames = disguised_sends(order.pk) * 3
    try:
        for index, text in enumerate(frames):
            channel = next(channels)
            attempts += 1
            if channel.startswith("http"):
                server = a if channel == "http a" else b
                answer = await asyncio.to_thread(
                    http,
                    "POST",
                    f"{server.http_url}/api/threads/{order.pk}/messages/",
                    token=token,
                    body={"client_msg_id": uuid.uuid4().hex, "body": f"http {index}"},
                )
                if answer.status == 201:
                    accepted.append(channel)
                else:
                    assert answer.status == 429 and answer.json["error"]["code"] == "rate_limited", answer
                    assert int(answer.headers["Retry-After"]) >= 1, answer.headers
                    refused[channel] += 1
            else:
                storm = sockets[int(channel[-1])]
                # Garbage around every attempt, on the same socket.
                await storm.run(hostile[index * 10 : index * 10 + 10])
                await storm.socket.send(text)
                answer = await storm.receive(f"reply to a send ({channel})")
                while answer.get("type") != "reply":
                    answer = await storm.receive(f"reply to a send ({channel})")
                if answer["ok"]:
                    accepted.append(channel)
                else:
                    error = answer["error"]
                    assert error["code"] == "rate_limited", (text[:200], answer)
                    assert error["retryable"] is True and error["retry_after_s"] > 0, answer
                    refused[channel] += 1
    finally:
        for s in sockets:
            await s.close()
    stored = await database_sync_to_async(Event.objects.filter(thread_id=order.pk, kind="message").count)()
    figures = (
        f"attempts {attempts}, accepted {len(accepted)} {Counter(accepted)}, refused {sum(refused.values())} "
        f"{dict(refused)}, messages stored {stored}, hostile frames {sum(s.sent for s in sockets)}"
    )
    print(f"\n[send rate limit] {figures}")
    assert len(accepted) == RATE_COUNT == stored, figures
    assert accepted == [f"socket {i}" if i < 3 else f"http {'ab'[i - 3]}" for i in range(RATE_COUNT)], (
        f"the first {RATE_COUNT} attempts are accepted, whatever garbage came before them; {figures}"
    )
    assert sum(refused.values()) == attempts - RATE_COUNT, figures
