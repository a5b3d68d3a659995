"""The job list and detail page: :class:`JobRecordAdmin` over the mirror."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from django_jobs import audit
from django_jobs.admin.actions import (
    ACTION_PERMISSIONS,
    CONFIRMED,
    JOB_ACTIONS,
    confirm_page,
    run_job_action,
)
from django_jobs.admin.common import live_context, pages_context, progress_html
from django_jobs.admin.dashboard import dashboard_view
from django_jobs.admin.detail import job_detail
from django_jobs.admin.listing import (
    ErrorFilter,
    RecentFilter,
    age_html,
    error_html,
    registered_names,
    search_reading,
)
from django_jobs.admin.queues import queues_view
from django_jobs.admin.schedules import schedules_view
from django_jobs.admin.workers import workers_view
from django_jobs.models import JobRecord

logger = logging.getLogger(__name__)


#: The change list counts at most this many rows (a capped count stays fast on a million rows).
COUNT_CAP = 10_000
#: A text search through the trigram indexes (PostgreSQL) counts at most this many: each counted
#: match is a row read (the index only narrows the candidates), where other counts read index entries.
TEXT_COUNT_CAP = 1_000


#: Job ids per database read when an action walks its selection.
ACTION_CHUNK = 2_000


#: The session key holding the ids the last delete action deleted (shown as such until the mirror drops them).
DELETED_KEY = "djj_deleted"


class LiveChangeList(ChangeList):
    """The job list, with each shown row's state read from Redis (one round trip per page).

    The rows are the mirror's, which lags the engine by about a second: right after an action
    the list shows the states the action made, not the ones the mirror still holds.
    """

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        from django_jobs.admin.common import _engine
        from django_jobs.exceptions import DjangoJobsError

        rows = list(self.result_list)
        try:
            live = _engine().job_fields([(r.queue, r.job_id) for r in rows], ("s",))
        except DjangoJobsError:
            return  # Redis is down: the mirror's states, as they are
        deleted = set(request.session.get(DELETED_KEY, ())) if hasattr(request, "session") else set()
        for row, fields in zip(rows, live, strict=True):
            row.live_state = fields[0] or ("deleted" if row.job_id in deleted else None)


# Django's admin classes are generic for type checkers only (django-stubs).
if TYPE_CHECKING:
    _Paginator = Paginator[Any]
    _ModelAdmin = admin.ModelAdmin[JobRecord]
else:
    _Paginator, _ModelAdmin = Paginator, admin.ModelAdmin


class CappedPaginator(_Paginator):
    """A paginator that counts at most :attr:`count_cap` + 1 rows (no full-table count), unordered."""

    #: The most rows counted: :data:`COUNT_CAP` unless set (:data:`TEXT_COUNT_CAP` for a text search).
    cap: int | None = None

    @property
    def count_cap(self) -> int:
        return COUNT_CAP if self.cap is None else self.cap

    @cached_property
    def count(self) -> int:
        # SELECT COUNT(*) FROM (SELECT 1 ... LIMIT cap + 1): unordered, and a constant column, so
        # the database counts index entries without reading the rows (an index-only scan).
        rows = cast("QuerySet[Any]", self.object_list).order_by().annotate(djj_one=RawSQL("1", ())).values("djj_one")
        return int(rows[: self.count_cap + 1].count())


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
    template = "admin/django_jobs/filter_collapsed.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # The short name first: "charge_card (shop.jobs)".
        return [(n, f"{n.rpartition('.')[2]} ({n.rpartition('.')[0]})" if "." in n else n) for n in registered_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> QuerySet[JobRecord]:
        return queryset.filter(name=self.value()) if self.value() else queryset


@admin.register(JobRecord)
class JobRecordAdmin(_ModelAdmin):
    """Jobs: a read-only list and detail page over the mirror, with actions through the engine."""

    # What answers "what failed, and why?" first: state, name, queue, error, age (all fit 1024 px).
    list_display = ("state_badge", "job_name", "queue", "error_column", "age", "short_id", "finished", "run_time", "attempts", "progress_bar")
    list_display_links = ("job_name", "short_id")
    list_filter = (RecentFilter, "state", QueueFilter, NameFilter, ErrorFilter, "enqueued_at", "finished_at")
    search_help_text = ("A job id or correlation id, a job name (or its start, or its short name), an exception class (PaymentDeclined),"
                        " or any text of the error or the arguments of a job enqueued in the last 24 hours.")
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
        # Whole: ids are time-ordered, so jobs enqueued together share their first digits. On a
        # narrow screen CSS shows only the last digits (the link keeps the whole id as its name).
        return format_html('<code class="djj-id djj-id-tail">{}</code>', obj.job_id)

    @admin.display(description="name", ordering="name")
    def job_name(self, obj: JobRecord) -> str:
        short = obj.name.rpartition(".")[2]
        return format_html('<span class="djj-name" title="{}">{}</span>', obj.name, short or obj.name)

    @admin.display(description="error")
    def error_column(self, obj: JobRecord) -> str:
        return error_html(obj)

    @admin.display(description="enqueued", ordering="enqueued_at")
    def age(self, obj: JobRecord) -> str:
        return age_html(obj.enqueued_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, obj: JobRecord) -> str:
        return age_html(obj.finished_at)

    @admin.display(description="run time", ordering="duration")
    def run_time(self, obj: JobRecord) -> str:
        return "-" if obj.duration is None else f"{obj.duration:.3g} s"

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: JobRecord) -> str:
        live = getattr(obj, "live_state", None)
        if live and live != obj.state:
            label = dict(JobRecord._meta.get_field("state").choices or ()).get(live, live.capitalize())
            return format_html('<span class="djj-state djj-{} djj-live-state" title="Live state in Redis; the database mirror still says {}">{}</span>',
                               live, obj.state, label)
        return format_html('<span class="djj-state djj-{}">{}</span>', obj.state, obj.get_state_display())

    def get_ordering(self, request: HttpRequest) -> Any:
        """Newest first; filtered by finish time, the latest finished first (the finish-time index then reads in order)."""
        if any(key == "finished_within" or key.startswith("finished_at__") for key in request.GET):
            return ("-finished_at",)
        return super().get_ordering(request)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LiveChangeList

    @admin.display(description="progress")
    def progress_bar(self, obj: JobRecord) -> str:
        return progress_html(obj.progress)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[JobRecord], search_term: str) -> tuple[QuerySet[JobRecord], bool]:
        """Find ids, names, error texts and argument values (see :func:`listing.search`)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        found, reading = search_reading(queryset, term, cap=COUNT_CAP)
        if reading == "text":  # every row through the trigram indexes: the count reads each match
            request.djj_count_cap = TEXT_COUNT_CAP  # type: ignore[attr-defined]
        return found, False

    def get_paginator(self, request: HttpRequest, queryset: QuerySet[JobRecord], per_page: int, orphans: int = 0,
                      allow_empty_first_page: bool = True) -> CappedPaginator:
        """The capped paginator, its cap lowered for a text search (:data:`TEXT_COUNT_CAP`)."""
        paginator = CappedPaginator(queryset, per_page, orphans, allow_empty_first_page)
        paginator.cap = getattr(request, "djj_count_cap", None)
        return paginator

    def _selection(self, queryset: QuerySet[JobRecord]) -> Iterable[tuple[str, str]]:
        return queryset.order_by().values_list("queue", "job_id").iterator(chunk_size=ACTION_CHUNK)

    def _act_on(self, request: HttpRequest, queryset: QuerySet[JobRecord], action: str) -> HttpResponse | None:
        """Show the confirmation page (exact count, what would be skipped); run once confirmed."""
        if request.POST.get(CONFIRMED) != "yes":
            return confirm_page(request, queryset, action, self.opts, self.admin_site.each_context(request))
        report = run_job_action(action, self._selection(queryset), user=request.user)
        report.send(request)
        if action == "delete" and report.result is not None:
            request.session[DELETED_KEY] = [job_id for _q, job_id in report.result.done[:2_000]]
        return None

    @admin.action(permissions=["retry"], description="Retry the selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> HttpResponse | None:
        return self._act_on(request, queryset, "retry")

    @admin.action(permissions=["cancel"], description="Cancel the selected jobs (running ones are asked to stop)")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> HttpResponse | None:
        return self._act_on(request, queryset, "cancel")

    @admin.action(permissions=["remove"], description="Delete the selected jobs from Redis (not running ones)")
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet[JobRecord]) -> HttpResponse | None:
        return self._act_on(request, queryset, "delete")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        posted = request.POST.getlist("action") if request.method == "POST" else []
        needs = {"retry_jobs": "retry", "cancel_jobs": "cancel", "delete_jobs": "delete"}
        if any(name in needs and not request.user.has_perm(ACTION_PERMISSIONS[needs[name]]) for name in posted):
            raise PermissionDenied  # a job action this user may not run: 403, like the other POSTs
        context = {"count_cap": COUNT_CAP, **pages_context(request), **live_context(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    # -- the detail page --

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined,no-any-return]
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **pages_context(request),
            **live_context(request),
            "opts": self.opts,
            "title": f"Job {obj.job_id}",
            "subtitle": obj.name,
            "job": obj,
            **job_detail(obj),
            "history": audit.history(obj.job_id),
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
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined,no-any-return]
        action = request.POST.get("action", "")
        if action not in JOB_ACTIONS:
            messages.error(request, f"Unknown action {action!r}: use retry, cancel or delete.")
        elif not request.user.has_perm(ACTION_PERMISSIONS[action]):
            raise PermissionDenied
        else:
            run_job_action(action, [(obj.queue, obj.job_id)], user=request.user).send(request)
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
