"""ASGI entry point of the floor: ``daphne bench.floor.asgi:application`` (see the package
docstring for what it is and why it does nothing more)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

# The room (the socket's path) -> the send callables of the sockets in it. Process-local.
rooms: dict[str, set[Send]] = {}


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await _broadcast(scope["path"], receive, send)


async def _broadcast(room_key: str, receive: Receive, send: Send) -> None:
    """Accept, join the room, relay every text frame to the others until the socket goes."""
    await receive()  # websocket.connect: accepted whatever it carries
    await send({"type": "websocket.accept"})
    room = rooms.setdefault(room_key, set())
    room.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                # A snapshot: a send that yielded would otherwise let a join or a leave
                # change the set under the loop (Daphne's does not yield; this does not rely on it).
                for other in tuple(room):
                    if other is not send:
                        await other({"type": "websocket.send", "text": text})
    finally:
        room.discard(send)
        if not room:
            rooms.pop(room_key, None)
