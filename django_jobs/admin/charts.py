"""The dashboard's inline SVG charts: readable axes, a log scale for run times, linked points.

Every point of the throughput and failure-rate charts and every run-time bar is a link to
the job list filtered to the jobs behind it (state, finish-time range, name).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

#: Chart size in SVG user units, and the margins left for the axis labels.
CHART_W, CHART_H = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 30
#: The run-time chart: where bars start (after the job names) and their longest length.
BAR_X, BAR_W, BAR_ROW = 250, 440, 26
#: Time labels on the x axis.
X_TICKS = 6


def nice_top(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (an axis' top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return float(step * power)
    return float(10 * power)


def _x(i: int, n: int) -> float:
    return LEFT + i * (CHART_W - LEFT - RIGHT) / max(1, n - 1)


def _y(value: float, top: float) -> float:
    return CHART_H - BOTTOM - value / top * (CHART_H - TOP - BOTTOM)


def _polyline(values: list[float | None], top: float) -> str:
    """SVG polyline points for ``values`` scaled to the chart; a missing value (None) is skipped."""
    n = len(values)
    return " ".join(f"{_x(i, n):.1f},{_y(v, top):.1f}" for i, v in enumerate(values) if v is not None)


def _list_url(**params: Any) -> str:
    return reverse("admin:django_jobs_jobrecord_changelist") + "?" + urlencode({k: v for k, v in params.items() if v is not None})


def _iso(when: datetime) -> str:
    return when.isoformat()


def _rate_label(value: float) -> str:
    return f"{value:g}"


def _seconds_label(value: float) -> str:
    if value < 1:
        return f"{value * 1000:g} ms"
    if value < 120:
        return f"{value:g} s"
    return f"{value / 60:g} min"


def charts(data: dict[str, Any]) -> dict[str, Any]:
    """Return the dashboard's SVG charts for :func:`dashboard_data`: lines, linked points, axis ticks, log-scale bars."""
    buckets = data["buckets"]
    n = len(buckets)
    step = timedelta(minutes=data["step_minutes"])
    fmt = "%H:%M" if data["window"] == "hour" else "%a %H:%M"
    top = nice_top(max([b["completed_rate"] for b in buckets] + [b["failed_rate"] for b in buckets] + [0]))
    rates = [b["failure_rate"] for b in buckets if b["failure_rate"] is not None]
    fail_top = min(1.0, nice_top(max(rates + [0.01])))
    points = []
    for i, b in enumerate(buckets):
        since, until = _iso(b["start"]), _iso(b["start"] + step)
        when = b["start"].strftime(fmt)
        points.append({
            "x": round(_x(i, n), 1),
            "completed_y": round(_y(b["completed_rate"], top), 1), "failed_y": round(_y(b["failed_rate"], top), 1),
            "rate_y": round(_y(b["failure_rate"], fail_top), 1) if b["failure_rate"] is not None else None,
            "completed": b["completed"], "failed": b["failed"], "when": when,
            "failure_rate": round((b["failure_rate"] or 0) * 100, 1),
            # The bucket exactly as dashboard_data counts it: finished in (start, start + step].
            "completed_url": _list_url(state__exact="completed", finished_at__gt=since, finished_at__lte=until),
            "failed_url": _list_url(state__exact="failed", finished_at__gt=since, finished_at__lte=until),
        })
    ticks = sorted({round(k * (n - 1) / (X_TICKS - 1)) for k in range(X_TICKS)}) if n else []
    x_ticks = [{"x": round(_x(i, n), 1), "label": buckets[i]["start"].strftime(fmt),
                "anchor": "start" if i == 0 else "end" if i == n - 1 else "middle"} for i in ticks]
    y_ticks = [{"y": round(_y(top * f, top), 1), "label": _rate_label(top * f)} for f in (0, 0.5, 1)]
    fail_ticks = [{"y": round(_y(fail_top * f, fail_top), 1), "label": f"{fail_top * f * 100:g} %"} for f in (0, 0.5, 1)]
    return {
        "width": CHART_W, "height": CHART_H, "left": LEFT, "right": CHART_W - RIGHT, "top": TOP, "baseline": CHART_H - BOTTOM,
        "label_y": CHART_H - 8,
        "throughput": {
            "completed": _polyline([b["completed_rate"] for b in buckets], top),
            "failed": _polyline([b["failed_rate"] for b in buckets], top),
            "top": top, "ticks": y_ticks,
        },
        "failure": _polyline([b["failure_rate"] for b in buckets], fail_top),
        "failure_ticks": fail_ticks, "failure_top": fail_top,
        "points": points, "x_ticks": x_ticks,
        **runtime_bars(data),
    }


def runtime_bars(data: dict[str, Any]) -> dict[str, Any]:
    """The run-time chart on a log scale (one slow job does not flatten the others), decade grid lines."""
    values = [v for name in data["names"] for v in (name["p50"], name["p95"]) if v and v > 0]
    # One decade below the fastest, so its bar has a length too.
    lo = 10 ** (math.floor(math.log10(min(values))) - 1) if values else 0.001
    hi = 10 ** math.ceil(math.log10(max(values))) if values else 1.0
    if hi <= lo:
        hi = lo * 10
    span = math.log10(hi) - math.log10(lo)

    def width(value: float | None) -> float:
        if value is None:
            return 0.0
        if value <= 0:
            return 2.0  # under the clock's resolution: a stub, not nothing
        return max(2.0, (math.log10(max(value, lo)) - math.log10(lo)) / span * BAR_W)

    bars = []
    for i, name in enumerate(data["names"]):
        bars.append({
            **name, "y": 22 + i * BAR_ROW, "label_y": 36 + i * BAR_ROW,
            "w50": round(width(name["p50"]), 1), "w95": round(width(name["p95"]), 1),
            "url": _list_url(name=name["name"], finished_at__gt=_iso(data["since"]), finished_at__lte=_iso(data["now"])),
        })
    decades = []
    k = math.log10(lo)
    while k <= math.log10(hi) + 1e-9:
        decades.append({"x": round(BAR_X + (k - math.log10(lo)) / span * BAR_W, 1), "label": _seconds_label(10 ** round(k))})
        k += 1
    return {"bars": bars, "bars_height": 30 + BAR_ROW * len(bars), "bar_x": BAR_X, "decades": decades, "slowest": hi}
