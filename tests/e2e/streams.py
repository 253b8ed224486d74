"""Reading a thread's event stream off a socket, and the stored log to compare it with.

A socket's view of a thread is the ``events`` of its ``thread.join`` reply followed by
the ``thread.event`` pushes it receives. The contract: one ordered stream, seq + 1 each
time, no gap, no repeat. ``pushed_events`` never waits on a clock to decide the outcome:
it reads until the expected last seq arrives, and the timeout is only a liveness bound
after which the test fails on what it saw.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from channels.db import database_sync_to_async

from chat_service.client import ChatClient
from chat_service.threads.models import Event

WireEvent = dict[str, Any]


async def pushed_events(client: ChatClient, order_id: str, *, until_seq: int, timeout: float = 30) -> list[WireEvent]:
    """``thread.event`` pushes of ``order_id`` in arrival order, until one with seq >=
    ``until_seq`` arrived (or ``timeout`` passed: then what arrived so far)."""
    events: list[WireEvent] = []
    if until_seq <= 0:
        return events
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return events
        try:
            frame = await client.next_frame(
                "thread.event", timeout=remaining, where=lambda f: f.get("order_id") == order_id
            )
        except TimeoutError:
            return events
        events.append(frame["event"])
        if frame["event"]["seq"] >= until_seq:
            return events


def assert_stream(
    seqs: list[int], first: int, last: int, *, who: str = "socket", client: ChatClient | None = None
) -> None:
    """``seqs`` is exactly first, first+1, ..., last (with a readable diagnosis if not)."""
    expected = list(range(first, last + 1))
    if seqs == expected:
        return
    repeats = sorted(seq for seq, count in Counter(seqs).items() if count > 1)
    missing = sorted(set(expected) - set(seqs))
    out_of_order = [(a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b <= a]
    state = "" if client is None else f" (socket closed={client.closed.is_set()} code={client.close_code})"
    raise AssertionError(
        f"{who}{state}: expected seqs {first}..{last}, got {len(seqs)} events; "
        f"missing={missing[:20]}{'...' if len(missing) > 20 else ''} repeats={repeats[:20]} "
        f"out_of_order={out_of_order[:10]} first={seqs[:5]} last={seqs[-5:]}"
    )


@database_sync_to_async
def stored_events(order_id: str) -> list[WireEvent]:
    """The thread's events in PostgreSQL, by seq, as comparable dicts."""
    return [
        {"seq": e.seq, "id": str(e.id), "author_id": e.author_id, "client_msg_id": e.client_msg_id, "body": e.body}
        for e in Event.objects.filter(thread_id=order_id).order_by("seq")
    ]


def comparable(event: WireEvent) -> WireEvent:
    """The fields of a wire event that ``stored_events`` also has."""
    return {k: (str(event[k]) if k == "id" else event[k]) for k in ("seq", "id", "author_id", "client_msg_id", "body")}
