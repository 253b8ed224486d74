"""ThreadStream without a server: a fake log, a fake socket, and every order of arrival.

The stream's promise (chat_service.transport.socket.streams): whatever the broker drops, repeats or
reorders, and whatever the socket's own work does meanwhile, the socket is shown the
thread's events once each, in seq order, with no gap; its own message's reply is its
element for that event.
"""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat_service.transport.socket.streams import ThreadStream


class Log:
    """The stored thread (events committed in seq order) and what one socket was shown of it."""

    def __init__(self, n: int = 0) -> None:
        self.committed = n
        self.shown: list[int] = []
        self.reads = 0

    def commit(self, seq: int) -> None:
        assert seq == self.committed + 1, "seqs are allocated in order"
        self.committed = seq

    def frame(self, seq: int) -> str:
        return orjson.dumps({"type": "thread.event", "order_id": "A", "event": {"seq": seq}}).decode()

    def reply(self, seq: int) -> str:
        return orjson.dumps({"type": "reply", "seq": seq}).decode()

    async def send(self, text: str) -> None:
        frame = orjson.loads(text)
        self.shown.append(frame["event"]["seq"] if frame["type"] == "thread.event" else frame["seq"])
        await asyncio.sleep(0)  # a send may let others run

    async def read(self, after: int, until: int | None, limit: int) -> list[dict]:
        self.reads += 1
        await asyncio.sleep(0)
        last = self.committed if until is None else min(until, self.committed)
        return [{"seq": seq} for seq in range(after + 1, last + 1)][:limit]

    def stream(self, capacity: int = 1000) -> ThreadStream:
        return ThreadStream(
            "A", send=self.send, read=self.read, encode=lambda e: self.frame(e["seq"]), capacity=capacity
        )


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_live_events_in_order_are_shown_at_once_without_reading_the_log():
    log = Log(3)
    stream = log.stream()
    for seq in (1, 2, 3):
        await stream.offer(seq, log.frame(seq))
    assert log.shown == [1, 2, 3] and log.reads == 0


async def test_a_gap_is_filled_from_the_log_before_the_event_that_showed_it():
    log = Log(5)
    stream = log.stream()
    await stream.offer(1, log.frame(1))
    await stream.offer(5, log.frame(5))
    await settle()
    assert log.shown == [1, 2, 3, 4, 5]


async def test_repeats_and_old_events_are_dropped():
    log = Log(3)
    stream = log.stream()
    for seq in (1, 2, 1, 2, 3, 3, 1):
        await stream.offer(seq, log.frame(seq))
    await settle()
    assert log.shown == [1, 2, 3]


async def test_events_arriving_while_the_stream_is_held_wait_and_follow_in_order():
    log = Log(4)
    stream = log.stream()
    async with stream.held():
        await stream.offer(2, log.frame(2))
        await stream.offer(1, log.frame(1))
        assert log.shown == []
    assert log.shown == [1, 2]
    await stream.offer(4, log.frame(4))
    await settle()
    assert log.shown == [1, 2, 3, 4]


async def test_past_its_capacity_a_held_stream_reads_the_log_instead():
    log = Log(50)
    stream = log.stream(capacity=10)
    async with stream.held():
        for seq in range(1, 51):
            await stream.offer(seq, log.frame(seq))
    assert log.shown == list(range(1, 51)) and log.reads >= 1


async def test_own_reply_comes_after_every_earlier_event_in_place_of_its_thread_event():
    log = Log(1)
    stream = log.stream()
    await stream.offer(1, log.frame(1))
    log.commit(2)  # the other party's event 2 is still in flight when the socket writes 3
    async with stream.held():
        log.commit(3)
        await stream.own(3, log.reply(3))
    await stream.offer(2, log.frame(2))
    await stream.offer(3, log.frame(3))  # its own event, published afterwards
    await settle()
    assert log.shown == [1, 2, 3]


async def test_a_gap_shown_during_the_own_write_waits_for_the_reply():
    log = Log(1)
    stream = log.stream()
    await stream.offer(1, log.frame(1))
    async with stream.held():
        log.commit(2)  # the socket's own message
        log.commit(3)  # the other party's, right after
        await stream.offer(3, log.frame(3))  # arrives before the reply is sent
        await settle()
        await stream.own(2, log.reply(2))
    await settle()
    assert log.shown == [1, 2, 3]


async def test_a_failed_holder_shows_nothing_on_its_behalf():
    log = Log(2)
    stream = log.stream()
    with pytest.raises(LookupError):
        async with stream.held():
            await stream.offer(1, log.frame(1))
            raise LookupError("a join refused for a stranger")
    stream.close()  # the join drops the stream it created
    await settle()
    assert log.shown == []


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 40),
    st.randoms(use_true_random=False),
    st.floats(0, 0.5),
    st.floats(0, 0.5),
    st.sets(st.integers(1, 40), max_size=8),
    st.sampled_from([2, 5, 1000]),
)
def test_any_mix_of_loss_repeats_reordering_and_own_replies_shows_the_log_exactly_once(
    n, rnd: random.Random, loss: float, repeat: float, own: set[int], capacity: int
):
    """Events are committed in seq order; the other party's are published (lost, repeated,
    swapped with a neighbour), the socket's own are written inside its hold and answered."""

    async def scenario() -> list[int]:
        log = Log()
        stream = log.stream(capacity=capacity)
        in_flight: list[int] = []

        async def publish_some() -> None:
            while in_flight and rnd.random() < 0.7:
                index = 1 if len(in_flight) > 1 and rnd.random() < 0.2 else 0  # a swap
                seq = in_flight.pop(index)
                await stream.offer(seq, log.frame(seq))

        for seq in range(1, n + 1):
            if seq in own:
                async with stream.held():
                    log.commit(seq)
                    await publish_some()  # events arrive while the socket writes
                    await stream.own(seq, log.reply(seq))
                continue
            log.commit(seq)
            if rnd.random() >= loss:
                in_flight.append(seq)
            if rnd.random() < repeat:
                in_flight.append(rnd.randint(1, seq))
            await publish_some()
            if rnd.random() < 0.3:
                await asyncio.sleep(0)
        for seq in in_flight:
            await stream.offer(seq, log.frame(seq))
        await settle()
        # The tail: what no later event revealed is the periodic sync's (supervisor) job.
        async with stream.held():
            await stream.catch_up()
        return log.shown

    assert asyncio.run(scenario()) == list(range(1, n + 1))
