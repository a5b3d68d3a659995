"""The dashboard: throughput, failure rate and run-time percentiles from the mirror's minute tallies (inline SVG)."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from django_jobs.admin.charts import charts
from django_jobs.admin.common import _page
from django_jobs.mirror import aggregates
from django_jobs.models import JobRecord, JobState

logger = logging.getLogger(__name__)


#: Job names the dashboard charts at most (the busiest).
DASHBOARD_NAMES = 20


#: Up to this many finished jobs of one name in the window, the dashboard reads their exact run
#: times from the rows (one indexed query); above, it reads the run-time tallies (twenty buckets a
#: decade: a percentile within 6 %).
PERCENTILE_FETCH = 500


#: The dashboard's windows: (label, length, bucket). A bucket is a slot of the mirror's tallies.
WINDOWS = {"hour": ("last hour", timedelta(hours=1), timedelta(minutes=1)), "day": ("last day", timedelta(days=1), timedelta(minutes=15))}


def _index(n: int, fraction: float) -> int:
    return min(n - 1, max(0, round(fraction * (n - 1))))


def _pick(values: list[float], fraction: float) -> float | None:
    """Return the ``fraction`` percentile of the sorted ``values`` (nearest rank)."""
    return values[_index(len(values), fraction)] if values else None


def _from_buckets(counts: dict[int, int], fraction: float) -> float | None:
    """Return the ``fraction`` percentile of a run-time histogram (bucket: count): its bucket's geometric middle (within 6 %)."""
    total = sum(counts.values())
    if not total:
        return None
    rank = _index(total, fraction) + 1
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            break
    low, high = aggregates.bucket_bounds(bucket)
    return high if low <= 0 else math.sqrt(low * high)


def dashboard_data(window: str = "hour", *, now: datetime | None = None) -> dict[str, Any]:
    """Return the dashboard's numbers for ``window`` (``hour`` or ``day``), from the mirror's tallies.

    ``buckets``: one dict per bucket (``start``, ``completed``, ``failed``, per minute; a bucket
    holds the jobs finished in ``(start, start + step]``, the last bucket the one ``now`` is in);
    ``failure_rate``: failed / finished in the window; ``names``: per job name (the busiest
    :data:`DASHBOARD_NAMES`) its counts and p50 / p95 run time in seconds.
    """
    from django_jobs.models import FinishedTally, RunTimeTally

    label, length, step = WINDOWS[window]
    now = now or timezone.now()
    span = int(step.total_seconds() // 60)
    count = int(length / step)
    end = aggregates.slot_of(now, span) + step
    start = end - count * step
    buckets: list[dict[str, Any]] = [{"start": start + i * step, "completed": 0, "failed": 0} for i in range(count)]
    tallies = FinishedTally.objects.filter(span=span, start__gte=start, start__lt=end, state__in=(JobState.COMPLETED, JobState.FAILED))
    for row in tallies.values("start", "state").annotate(total=Sum("n")).order_by():
        i = int((row["start"] - start) / step)
        if 0 <= i < count:
            buckets[i][row["state"]] += row["total"]
    minutes = step.total_seconds() / 60
    for b in buckets:
        b["completed_rate"] = b["completed"] / minutes
        b["failed_rate"] = b["failed"] / minutes
        total = b["completed"] + b["failed"]
        b["failure_rate"] = b["failed"] / total if total else None
    done = sum(b["completed"] for b in buckets)
    failed = sum(b["failed"] for b in buckets)
    top = list(tallies.values("name").annotate(total=Sum("n"), failed=Sum("n", filter=Q(state=JobState.FAILED)))
               .order_by("-total", "name")[:DASHBOARD_NAMES])
    many = [busy["name"] for busy in top if busy["total"] > PERCENTILE_FETCH]
    histograms: dict[str, dict[int, int]] = {name: {} for name in many}
    if many:
        timed = RunTimeTally.objects.filter(span=span, start__gte=start, start__lt=end, name__in=many)
        for name, bucket, total in timed.values_list("name", "bucket").annotate(total=Sum("n")).order_by():
            if total > 0:
                histograms[name][bucket] = total
    names: list[dict[str, Any]] = []
    for busy in top:
        if busy["name"] in histograms:  # many: the tallies' histogram
            p50, p95 = _from_buckets(histograms[busy["name"]], 0.50), _from_buckets(histograms[busy["name"]], 0.95)
        else:  # few: their exact run times, one query through the (name, finished_at) index
            rows = JobRecord.objects.filter(name=busy["name"], finished_at__gt=start, finished_at__lte=end,
                                            state__in=(JobState.COMPLETED, JobState.FAILED), duration__isnull=False)
            durations = sorted(d for d in rows.order_by().values_list("duration", flat=True) if d is not None)
            p50, p95 = _pick(durations, 0.50), _pick(durations, 0.95)
        names.append({"name": busy["name"], "count": busy["total"], "failed": busy["failed"] or 0, "p50": p50, "p95": p95})
    return {
        "window": window, "label": label, "since": start, "now": end, "step_minutes": minutes,
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
