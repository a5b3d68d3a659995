"""Job actions (retry, cancel, delete) through the engine, and the message saying what they did."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from django.contrib import messages
from django.http import HttpRequest

logger = logging.getLogger(__name__)


class Report:
    """What one action did and skipped, as one admin message."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.done = 0
        self.skipped: dict[str, int] = defaultdict(int)

    def send(self, request: HttpRequest) -> None:
        text = f"{self.verb} {self.done} job{'s' if self.done != 1 else ''}."
        if self.skipped:
            parts = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            text += f" Skipped {sum(self.skipped.values())}: {parts}."
        messages.add_message(request, messages.WARNING if self.skipped and not self.done else messages.SUCCESS, text)


#: The verb of each job action's message.
JOB_ACTIONS: dict[str, str] = {"retry": "Retried", "cancel": "Cancelled", "delete": "Deleted"}
#: The permission each job action needs.
ACTION_PERMISSIONS = {"retry": "django_jobs.retry_jobrecord", "cancel": "django_jobs.cancel_jobrecord", "delete": "django_jobs.delete_jobrecord"}
#: How the admin counts a running job a cancel asked to stop.
REQUESTED = "running (cancellation requested)"


def run_job_action(action: str, pairs: Iterable[tuple[str, str]]) -> Report:
    """Apply ``action`` (retry, cancel, delete) to ``(queue, job id)`` pairs (django_jobs.operations).

    The ids are grouped by queue; each group is one script call per 1,000 ids, pipelined.
    A cancel of a running job only requests it: the message says so.
    """
    from django_jobs import operations

    run = {"retry": operations.retry, "cancel": operations.cancel, "delete": operations.delete}[action]
    result = run(pairs)
    report = Report(JOB_ACTIONS[action])
    report.done = result.done_count
    for why, n in result.skip_messages().items():
        report.skipped[why] += n
    if result.requested:
        report.skipped[REQUESTED] += result.requested_count
        report.verb = f"Cancelled (or asked {result.requested_count} running to stop)"
    logger.info("Admin %s: %d done, %d skipped", action, report.done, sum(report.skipped.values()), extra={"action": f"admin_{action}"})
    return report
