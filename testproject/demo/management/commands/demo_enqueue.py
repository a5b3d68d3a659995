"""``manage.py demo_enqueue``: enqueue a sample of every demo job (the launcher runs it at start)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.views import ACTIONS


class Command(BaseCommand):
    help = "Enqueue one click of each demo button (or of --kinds), optionally wait for them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kinds", default="fast,slow,flaky,async,delayed,plain",
                            help=f"Comma-separated buttons to press, of: {', '.join(ACTIONS)}.")
        parser.add_argument("--wait", type=float, default=0.0,
                            help="Seconds to wait until the jobs have finished (0: do not wait).")

    def handle(self, *args: Any, **options: Any) -> None:
        kinds = [k.strip() for k in options["kinds"].split(",") if k.strip()]
        unknown = [k for k in kinds if k not in ACTIONS]
        if unknown:
            raise CommandError(f"Unknown demo job(s) {unknown!r}. Choose from: {', '.join(ACTIONS)}.")
        results = []
        for kind in kinds:
            enqueued = ACTIONS[kind].enqueue()
            results.extend(enqueued)
            self.stdout.write(f"enqueued {kind:<8} {len(enqueued):>3} job(s), first id {enqueued[0].id}")
        if options["wait"] <= 0:
            return
        deadline = time.monotonic() + options["wait"]
        for result in results:
            while True:
                result.refresh()
                if result.is_finished:
                    break
                if time.monotonic() > deadline:
                    raise CommandError(f"Job {result.id} ({result.task.name}) is still {result.state!r}.")
                time.sleep(0.05)
        for result in results:
            self.stdout.write(f"finished {result.task.name} {result.id}: {result.state}")
