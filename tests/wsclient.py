"""An in-process socket for consumer tests: the real ASGI application (Origin check,
session, identity, consumer) driven through Channels' WebsocketCommunicator, with the
same request/next_frame API as chat_service.client.ChatClient."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

from channels.testing import WebsocketCommunicator

from chat_service.asgi import application
from chat_service.client import ClientError
from tests.factories import token_for

Frame = dict[str, Any]


class TestSocket:
    __test__ = False  # not a pytest test class

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.hello: Frame | None = None
        self._refs = itertools.count(1)
        self._buffer: list[Frame] = []

    @classmethod
    async def open(
        cls,
        user_id: str | None,
        *,
        token: str | None = None,
        origin: bytes | None = b"http://localhost",
        expect_hello: bool = True,
    ) -> TestSocket:
        if token is None and user_id is not None:
            token = token_for(user_id)
        path = "/ws/" if token is None else f"/ws/?token={token}"
        headers = [(b"origin", origin)] if origin is not None else []
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        socket = cls(communicator)
        socket.connected = connected
        if connected and expect_hello:
            socket.hello = await socket.next_frame("hello")
        return socket

    async def _output(self, timeout: float) -> dict[str, Any]:
        # Not communicator.receive_output: on a timeout it cancels the application.
        if self.communicator.future.done() and self.communicator.output_queue.empty():
            self.communicator.future.result()  # raise what killed the consumer
            raise ConnectionError("the application has exited")
        return await asyncio.wait_for(self.communicator.output_queue.get(), timeout)

    async def _receive(self, timeout: float) -> Frame:
        message = await self._output(timeout)
        if message["type"] == "websocket.close":
            raise ConnectionError(f"closed with {message.get('code')}")
        return json.loads(message["text"])

    async def send(self, frame: Frame | str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.communicator.send_to(bytes_data=frame)
        elif isinstance(frame, str):
            await self.communicator.send_to(text_data=frame)
        else:
            await self.communicator.send_to(text_data=json.dumps(frame))

    async def request_frame(self, frame_type: str, *, timeout: float = 5, **fields: Any) -> Frame:
        ref = f"r{next(self._refs)}"
        await self.send({"type": frame_type, "ref": ref, **fields})
        while True:
            frame = await self._receive(timeout)
            if frame.get("type") == "reply" and frame.get("ref") == ref:
                return frame
            self._buffer.append(frame)

    async def request(self, frame_type: str, *, timeout: float = 5, **fields: Any) -> dict[str, Any]:
        reply = await self.request_frame(frame_type, timeout=timeout, **fields)
        if not reply["ok"]:
            raise ClientError(reply["error"])
        return reply["data"]

    async def next_frame(
        self, frame_type: str | None = None, *, timeout: float = 5, where: Callable[[Frame], bool] | None = None
    ) -> Frame:
        def matches(frame: Frame) -> bool:
            return (frame_type is None or frame.get("type") == frame_type) and (where is None or where(frame))

        for index, frame in enumerate(self._buffer):
            if matches(frame):
                return self._buffer.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self._receive(max(0.01, deadline - loop.time()))
            if matches(frame):
                return frame
            self._buffer.append(frame)

    async def no_frame(self, frame_type: str | None = None, *, timeout: float = 0.3) -> None:
        """Assert that no (matching) frame arrives within ``timeout``."""
        try:
            frame = await self.next_frame(frame_type, timeout=timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    async def close_code(self, timeout: float = 5) -> int | None:
        """Wait for the server to close the socket; return its close code."""
        while True:
            message = await self._output(timeout)
            if message["type"] == "websocket.close":
                return message.get("code")

    async def close(self) -> None:
        await self.communicator.disconnect()
