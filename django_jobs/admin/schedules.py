"""The Schedules page: cron schedules with next and last run; pause, resume, trigger."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from django_jobs.admin.common import _need, _page

logger = logging.getLogger(__name__)


def schedules_view(request: HttpRequest) -> HttpResponse:
    """The cron schedules (code and settings only) with next and last run; POST pauses, resumes, triggers."""
    from django_jobs import scheduler

    if request.method == "POST":
        _need(request, "view_jobrecord")
        _need(request, "manage_schedules")
        name, op = request.POST.get("schedule", ""), request.POST.get("op", "")
        from django_jobs.admin.queues import _queued

        before = len(_queued(request))
        try:
            if op == "pause":
                changed = scheduler.pause_schedule(name)
                messages.success(request, f"Schedule {name!r} is paused: its ticks are skipped until it is resumed." if changed else f"Schedule {name!r} was paused already.")
            elif op == "resume":
                changed = scheduler.resume_schedule(name)
                messages.success(request, f"Schedule {name!r} runs again from its next tick." if changed else f"Schedule {name!r} was not paused.")
            elif op == "trigger":
                job_id = scheduler.trigger_schedule(name)
                messages.success(request, f"Schedule {name!r} triggered: job {job_id} is enqueued.")
            else:
                messages.error(request, f"Unknown schedule operation {op!r}.")
        except LookupError as exc:
            messages.error(request, str(exc))
        logger.info("Admin schedule %s %s", op, name, extra={"action": "admin_schedule"})
        from django_jobs import audit

        audit.record(request.user, f"schedule {name}", f"Schedule {op} (admin): {' '.join(str(m) for m in _queued(request)[before:])}")
        return HttpResponseRedirect(request.path)
    return _page(request, "admin/django_jobs/schedules.html", "Schedules", {
        "rows": scheduler.schedules_table(),
        "can_manage": request.user.has_perm("django_jobs.manage_schedules"),
    })
