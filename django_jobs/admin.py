"""The Django admin as django_jobs' control plane: jobs, queues, workers, schedules, a dashboard.

The job list and detail pages read :class:`~django_jobs.models.JobRecord` rows (the database
mirror); every action goes through the engine (one Lua script call per queue and chunk of
ids), never by editing rows: the mirror updates the rows from the events the scripts emit.
The queues, workers and schedules pages read Redis live. The pages that are not models hang
off the job admin's URLs (``admin/django_jobs/jobrecord/queues/`` ...) and are listed in the
admin index under the app. See docs/admin.md.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Case, Count, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from django_jobs.engine.protocol import CancelCode, DeleteCode, RetryCode
from django_jobs.engine.record import JobView
from django_jobs.models import JobRecord, JobState

logger = logging.getLogger(__name__)

#: What the admin shows instead of a redacted value.
REDACTED = "[redacted]"
#: The change list counts at most this many rows (a capped count stays fast on a million rows).
COUNT_CAP = 10_000
#: Job ids per database read when an action walks its selection.
ACTION_CHUNK = 2_000
#: Most jobs ``purge`` deletes in one click (it calls the engine 1,000 at a time).
PURGE_LIMIT = 100_000
#: Job names the dashboard charts at most (the busiest).
DASHBOARD_NAMES = 20
#: Up to this many finished jobs of one name, the dashboard reads their run times in one query.
PERCENTILE_FETCH = 50_000
#: The dashboard's windows: (label, length, bucket).
WINDOWS = {"hour": ("last hour", timedelta(hours=1), timedelta(minutes=1)), "day": ("last day", timedelta(days=1), timedelta(minutes=15))}


# -- redaction --------------------------------------------------------------------------------


def _secret(name: str, words: Iterable[str]) -> bool:
    low = name.lower()
    return any(word in low for word in words)


def _redact_value(value: Any, words: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _secret(k, words) else _redact_value(v, words) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, words) for v in value]
    return value


def redact_arguments(name: str, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """Return ``(args, kwargs)`` of job ``name`` with secret arguments replaced by ``[redacted]``.

    An argument is secret when its name contains a word of ``DJANGO_JOBS["REDACT_ARGUMENTS"]``
    (case-insensitive): keyword arguments and keys of nested dicts by their own name,
    positional arguments by the name of the job function's parameter they bind to.

    >>> redact_arguments("myapp.jobs.login", [], {"user": "ann", "password": "hunter2"})
    ([], {'user': 'ann', 'password': '[redacted]'})
    """
    from django_jobs import registry
    from django_jobs.conf import get_settings

    words = get_settings().redact_arguments
    if not words:
        return args, kwargs
    if isinstance(args, list):
        params: list[str] = []
        task = registry.get(name)
        if task is not None:
            try:
                params = [p.name for p in inspect.signature(task.func).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            except (TypeError, ValueError):
                params = []
            if getattr(task, "takes_context", False):
                params = params[1:]
        args = [
            REDACTED if i < len(params) and _secret(params[i], words) else _redact_value(v, words)
            for i, v in enumerate(args)
        ]
    return args, _redact_value(kwargs, words)


def redact_text(text: str) -> str:
    """Return ``text`` (a raw payload) or ``[redacted]`` when it mentions a secret argument name."""
    from django_jobs.conf import get_settings

    return REDACTED if text and _secret(text, get_settings().redact_arguments) else text


# -- the job list -----------------------------------------------------------------------------


class CappedPaginator(Paginator):
    """A paginator that counts at most :data:`COUNT_CAP` + 1 rows (no full-table count)."""

    @cached_property
    def count(self) -> int:
        return self.object_list[: COUNT_CAP + 1].count()


class QueueFilter(admin.SimpleListFilter):
    """Filter by queue; the choices are the configured queues (no query)."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from django_jobs.conf import get_settings

        return [(q, q) for q in get_settings().queue_names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> QuerySet[JobRecord]:
        return queryset.filter(queue=self.value()) if self.value() else queryset


class NameFilter(admin.SimpleListFilter):
    """Filter by job name; the choices are the registered jobs (no ``DISTINCT`` over the table)."""

    title = "job name"
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from django_jobs import registry

        return [(n, n) for n in sorted(registry.all_jobs())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> QuerySet[JobRecord]:
        return queryset.filter(name=self.value()) if self.value() else queryset


def _engine() -> Any:
    from django_jobs.engine import get_engine

    return get_engine()


def _ms(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


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
        RetryCode.GUARDED: "their unique key is held by another job"}),
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


@admin.register(JobRecord)
class JobRecordAdmin(admin.ModelAdmin):
    """Jobs: a read-only list and detail page over the mirror, with actions through the engine."""

    list_display = ("short_id", "name", "queue", "state_badge", "progress_bar", "attempts", "enqueued_at", "finished_at", "duration")
    list_display_links = ("short_id",)
    list_filter = (QueueFilter, "state", NameFilter, "enqueued_at", "finished_at")
    search_help_text = "A job id, a correlation id, or the start of a job name."
    list_per_page = 50
    paginator = CappedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would count the whole table per filter choice
    actions = ("retry_jobs", "cancel_jobs", "delete_jobs")
    change_list_template = "admin/django_jobs/jobrecord/change_list.html"
    # The search box is shown because search_fields is set; get_search_results does the work.
    search_fields = ("job_id",)

    # -- permissions: the row is never changed; actions have their own permissions --

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # rows are the mirror's; the "delete" action deletes jobs in Redis

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ACTION_PERMISSIONS["retry"])

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ACTION_PERMISSIONS["cancel"])

    def has_remove_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ACTION_PERMISSIONS["delete"])

    # -- the list --

    @admin.display(description="job id", ordering="job_id")
    def short_id(self, obj: JobRecord) -> str:
        # Whole: ids are time-ordered, so jobs enqueued together share their first digits.
        return format_html('<code class="djj-id">{}</code>', obj.job_id)

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: JobRecord) -> str:
        return format_html('<span class="djj-state djj-{}">{}</span>', obj.state, obj.get_state_display())

    @admin.display(description="progress")
    def progress_bar(self, obj: JobRecord) -> str:
        return progress_html(obj.progress)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[JobRecord], search_term: str) -> tuple[QuerySet[JobRecord], bool]:
        """Match a job id or correlation id exactly, or a name by its start (all use indexes)."""
        from django_jobs import registry

        term = search_term.strip()
        if not term:
            return queryset, False
        # One indexed lookup at a time (an OR of them makes the database sort every match).
        if JobRecord.objects.filter(pk=term).exists():
            return queryset.filter(pk=term), False
        if JobRecord.objects.filter(correlation_id=term).exists():
            return queryset.filter(correlation_id=term), False
        names = sorted({term, *(n for n in registry.all_jobs() if n.startswith(term))})
        if len(names) == 1:
            return queryset.filter(name=term), False
        # A name prefix as a range, not LIKE: LIKE cannot use the name index on every database.
        return queryset.filter(name__gte=term, name__lt=term + "\U0010ffff"), False

    def _selection(self, queryset: QuerySet[JobRecord]) -> Iterable[tuple[str, str]]:
        return queryset.order_by().values_list("queue", "job_id").iterator(chunk_size=ACTION_CHUNK)

    @admin.action(permissions=["retry"], description="Retry the selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> None:
        run_job_action("retry", self._selection(queryset)).send(request)

    @admin.action(permissions=["cancel"], description="Cancel the selected jobs (running ones are asked to stop)")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> None:
        run_job_action("cancel", self._selection(queryset)).send(request)

    @admin.action(permissions=["remove"], description="Delete the selected jobs from Redis (not running ones)")
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> None:
        run_job_action("delete", self._selection(queryset)).send(request)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"count_cap": COUNT_CAP, **pages_context(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    # -- the detail page --

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **pages_context(request),
            "opts": self.opts,
            "title": f"Job {obj.job_id}",
            "subtitle": obj.name,
            "job": obj,
            **job_detail(obj),
            "can_retry": self.has_retry_permission(request),
            "can_cancel": self.has_cancel_permission(request),
            "can_delete": self.has_remove_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/django_jobs/jobrecord/detail.html", context)

    def act_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: retry, cancel or delete one job from its detail page."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        action = request.POST.get("action", "")
        if action not in JOB_ACTIONS:
            messages.error(request, f"Unknown action {action!r}: use retry, cancel or delete.")
        elif not request.user.has_perm(ACTION_PERMISSIONS[action]):
            raise PermissionDenied
        else:
            run_job_action(action, [(obj.queue, obj.job_id)]).send(request)
        return redirect("admin:django_jobs_jobrecord_change", obj.pk)

    # -- pages that are not models --

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("queues/", wrap(queues_view), name="django_jobs_queues"),
            path("workers/", wrap(workers_view), name="django_jobs_workers"),
            path("schedules/", wrap(schedules_view), name="django_jobs_schedules"),
            path("dashboard/", wrap(dashboard_view), name="django_jobs_dashboard"),
            path("<path:object_id>/act/", wrap(require_POST(self.act_view)), name="django_jobs_jobrecord_act"),
            *super().get_urls(),
        ]


def job_detail(obj: JobRecord) -> dict[str, Any]:
    """Return what the detail page shows of ``obj``: the row, the live job in Redis, relatives."""
    from django_jobs.exceptions import EngineError

    live: dict[str, str] | None = None
    live_error = ""
    try:
        live = _engine().get_job(obj.queue, obj.job_id)
    except EngineError as exc:
        live_error = str(exc)
    args, kwargs = redact_arguments(obj.name, obj.args, obj.kwargs)
    errors = obj.errors or []
    workers = obj.workers or []
    result = obj.result
    state, attempts = obj.state, obj.attempts
    live_row: dict[str, Any] = {}
    if live:
        # The live hash decoded as the mirror decodes it (one reading of a job hash).
        from django_jobs.mirror import row_from_hash

        live_row = row_from_hash(obj.queue, obj.job_id, live, 0)
        if not obj.args and not obj.kwargs:
            args, kwargs = redact_arguments(obj.name, live_row["args"], live_row["kwargs"])
        errors, workers, result = live_row["errors"], live_row["workers"], live_row["result"]
        state, attempts = live_row["state"] or state, live_row["attempts"]
    timeline = []
    for i in range(max(len(errors), len(workers))):
        error = errors[i] if i < len(errors) and isinstance(errors[i], dict) else {}
        timeline.append({
            "attempt": i + 1,
            "worker": workers[i] if i < len(workers) else "",
            "error": error.get("exception_class_path", ""),
            "traceback": error.get("traceback", ""),
        })
    live_rows = []
    view = JobView.from_hash(obj.queue, obj.job_id, live or {})
    if live:
        for label, ms in (("enqueued", view.enqueued_ms), ("first started", view.started_ms),
                          ("last claimed", view.last_started_ms), ("finished", view.finished_ms), ("due", view.due_ms)):
            if ms:
                live_rows.append((label, _ms(ms)))
    parent = JobRecord.objects.filter(pk=obj.parent_id).first() if obj.parent_id else None
    children = list(JobRecord.objects.filter(parent_id=obj.job_id).order_by("-enqueued_at")[:50])
    return {
        **_flow_context(obj, live, live_error, related=bool(parent or obj.parent_id or children)),
        "progress_html": progress_html(obj.progress),
        "live_progress_html": progress_html(live_row["progress"]) if live_row.get("progress") is not None else "",
        "live": live,
        "live_error": live_error,
        "live_state": state if live else "",
        "live_attempts": attempts,
        "live_rows": live_rows,
        "live_cancel_requested": bool(live and view.cancel_requested),
        "live_why": view.reason if live else "",
        "in_sync": live is None or view.state == obj.state,
        "args_json": _pretty(args),
        "kwargs_json": _pretty(kwargs),
        "result_json": _pretty(result) if result is not None else "",
        "raw_payload": redact_text(obj.raw_payload),
        "timeline": timeline,
        "parent": parent,
        "children": children,
        "siblings": list(JobRecord.objects.filter(correlation_id=obj.correlation_id).exclude(pk=obj.pk).order_by("-enqueued_at")[:20])
        if obj.correlation_id else [],
        "changelist_url": reverse("admin:django_jobs_jobrecord_changelist"),
    }


#: Most jobs of one flow the detail page lists (a flow may have 10,000).
FLOW_ROWS = 500


def _flow_context(obj: JobRecord, live: dict[str, str] | None, live_error: str, *, related: bool) -> dict[str, Any]:
    """Return the flow ``obj`` belongs to as rows for the detail page (empty outside flows).

    ``flow_rows``: the tree from its root, parents before children, each with its ``depth``,
    its live state in Redis and the url of its admin page; ``flow_note``: why the flow is not
    shown whole (gone from Redis, too big, Redis unreachable). ``related``: the mirror knows a
    parent or children of the job (a note is shown if its flow cannot be read).
    """
    from django_jobs.exceptions import EngineError
    from django_jobs.flows import flow_tree

    empty: dict[str, Any] = {"flow_rows": [], "flow_note": "", "flow_more": 0}
    if live_error:
        return {**empty, "flow_note": f"The flow cannot be read: {live_error}"} if related else empty
    if live is None:
        note = "This job is no longer in Redis, so its flow cannot be shown; the parent and children below come from the mirror."
        return {**empty, "flow_note": note} if related else empty
    try:
        tree = flow_tree(obj.job_id, queues=_queue_names_with(obj.queue))
    except EngineError as exc:
        return {**empty, "flow_note": f"The flow cannot be read: {exc}"}
    view = JobView.from_hash(obj.queue, obj.job_id, live)
    in_flow = view.in_flow
    if tree is None or not in_flow:
        return empty
    rows: list[dict[str, Any]] = []
    more = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if len(rows) >= FLOW_ROWS:
            more += 1
            continue
        rows.append({
            "id": node.id, "name": node.name, "queue": node.queue, "state": node.state or "deleted",
            "failure": node.failure if node.failure not in ("", "fail") else "",
            "depth": depth, "indent": depth * 2, "here": node.id == obj.job_id,
            "url": reverse("admin:django_jobs_jobrecord_change", args=[node.id]),
        })
        stack.extend((child, depth + 1) for child in reversed(node.children))
    note = ""
    if tree.id == obj.job_id and view.parent_base:
        note = f"Its parent {view.parent_id} is no longer in Redis: the flow is shown from this job down."
    return {"flow_rows": rows, "flow_note": note, "flow_more": more}


def _queue_names_with(queue: str) -> list[str]:
    from django_jobs.conf import get_settings

    names = list(get_settings().queue_names)
    return names if queue in names else [queue, *names]


def progress_html(value: Any) -> str:
    """Return the progress a job reported (``context.set_progress``) as HTML for the admin.

    ``{"done": 40, "total": 100}`` shows as a bar and "40 / 100 (40%)"; anything else as
    compact JSON (at most 80 characters), with secret keys redacted; ``None`` as "-".
    """
    from django_jobs.conf import get_settings

    if value is None:
        return "-"
    if isinstance(value, dict):
        done, total = value.get("done"), value.get("total")
        if _number(done) and _number(total) and total > 0:
            percent = max(0.0, min(100.0, done / total * 100))
            return format_html(
                '<span class="djj-progress"><progress value="{}" max="{}"></progress> {} / {} ({}%)</span>',
                min(max(done, 0), total), total, done, total, f"{percent:.0f}",
            )
    text = json.dumps(_redact_value(value, get_settings().redact_arguments), sort_keys=True, default=str)
    if len(text) > 80:
        text = text[:79] + "\u2026"
    return format_html('<span class="djj-progress">{}</span>', text)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- pages --------------------------------------------------------------------------------


def pages_context(request: HttpRequest) -> dict[str, Any]:
    """Links to the control-plane pages, for the templates' navigation."""
    return {
        "djj_pages": [
            ("Jobs", reverse("admin:django_jobs_jobrecord_changelist")),
            ("Dashboard", reverse("admin:django_jobs_dashboard")),
            ("Queues", reverse("admin:django_jobs_queues")),
            ("Workers", reverse("admin:django_jobs_workers")),
            ("Schedules", reverse("admin:django_jobs_schedules")),
        ]
    }


def _page(request: HttpRequest, template: str, title: str, context: dict[str, Any]) -> TemplateResponse:
    if not request.user.has_perm("django_jobs.view_jobrecord"):
        raise PermissionDenied
    return TemplateResponse(request, template, {
        **admin.site.each_context(request),
        **pages_context(request),
        "opts": JobRecord._meta,
        "title": title,
        **context,
    })


def _need(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(f"django_jobs.{perm}"):
        raise PermissionDenied


#: The job states the queues page counts, in column order.
QUEUE_STATES = (
    JobState.WAITING, JobState.SCHEDULED, JobState.WAITING_CHILDREN, JobState.ACTIVE,
    JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED,
)


def queues_view(request: HttpRequest) -> HttpResponse:
    """Every configured queue with live counts from Redis; POST pauses, resumes or purges one."""
    from django_jobs.conf import get_settings
    from django_jobs.limits import queue_limits

    names = get_settings().queue_names
    engine = _engine()
    if request.method == "POST":
        _need(request, "view_jobrecord")
        _need(request, "manage_queues")
        queue, op = request.POST.get("queue", ""), request.POST.get("op", "")
        if op in ("pause-all", "resume-all"):
            from django_jobs.limits import pause_queues, resume_queues

            done = (pause_queues if op == "pause-all" else resume_queues)(None)
            messages.success(request, f"{'Paused' if op == 'pause-all' else 'Resumed'} every queue: {', '.join(done)}.")
        elif queue not in names:
            messages.error(request, f"Unknown queue {queue!r}.")
        elif op == "pause":
            engine.pause(queue)
            messages.success(request, f"Queue {queue!r} is paused: workers take no new jobs from it (running jobs finish, enqueue still works).")
        elif op == "resume":
            engine.resume(queue)
            messages.success(request, f"Queue {queue!r} is running again.")
        elif op == "limits":
            _set_limits(request, queue)
        elif op == "reset-limits":
            from django_jobs.limits import reset_queue_limits

            now = reset_queue_limits(queue)
            messages.success(request, f"Queue {queue!r} uses the limits of its settings again: {_limits_text(now)}.")
        elif op.startswith("purge-") and op[6:] in engine.PURGEABLE:
            state = op[6:]
            deleted = 0
            while deleted < PURGE_LIMIT and (n := engine.purge(queue, state, limit=1000)):
                deleted += n
            left = engine.counts(queue)[state]
            text = f"Purged {deleted} {state} jobs of queue {queue!r}."
            messages.success(request, text + (f" {left} are left: purge again." if left else ""))
        else:
            messages.error(request, f"Unknown queue operation {op!r}.")
        logger.info("Admin queue %s %s", op, queue, extra={"action": "admin_queue"})
        return HttpResponseRedirect(request.path)
    rows = []
    for queue in names:
        rows.append({
            "name": queue,
            "counts": (counts := engine.counts(queue)),
            "cells": [(state, counts.get(state, 0)) for state in QUEUE_STATES],
            "paused": engine.is_paused(queue),
            "limits": queue_limits(queue),
        })
    return _page(request, "admin/django_jobs/queues.html", "Queues", {
        "rows": rows,
        "states": QUEUE_STATES,
        "purgeable": engine.PURGEABLE,
        "can_manage": request.user.has_perm("django_jobs.manage_queues"),
    })


def _limits_text(limits: Any) -> str:
    rate = f"at most {limits.rate} starts" if limits.rate else "no rate limit"
    conc = f"at most {limits.concurrency} running" if limits.concurrency else "no concurrency limit"
    return f"{rate}, {conc}"


def _set_limits(request: HttpRequest, queue: str) -> None:
    """Apply the limits form of ``queue`` (empty field: no limit) or say what is wrong with it."""
    from django_jobs.exceptions import InvalidJob
    from django_jobs.limits import set_queue_limits

    rate_text = request.POST.get("rate", "").strip()
    conc_text = request.POST.get("concurrency", "").strip()
    concurrency: int | None = None
    if conc_text:
        try:
            concurrency = int(conc_text)
        except ValueError:
            messages.error(request, f"Concurrency {conc_text!r} of queue {queue!r} is not valid: use a whole number of at least 1, or leave it empty for no limit. Nothing was changed.")
            return
    try:
        now = set_queue_limits(queue, rate=rate_text or None, concurrency=concurrency)
    except InvalidJob as exc:
        messages.error(request, f"{exc} Nothing was changed.")
        return
    messages.success(request, f"Queue {queue!r} now has {_limits_text(now)}, on every worker, until the limits are reset to the settings.")


def workers_view(request: HttpRequest) -> HttpResponse:
    """The live worker processes, from the heartbeats they keep in Redis."""
    now = datetime.now(UTC)
    rows = []
    for worker_id, info in sorted(_engine().workers().items()):
        beat = info.get("beat")
        started = info.get("started")
        rows.append({
            "id": worker_id,
            "host": info.get("host", ""),
            "pid": info.get("pid", ""),
            "queues": ", ".join(info.get("queues") or []),
            "threads": info.get("threads", ""),
            "running": info.get("running", ""),
            "processed": info.get("processed", ""),
            "started": datetime.fromtimestamp(float(started), UTC) if isinstance(started, (int, float)) else None,
            "beat": datetime.fromtimestamp(float(beat), UTC) if isinstance(beat, (int, float)) else None,
            "beat_age": round((now - datetime.fromtimestamp(float(beat), UTC)).total_seconds(), 1) if isinstance(beat, (int, float)) else None,
        })
    return _page(request, "admin/django_jobs/workers.html", "Workers", {"rows": rows})


def schedules_view(request: HttpRequest) -> HttpResponse:
    """The cron schedules (code and settings only) with next and last run; POST pauses, resumes, triggers."""
    from django_jobs import scheduler

    if request.method == "POST":
        _need(request, "view_jobrecord")
        _need(request, "manage_schedules")
        name, op = request.POST.get("schedule", ""), request.POST.get("op", "")
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
        return HttpResponseRedirect(request.path)
    return _page(request, "admin/django_jobs/schedules.html", "Schedules", {
        "rows": scheduler.schedules_table(),
        "can_manage": request.user.has_perm("django_jobs.manage_schedules"),
    })


# -- the dashboard --------------------------------------------------------------------------


def _index(n: int, fraction: float) -> int:
    return min(n - 1, max(0, int(round(fraction * (n - 1)))))


def _pick(values: list[float], fraction: float) -> float | None:
    """Return the ``fraction`` percentile of the sorted ``values`` (nearest rank)."""
    return values[_index(len(values), fraction)] if values else None


def _percentile(qs: QuerySet[JobRecord], n: int, fraction: float) -> float | None:
    """Return the ``fraction`` percentile of ``duration`` in ``qs`` (``n`` rows): one indexed query."""
    if n == 0:
        return None
    index = _index(n, fraction)
    row = qs.order_by("duration").values_list("duration", flat=True)[index : index + 1]
    values = list(row)
    return values[0] if values else None


def dashboard_data(window: str = "hour", *, now: datetime | None = None) -> dict[str, Any]:
    """Return the dashboard's numbers for ``window`` (``hour`` or ``day``), from the mirror.

    ``buckets``: one dict per bucket (``start``, ``completed``, ``failed``, per minute);
    ``failure_rate``: failed / finished in the window; ``names``: per job name (the
    busiest :data:`DASHBOARD_NAMES`) its counts and p50 / p95 run time in seconds.
    """
    label, length, step = WINDOWS[window]
    now = now or timezone.now()
    since = now - length
    finished = JobRecord.objects.filter(finished_at__gt=since, finished_at__lte=now, state__in=(JobState.COMPLETED, JobState.FAILED))
    count = int(length / step)
    start = now - count * step
    buckets = [{"start": start + i * step, "completed": 0, "failed": 0} for i in range(count)]
    # The bucket as a CASE over the finish time: one pass over the (finished_at, state) index,
    # in SQL on every database (a date-truncating function is a slow Python UDF on SQLite).
    bucket = Case(*(When(finished_at__lte=start + (i + 1) * step, then=Value(i)) for i in range(count)), default=Value(count - 1))
    for row in finished.annotate(bucket=bucket).values("bucket", "state").annotate(n=Count("pk")).order_by():
        if 0 <= row["bucket"] < count:
            buckets[row["bucket"]][row["state"]] += row["n"]
    minutes = step.total_seconds() / 60
    for b in buckets:
        b["completed_rate"] = b["completed"] / minutes
        b["failed_rate"] = b["failed"] / minutes
        total = b["completed"] + b["failed"]
        b["failure_rate"] = b["failed"] / total if total else None
    done = sum(b["completed"] for b in buckets)
    failed = sum(b["failed"] for b in buckets)
    names = []
    top = finished.values("name").annotate(n=Count("pk"), failed=Count("pk", filter=Q(state=JobState.FAILED))).order_by("-n")[:DASHBOARD_NAMES]
    for row in top:
        timed = finished.filter(name=row["name"], duration__isnull=False)
        if row["n"] <= PERCENTILE_FETCH:  # one query: the run times, sorted here
            durations = sorted(timed.values_list("duration", flat=True))
            p50, p95 = _pick(durations, 0.50), _pick(durations, 0.95)
        else:  # too many to fetch: count, then one lookup per percentile
            n = timed.count()
            p50, p95 = _percentile(timed, n, 0.50), _percentile(timed, n, 0.95)
        names.append({"name": row["name"], "count": row["n"], "failed": row["failed"], "p50": p50, "p95": p95})
    return {
        "window": window, "label": label, "since": since, "now": now, "step_minutes": minutes,
        "buckets": buckets, "completed": done, "failed": failed,
        "failure_rate": failed / (done + failed) if done + failed else None, "names": names,
    }


#: Chart size in SVG user units.
CHART_W, CHART_H, PAD = 720, 180, 30


def _polyline(values: list[float | None], top: float) -> str:
    """Return SVG polyline points for ``values`` scaled to the chart (None breaks nothing: 0)."""
    if not values:
        return ""
    step = (CHART_W - 2 * PAD) / max(1, len(values) - 1)
    scale = (CHART_H - 2 * PAD) / top if top else 0
    return " ".join(f"{PAD + i * step:.1f},{CHART_H - PAD - (v or 0) * scale:.1f}" for i, v in enumerate(values))


def charts(data: dict[str, Any]) -> dict[str, Any]:
    """Return the dashboard's SVG charts (points and axis labels) for :func:`dashboard_data`."""
    buckets = data["buckets"]
    top = max([b["completed_rate"] for b in buckets] + [b["failed_rate"] for b in buckets] + [0]) or 1
    fmt = "%H:%M" if data["window"] == "hour" else "%d %H:%M"
    slowest = max([n["p95"] or 0 for n in data["names"]] + [0]) or 1
    bars = []
    for i, n in enumerate(data["names"]):
        bars.append({
            **n, "y": 10 + i * 26,
            "w50": (n["p50"] or 0) / slowest * 400, "w95": (n["p95"] or 0) / slowest * 400,
        })
    return {
        "width": CHART_W, "height": CHART_H, "pad": PAD, "inner_right": CHART_W - PAD, "baseline": CHART_H - PAD,
        "throughput": {
            "completed": _polyline([b["completed_rate"] for b in buckets], top),
            "failed": _polyline([b["failed_rate"] for b in buckets], top),
            "top": round(top, 2),
        },
        "failure": _polyline([b["failure_rate"] for b in buckets], 1.0),
        "first": buckets[0]["start"].strftime(fmt) if buckets else "",
        "last": buckets[-1]["start"].strftime(fmt) if buckets else "",
        "bars": bars, "bars_height": 20 + 26 * len(bars), "slowest": slowest,
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """Throughput, failure rate and run-time percentiles over the last hour or day (inline SVG)."""
    window = request.GET.get("window", "hour")
    if window not in WINDOWS:
        window = "hour"
    data = dashboard_data(window)
    return _page(request, "admin/django_jobs/dashboard.html", "Dashboard", {
        "data": data, "chart": charts(data), "windows": [(key, value[0]) for key, value in WINDOWS.items()],
    })


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
