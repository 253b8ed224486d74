"""How the service is served: the Procfile's ``web`` command is the one source of Daphne's flags.

Behaviour that shows only under the production flags is behaviour users get: the frame
cap (``--websocket-max-message-size`` also caps what Daphne *sends*), the listen backlog
a reconnect storm needs, the connect timeout. So every server that the demo, a test or
the bench starts is built from the Procfile's line by ``web_argv``, never written out
again; only the port, the interface and (for the bench's comparison servers) the ASGI
application are replaced.
"""

from __future__ import annotations

import shlex
import sys
from functools import cache
from pathlib import Path

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"
APPLICATION = "chat_service.asgi:application"


@cache
def _web_line(procfile: Path = PROCFILE) -> tuple[str, ...]:
    for line in procfile.read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web":
            return tuple(shlex.split(command))
    raise RuntimeError(f"{procfile} has no web process")


def web_argv(*, port: int, interface: str = "127.0.0.1", application: str = APPLICATION) -> list[str]:
    """The Procfile's web command for this interpreter, listening on ``interface:port``,
    serving ``application`` (the service unless a bench baseline asks otherwise)."""
    words = list(_web_line())
    program, args = words[0], words[1:]
    if args[-1] != APPLICATION:
        raise RuntimeError(f"the Procfile's web command should end with {APPLICATION}: {words}")
    args[-1] = application
    args = [_endpoint(a, port=port, interface=interface) if a.startswith("tcp:") else a for a in args]
    if program == "daphne":
        return [sys.executable, "-m", "daphne", *args]
    if program == "python":
        return [sys.executable, *args]
    raise RuntimeError(f"unexpected program in the Procfile's web command: {program}")


def _endpoint(description: str, *, port: int, interface: str) -> str:
    """A Twisted endpoint string with the port and interface replaced, its other options
    (the listen backlog) kept."""
    parts = []
    for part in description.split(":"):
        if part.startswith("port="):
            part = f"port={port}"
        elif part.startswith("interface="):
            part = f"interface={interface.replace(':', chr(92) + ':')}"
        parts.append(part)
    return ":".join(parts)


def max_message_bytes() -> int:
    """The Procfile's ``--websocket-max-message-size``: the largest frame Daphne takes in
    or sends out (the protocol's MAX_FRAME_BYTES must not exceed it)."""
    words = _web_line()
    return int(words[words.index("--websocket-max-message-size") + 1])
