"""The Django admin as django_jobs' control plane: jobs, queues, workers, schedules, a dashboard.

The job list and detail pages read :class:`~django_jobs.models.JobRecord` rows (the database
mirror); every action goes through the engine (one Lua script call per queue and chunk of
ids), never by editing rows: the mirror updates the rows from the events the scripts emit.
The queues, workers and schedules pages read Redis live. The pages that are not models hang
off the job admin's URLs (``admin/django_jobs/jobrecord/queues/`` ...) and are listed in the
admin index under the app. See docs/admin.md.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from django_jobs.admin.actions import ACTION_PERMISSIONS, JOB_ACTIONS, Report, run_job_action
from django_jobs.admin.charts import charts
from django_jobs.admin.common import pages_context, progress_html
from django_jobs.admin.dashboard import (
    DASHBOARD_NAMES,
    PERCENTILE_FETCH,
    WINDOWS,
    dashboard_data,
    dashboard_view,
)
from django_jobs.admin.detail import FLOW_ROWS, job_detail
from django_jobs.admin.jobs import (
    ACTION_CHUNK,
    COUNT_CAP,
    CappedPaginator,
    JobRecordAdmin,
    NameFilter,
    QueueFilter,
)
from django_jobs.admin.queues import PURGE_LIMIT, QUEUE_STATES, queues_view
from django_jobs.admin.redaction import REDACTED, redact_arguments, redact_text
from django_jobs.admin.schedules import schedules_view
from django_jobs.admin.workers import workers_view

__all__ = [
    "ACTION_CHUNK", "ACTION_PERMISSIONS", "COUNT_CAP", "DASHBOARD_NAMES", "FLOW_ROWS", "JOB_ACTIONS", "PERCENTILE_FETCH",
    "PURGE_LIMIT", "QUEUE_STATES", "REDACTED", "WINDOWS", "CappedPaginator", "JobRecordAdmin", "NameFilter", "QueueFilter",
    "Report", "charts", "dashboard_data", "dashboard_view", "job_detail", "pages_context", "progress_html", "queues_view",
    "redact_arguments", "redact_text", "run_job_action", "schedules_view", "workers_view",
]


# -- the admin index: list the pages under the app ---------------------------------------------

_get_app_list = admin.site.get_app_list


def _app_list_with_pages(request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
    """The default site's app list, with the control-plane pages listed under django_jobs."""
    apps = _get_app_list(request, app_label)
    for app in apps:
        if app["app_label"] == "django_jobs" and request.user.has_perm("django_jobs.view_jobrecord"):
            for title, url in pages_context(request)["djj_pages"][1:]:
                app["models"].append({
                    "name": title, "object_name": title, "perms": {"view": True}, "admin_url": url, "add_url": None, "view_only": True,
                })
    return apps


admin.site.get_app_list = _app_list_with_pages  # type: ignore[method-assign]
