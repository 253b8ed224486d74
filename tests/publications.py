"""Publications (chat_service.fanout) as tests read them: envelopes and their frames decoded."""

from __future__ import annotations

from typing import Any

import orjson

FRAME_FIELDS = ("f", "n")


def decoded(publications: list[tuple[str, bytes]]) -> list[tuple[str, dict[str, Any]]]:
    """Each (topic, envelope) with the envelope and the frame texts it carries parsed."""
    result = []
    for topic, data in publications:
        envelope = orjson.loads(data)
        for name in FRAME_FIELDS:
            if isinstance(envelope.get(name), str):
                envelope[name] = orjson.loads(envelope[name])
        result.append((topic, envelope))
    return result


def thread_events(publications: list[tuple[str, bytes]], order_id: str | None = None) -> list[dict[str, Any]]:
    """The events published to threads (to ``order_id``'s only, if given), in order."""
    return [
        envelope["f"]["event"]
        for topic, envelope in decoded(publications)
        if envelope["k"] == "event" and (order_id is None or topic == f"t.{order_id}")
    ]


def counts_to(publications: list[tuple[str, bytes]]) -> set[str]:
    """The users whose counts were published."""
    return {topic.removeprefix("u.") for topic, envelope in decoded(publications) if envelope["k"] == "unread"}
