"""The worker's jobs inside the web process, for the embedded default only.

With nothing configured there is one process and an in-memory broker: a separate
`manage.py worker` could not reach the sockets with its pushes. So the ASGI application
starts the same jobs (chat_service.worker's registry) on its own event loop: each pass
runs in the database thread, and what the jobs push goes through fanout to this
process's hub. In production (DATABASE_URL or REDIS_URL set) this is off and the
Procfile's worker process runs the jobs; EMBEDDED_WORKER overrides either way.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from django.conf import settings

from chat_service import worker
from chat_service.db import db_call

log = logging.getLogger(__name__)

_tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()


async def _run(runner: worker.Runner) -> None:
    while True:
        try:
            # What the pass publishes is handed to this loop without waiting for it (the
            # memory broker), so a shutdown in the middle of a pass cannot hang it.
            await db_call(runner.run_due)
        except Exception:  # noqa: BLE001 - Runner logs job failures; this guards the loop itself
            log.exception("embedded worker pass failed")
        await asyncio.sleep(min(1.0, runner.seconds_until_due() or 1.0))


def ensure_started() -> None:
    """Start the jobs on the running loop, once per loop."""
    loop = asyncio.get_running_loop()
    task = _tasks.get(loop)
    if task is None or task.done():
        worker.autodiscover()
        runner = worker.Runner(worker.registered_jobs())
        _tasks[loop] = loop.create_task(_run(runner), name="embedded-worker")
        log.info("embedded worker started with %d jobs", len(worker.registered_jobs()))


class EmbeddedWorkerMiddleware:
    """ASGI wrapper that starts the embedded worker with the first connection or request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if settings.EMBEDDED_WORKER and scope["type"] in {"http", "websocket"}:
            ensure_started()
        return await self.app(scope, receive, send)
