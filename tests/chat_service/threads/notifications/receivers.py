"""Real receivers on loopback for the notification channels.

* ``PushReceiver``: an HTTP server standing in for the marketplace's push service. It
  checks every request's signature with its own HMAC (not the code under test) and
  records key, body and answer. ``fail_users`` always get a 500; ``on_request`` may
  keep a request unanswered (returns True) to simulate a worker dying mid-request.
* ``SmtpReceiver``: an aiosmtpd server; every message goes through a real SMTP
  conversation (EHLO, MAIL FROM, RCPT TO, DATA) and is recorded parsed.
"""

from __future__ import annotations

import email
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.signing import signature_ok

SECRET = "test-notify-secret-" + "n" * 32


@dataclass
class Push:
    key: str
    body: bytes
    status: int | None
    signed: bool
    run: int = 0

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class PushReceiver:
    secret: str = SECRET
    fail_users: set[str] = field(default_factory=set)
    status_for_users: dict[str, int] = field(default_factory=dict)  # user -> answer, always
    on_request: Callable[[Push], bool] | None = None
    received: list[Push] = field(default_factory=list)
    run: int = 0

    def start(self) -> None:
        receiver = self
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                receiver.handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that died mid-request (killed worker) is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/push/"

    def signature_ok(self, header: str | None, body: bytes) -> bool:
        return signature_ok(self.secret, header, body)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", "0")))
        signed = self.signature_ok(request.headers.get("X-Bridge-Signature"), body)
        user = json.loads(body).get("user_id") if signed else None
        status: int | None = 401 if not signed else 500 if user in self.fail_users else 200
        if signed and user in self.status_for_users:
            status = self.status_for_users[user]
        record = Push(
            key=request.headers.get("Idempotency-Key", ""), body=body, status=status, signed=signed, run=self.run
        )
        with self.lock:
            self.received.append(record)
        if self.on_request is not None and self.on_request(record):
            record.status = None
            request.close_connection = True
            return
        answer = b'{"ok":true}' if status == 200 else b'{"error":"no"}'
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(answer)))
        request.end_headers()
        request.wfile.write(answer)

    def accepted(self) -> list[Push]:
        return [p for p in self.received if p.status == 200]


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: Message


class SmtpReceiver:
    def __init__(self) -> None:
        self.messages: list[Mail] = []
        self.refuse: dict[str, str] = {}  # recipient -> SMTP answer to RCPT TO
        receiver = self

        class Handler:
            async def handle_RCPT(
                self,
                server: Any,
                session: Any,
                envelope: Any,
                address: str,  # noqa: N802
                rcpt_options: list[str],
            ) -> str:
                if address in receiver.refuse:
                    return receiver.refuse[address]
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                receiver.messages.append(
                    Mail(envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content))
                )
                return "250 Message accepted for delivery"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
