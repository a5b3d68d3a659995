"""Job actions (retry, cancel, delete) through the engine, and the message saying what they did."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from django.contrib import messages
from django.http import HttpRequest

from django_jobs.admin.common import _engine
from django_jobs.engine.protocol import CancelCode, DeleteCode, RetryCode

logger = logging.getLogger(__name__)


class Report:
    """What one action did and skipped, as one admin message."""

    def __init__(self, verb: str, reasons: dict[int, str]) -> None:
        self.verb = verb
        self.reasons = reasons
        self.done = 0
        self.skipped: dict[str, int] = defaultdict(int)

    def add(self, codes: Iterable[int], done: Iterable[int] = (1,)) -> None:
        done = set(done)
        for code in codes:
            if code in done:
                self.done += 1
            else:
                self.skipped[self.reasons.get(code, f"code {code}")] += 1

    def send(self, request: HttpRequest) -> None:
        text = f"{self.verb} {self.done} job{'s' if self.done != 1 else ''}."
        if self.skipped:
            parts = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            text += f" Skipped {sum(self.skipped.values())}: {parts}."
        messages.add_message(request, messages.WARNING if self.skipped and not self.done else messages.SUCCESS, text)


#: What each job action does: (verb, engine method, codes counted as done, skip reasons).
JOB_ACTIONS: dict[str, tuple[str, str, tuple[int, ...], dict[int, str]]] = {
    "retry": ("Retried", "retry_many", (RetryCode.RETRIED,), {
        RetryCode.NOT_RETRYABLE: "not failed or cancelled", RetryCode.UNKNOWN: "no longer in Redis",
        RetryCode.GUARDED: "their unique key is held by another job",
        RetryCode.CHILD_FAILED: "flow parents that failed through a child not retried with them (retry the child)"}),
    "cancel": ("Cancelled", "cancel_many", (CancelCode.CANCELLED,), {
        CancelCode.REQUESTED: "running (cancellation requested)", CancelCode.FINISHED: "already finished",
        CancelCode.UNKNOWN: "no longer in Redis"}),
    "delete": ("Deleted", "delete_jobs", (DeleteCode.DELETED,), {
        DeleteCode.KEPT: "running or waited for by a flow parent (cancel them first)", DeleteCode.UNKNOWN: "no longer in Redis"}),
}
#: The permission each job action needs.
ACTION_PERMISSIONS = {"retry": "django_jobs.retry_jobrecord", "cancel": "django_jobs.cancel_jobrecord", "delete": "django_jobs.delete_jobrecord"}


def run_job_action(action: str, pairs: Iterable[tuple[str, str]]) -> Report:
    """Apply ``action`` (retry, cancel, delete) to ``(queue, job id)`` pairs through the engine.

    The ids are grouped by queue; each group is one script call per 1,000 ids, pipelined.
    A cancel of a running job only requests it: the message says so.
    """
    verb, method, done, reasons = JOB_ACTIONS[action]
    report = Report(verb, reasons)
    requested = 0
    by_queue: dict[str, list[str]] = defaultdict(list)
    for queue, job_id in pairs:
        by_queue[queue].append(job_id)
    engine = _engine()
    for queue, ids in by_queue.items():
        codes = getattr(engine, method)(queue, ids)
        report.add(codes, done)
        requested += sum(1 for c in codes if action == "cancel" and c == CancelCode.REQUESTED)
    if requested:
        report.verb = f"Cancelled (or asked {requested} running to stop)"
    logger.info("Admin %s: %d done, %d skipped", action, report.done, sum(report.skipped.values()), extra={"action": f"admin_{action}"})
    return report
