"""WebSocket close codes the server uses.

4000–4499: the client should reconnect (with backoff; for 4001 with a fresh token).
4500–4999: the client should not reconnect with the same credentials.
Codes below 4000 are the protocol's own (1000 normal, 1009 frame too big, 1011 error).
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    SERVER_SHUTDOWN = 4000  # the process is going away; reconnect elsewhere
    TOKEN_EXPIRED = 4001  # the token's exp passed; fetch a new token, then reconnect
    HEARTBEAT_TIMEOUT = 4002  # nothing received for 2 × heartbeat_s; reconnect
    TOO_MANY_CONNECTIONS = 4003  # the per-user connection cap is reached; retry later
    UNAVAILABLE = 4004  # the server could not set the connection up (Redis, database); retry with backoff
    UNAUTHORIZED = 4500  # missing or invalid token; do not reconnect with it

    @property
    def reconnect(self) -> bool:
        return self.value < 4500
