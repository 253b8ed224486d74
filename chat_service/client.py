"""A small asyncio client for the chat socket, and a command line around it.

Importable (tests and bench/ drive the service with it)::

    async with ChatClient.connect("ws://127.0.0.1:8000/ws/", token) as client:
        joined = await client.request("thread.join", order_id="A1001")
        await client.send_message("A1001", "Hello!")
        frame = await client.next_frame("thread.event")

Command line: ``python -m chat_service.client --url ws://127.0.0.1:8000/ws/ --token T
--order A1001`` joins the order's thread, prints what arrives and sends every line typed.

Protocol 2 (docs/protocol.md): on a socket that joined a thread, the reply to its own
``message.send`` is that socket's element of the thread's stream; no ``thread.event``
follows for it. The client puts the reply's event into its frames as a ``thread.event``
(marked ``"own": true``) where the reply arrived, so that ``next_frame("thread.event")``
and ``frames()`` read every thread as the one ordered stream it is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import websockets
from websockets.typing import Origin

Frame = dict[str, Any]


class ClientError(Exception):
    """The server answered a request with ok=false."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.error = error


class ChatClient:
    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.hello: Frame | None = None
        self._refs = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Frame]] = {}
        self._sends: dict[str, str] = {}  # ref of a message.send in flight -> its order id
        self.joined: set[str] = set()  # threads joined on this socket
        self._frames: asyncio.Queue[Frame] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, url: str, token: str | None, *, origin: str | None = None, open_timeout: float = 10
    ) -> AsyncIterator[ChatClient]:
        client = await cls.open(url, token, origin=origin, open_timeout=open_timeout)
        try:
            yield client
        finally:
            await client.close()

    @classmethod
    async def open(
        cls,
        url: str,
        token: str | None,
        *,
        origin: str | None = None,
        open_timeout: float = 10,
        wait_hello: bool = True,
    ) -> ChatClient:
        if token is not None:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode({'token': token})}"
        if origin is None:
            parts = urlsplit(url)
            origin = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
        socket = await websockets.connect(url, origin=Origin(origin), open_timeout=open_timeout, max_size=2**20)
        client = cls(socket)
        client._reader = asyncio.get_running_loop().create_task(client._read())
        if wait_hello:
            client.hello = await client.next_frame("hello", timeout=open_timeout)
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                frame = json.loads(raw)
                ref = frame.get("ref") if frame.get("type") == "reply" else None
                order_id = self._sends.pop(ref, None) if ref is not None else None
                if order_id in self.joined and frame.get("ok") and not frame["data"].get("duplicate"):
                    self._frames.put_nowait(
                        {"type": "thread.event", "order_id": order_id, "event": frame["data"]["event"], "own": True}
                    )
                future = self._pending.pop(ref, None) if ref is not None else None
                if future is not None and not future.done():
                    future.set_result(frame)
                else:
                    self._frames.put_nowait(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.socket.close_code
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"socket closed ({self.close_code})"))

    async def send_raw(self, data: str | bytes) -> None:
        await self.socket.send(data)

    async def request(self, frame_type: str, *, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        """Send a command with a ref and return the reply's data (ClientError if not ok)."""
        reply = await self.request_frame(frame_type, timeout=timeout, **fields)
        if not reply["ok"]:
            raise ClientError(reply["error"])
        if frame_type == "thread.join":
            self.joined.add(fields["order_id"])
        elif frame_type == "thread.leave":
            self.joined.discard(fields["order_id"])
        return reply["data"]

    async def request_frame(self, frame_type: str, *, timeout: float = 10, **fields: Any) -> Frame:
        ref = f"r{next(self._refs)}"
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        if frame_type == "message.send":
            self._sends[ref] = fields.get("order_id", "")
        await self.socket.send(json.dumps({"type": frame_type, "ref": ref, **fields}))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(ref, None)
            self._sends.pop(ref, None)

    async def send_message(
        self, order_id: str, body: str, *, client_msg_id: str | None = None, timeout: float = 10
    ) -> dict[str, Any]:
        data = await self.request(
            "message.send",
            order_id=order_id,
            body=body,
            client_msg_id=client_msg_id or uuid.uuid4().hex,
            timeout=timeout,
        )
        return data["event"]

    async def next_frame(
        self, frame_type: str | None = None, *, timeout: float = 10, where: Callable[[Frame], bool] | None = None
    ) -> Frame:
        """The next pushed frame (of ``frame_type``, matching ``where``); others are skipped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {frame_type or 'frame'} within {timeout}s")
            frame = await asyncio.wait_for(self._frames.get(), remaining)
            if (frame_type is None or frame.get("type") == frame_type) and (where is None or where(frame)):
                return frame

    async def frames(self) -> AsyncIterator[Frame]:
        """Every pushed frame as it arrives, until the socket closes."""
        while not (self.closed.is_set() and self._frames.empty()):
            getter = asyncio.ensure_future(self._frames.get())
            closing = asyncio.ensure_future(self.closed.wait())
            done, _ = await asyncio.wait({getter, closing}, return_when=asyncio.FIRST_COMPLETED)
            closing.cancel()
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()

    def drain(self) -> list[Frame]:
        """Every pushed frame received so far and not yet consumed."""
        frames = []
        while not self._frames.empty():
            frames.append(self._frames.get_nowait())
        return frames

    async def close(self) -> None:
        await self.socket.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


async def _heartbeat(client: ChatClient, every: float) -> None:
    while not client.closed.is_set():
        await asyncio.sleep(every)
        with contextlib.suppress(Exception):
            await client.socket.send(json.dumps({"type": "ping"}))


def _show(frame: Frame) -> str | None:
    if frame.get("type") == "thread.event":
        event = frame["event"]
        who = event.get("author_id") or event.get("author_role")
        return f"[{frame['order_id']} #{event['seq']}] {who}: {event['body']}"
    if frame.get("type") in {"pong"}:
        return None
    return json.dumps(frame)


async def _cli(args: argparse.Namespace) -> int:
    async with ChatClient.connect(args.url, args.token, origin=args.origin) as client:
        assert client.hello is not None
        print(f"connected as {client.hello['user']['id']} ({client.hello['unread_total']} unread)")
        heartbeat = asyncio.create_task(_heartbeat(client, client.hello["heartbeat_s"] * 0.8))
        joined = await client.request("thread.join", order_id=args.order)
        for event in joined["events"]:
            print(_show({"type": "thread.event", "order_id": args.order, "event": event}))

        async def printer() -> None:
            # Not next_frame(): asyncio.wait_for in 3.11 can swallow the cancel at exit.
            async for frame in client.frames():
                line = _show(frame)
                if line:
                    print(line, flush=True)

        printing = asyncio.create_task(printer())
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while line := await reader.readline():
                text = line.decode().rstrip("\n")
                if text:
                    try:
                        await client.send_message(args.order, text)
                    except ClientError as exc:
                        print(f"! {exc}", flush=True)
        finally:
            printing.cancel()
            heartbeat.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chat in an order's thread from the terminal.")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/ws/")
    parser.add_argument("--token", required=True, help="a token from `manage.py chat_token USER`")
    parser.add_argument("--order", required=True, help="the order id whose thread to join")
    parser.add_argument("--origin", default=None, help="Origin header (default: the server's own)")
    return asyncio.run(_cli(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
