"""``python -m chat_service.serve [Daphne's arguments]``: Daphne, on uvloop's event loop.

Daphne runs Twisted's reactor on an asyncio loop that ``daphne.server`` creates when it
is imported; the event-loop policy in force at that moment decides which loop it is. So
this entry point installs uvloop's policy and then hands the command line to Daphne's
own CLI, unchanged: the server, its flags and its behaviour are Daphne's. Measured in
docs/performance.md ("What was kept").
"""

from __future__ import annotations

import asyncio


def main() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
