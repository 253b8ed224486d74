"""``manage.py worker [--once]``: run the registered periodic jobs (see chat_service.machinery.worker).

Without ``--once`` it runs until SIGTERM or Ctrl+C and exits 0 after the running job
finished. With ``--once`` it runs every registered job once and exits, non-zero if any
of them failed (for cron, and for checking a deployment's jobs by hand).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat_service.machinery import worker


class Command(BaseCommand):
    help = "Run the worker's periodic jobs until SIGTERM/SIGINT (or each once with --once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run each job once, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        worker.autodiscover()
        runner = worker.Runner(worker.registered_jobs())
        if not options["once"]:
            with worker.stop_on_signals(runner):
                runner.run_forever()
            return
        # At start every job is due, so one pass runs each of them exactly once.
        runs = runner.run_due()
        for run in runs:
            self.stdout.write(f"{run.name}: {'ok' if run.ok else 'FAILED'} ({run.duration_s:.3f} s)")
        if not runs:
            self.stdout.write("No jobs registered.")
        failed = [run.name for run in runs if not run.ok]
        if failed:
            raise CommandError(f"{len(failed)} job(s) failed: {', '.join(failed)} (see the log)")
