"""The dashboard: throughput, failure rate and run-time percentiles from the mirror (inline SVG)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, Count, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from django_jobs.admin.charts import charts
from django_jobs.admin.common import _page
from django_jobs.models import JobRecord, JobState

logger = logging.getLogger(__name__)


#: Job names the dashboard charts at most (the busiest).
DASHBOARD_NAMES = 20


#: Up to this many finished jobs of one name, the dashboard reads their run times in one query.
PERCENTILE_FETCH = 50_000


#: The dashboard's windows: (label, length, bucket).
WINDOWS = {"hour": ("last hour", timedelta(hours=1), timedelta(minutes=1)), "day": ("last day", timedelta(days=1), timedelta(minutes=15))}


def _index(n: int, fraction: float) -> int:
    return min(n - 1, max(0, round(fraction * (n - 1))))


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
    buckets: list[dict[str, Any]] = [{"start": start + i * step, "completed": 0, "failed": 0} for i in range(count)]
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
    names: list[dict[str, Any]] = []
    top = finished.values("name").annotate(n=Count("pk"), failed=Count("pk", filter=Q(state=JobState.FAILED))).order_by("-n")[:DASHBOARD_NAMES]
    for busy in top:
        timed = finished.filter(name=busy["name"], duration__isnull=False)
        if busy["n"] <= PERCENTILE_FETCH:  # one query: the run times, sorted here
            durations = sorted(d for d in timed.values_list("duration", flat=True) if d is not None)
            p50, p95 = _pick(durations, 0.50), _pick(durations, 0.95)
        else:  # too many to fetch: count, then one lookup per percentile
            n = timed.count()
            p50, p95 = _percentile(timed, n, 0.50), _percentile(timed, n, 0.95)
        names.append({"name": busy["name"], "count": busy["n"], "failed": busy["failed"], "p50": p50, "p95": p95})
    return {
        "window": window, "label": label, "since": since, "now": now, "step_minutes": minutes,
        "buckets": buckets, "completed": done, "failed": failed,
        "failure_rate": failed / (done + failed) if done + failed else None, "names": names,
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
