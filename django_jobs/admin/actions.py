"""Job actions (retry, cancel, delete) through the engine, and the message saying what they did."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

if TYPE_CHECKING:
    from django_jobs.operations import OperationResult

logger = logging.getLogger(__name__)


class Report:
    """What one action did and skipped, as one admin message."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.done = 0
        self.skipped: dict[str, int] = defaultdict(int)
        self.result: OperationResult | None = None

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


def run_job_action(action: str, pairs: Iterable[tuple[str, str]], user: Any = None) -> Report:
    """Apply ``action`` (retry, cancel, delete) to ``(queue, job id)`` pairs (django_jobs.operations).

    The ids are grouped by queue; each group is one script call per 1,000 ids, pipelined.
    A cancel of a running job only requests it: the message says so. With ``user``, every job
    it was given gets an entry in the admin history (:func:`django_jobs.audit.record_jobs`).
    """
    from django_jobs import operations

    run = {"retry": operations.retry, "cancel": operations.cancel, "delete": operations.delete}[action]
    result = run(pairs)
    if user is not None:
        from django_jobs import audit

        audit.record_jobs(user, result, "admin")
    report = Report(JOB_ACTIONS[action])
    report.result = result
    report.done = result.done_count
    for why, n in result.skip_messages().items():
        report.skipped[why] += n
    if result.requested:
        report.skipped[REQUESTED] += result.requested_count
        report.verb = f"Cancelled (or asked {result.requested_count} running to stop)"
    logger.info("Admin %s: %d done, %d skipped", action, report.done, sum(report.skipped.values()), extra={"action": f"admin_{action}"})
    return report


#: Most jobs the confirmation page reads from Redis to say what would be skipped.
PREVIEW_LIMIT = 20_000
#: The POST field that says the operator confirmed a bulk action.
CONFIRMED = "djj_confirmed"


def confirm_page(request: HttpRequest, queryset: QuerySet[Any], action: str, opts: Any, each_context: dict[str, Any]) -> TemplateResponse:
    """The page a bulk action shows before it runs: its exact scope, and what it would skip and why.

    The count is of ``queryset`` itself, which the action walks when confirmed (all the rows of
    the filtered list for Django's "select all"). The skips come from
    :func:`django_jobs.operations.preview` over the first :data:`PREVIEW_LIMIT` of those jobs,
    read from Redis without changing anything.
    """
    from django_jobs import operations

    selection = queryset.order_by().values_list("queue", "job_id")
    total = selection.count()
    refs = list(islice(selection.iterator(chunk_size=2_000), PREVIEW_LIMIT))
    preview = operations.preview(action, refs)
    skips = sorted(((reason.value, n) for reason, n in preview.skip_counts().items()), key=lambda item: -item[1])
    verb = {"retry": "Retry", "cancel": "Cancel", "delete": "Delete"}[action]
    context = {
        **each_context,
        "opts": opts,
        "title": f"{verb} {total} job{'s' if total != 1 else ''}?",
        "action": action,
        "verb": verb,
        "total": total,
        "previewed": len(refs),
        "preview": preview,
        "skips": skips,
        "post_action": request.POST.get("action", ""),
        "select_across": request.POST.get("select_across", "0"),
        "selected": [] if request.POST.get("select_across") == "1" else request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "confirmed_field": CONFIRMED,
        "checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/django_jobs/jobrecord/confirm_action.html", context)
