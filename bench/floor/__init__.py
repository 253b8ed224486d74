"""The bench's floor: what Daphne itself allows, with nothing of the application in the way.

A bare ASGI broadcast (``bench.floor.asgi:application``), served by the same Daphne with
the Procfile's flags as the service and the baseline, so that its figures are the ceiling
any Channels application on this server could reach and the service's figures can be read
as a fraction of it.

Invariants, each of them the point:

* no Django, no Channels, no layer, no database, no Redis: the application imports only
  the standard library;
* every websocket is accepted, whatever its headers; its room is its path (the bench's
  peers use ``/floor/<room>/``), a process-local set of the room's sockets (one dict of
  sets per process);
* every text frame a socket receives is sent as is (the same ``str``, not parsed, not
  re-encoded) to every *other* socket of its room, and nothing else is done per message;
* any HTTP request gets a tiny 200 (the bench's ``GET /healthz``).

Rooms do not cross processes: there is no pub/sub. When the bench runs N > 1 processes
both parties of a room must therefore reach the same process, so the floor's peers choose
their process by a stable hash of the room (``bench.traffic.FloorPeer``: CRC-32 of the
room modulo N), where the service's and the baseline's put the two parties of a thread on
different processes. With N > 1 the floor's messages never cross processes; the service's
and the baseline's do (through Redis). Its figures are the floor of Daphne, not of a
multi-process deployment.
"""
