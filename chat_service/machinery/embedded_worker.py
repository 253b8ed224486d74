"""The worker's jobs inside the web process, for the embedded default only.

With nothing configured there is one process and an in-memory broker: a separate
`manage.py worker` could not reach the sockets with its pushes. So the ASGI application
starts the same jobs (chat_service.machinery.worker's registry) on its own event loop: each pass
runs in a thread of its own, and what the jobs push goes through fanout to this
process's hub. In production (DATABASE_URL or REDIS_URL set) this is off and the
Procfile's worker process runs the jobs; EMBEDDED_WORKER overrides either way.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from chat_service.machinery import worker

log = logging.getLogger(__name__)

_tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-worker")


async def _run(runner: worker.Runner) -> None:
    while True:
        try:
            # A thread of its own, not asgiref's database thread: a job that calls async
            # code (async_to_sync, the presence registry) then runs it on a loop of its
            # own, where on the database thread it would wait for this loop, which a
            # shutdown stops (the process then hung at exit, joining that thread). What
            # the pass publishes is handed to this loop without waiting (memory broker).
            await asyncio.get_running_loop().run_in_executor(_executor, _pass, runner)
        except Exception:  # noqa: BLE001 - Runner logs job failures; this guards the loop itself
            log.exception("embedded worker pass failed")
        await asyncio.sleep(min(1.0, runner.seconds_until_due() or 1.0))


def _pass(runner: worker.Runner) -> None:
    try:
        runner.run_due()
    finally:
        close_old_connections()


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
