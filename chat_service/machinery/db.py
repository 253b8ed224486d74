"""The ORM from the event loop, for everything off the hot path.

Commerce commands, mutes and preferences, presence's seller lookups, session identities
and the embedded worker use Django's ORM and its transactions. From async code they run
the way Channels runs them (``database_sync_to_async``: on asgiref's one database thread,
old and broken connections closed around each call). The socket's hot path does not
come here: it talks to PostgreSQL on the event loop (chat_service.machinery.pgpool).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from channels.db import database_sync_to_async

T = TypeVar("T")


async def db_call(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run the sync ``func`` (ORM work) on the database thread and wait for its result."""
    return await database_sync_to_async(func)(*args, **kwargs)
