"""The Workers page: which workers are alive, what each one runs, and its recent restarts.

Everything comes through the engine: the heartbeats the worker processes keep
(:meth:`workers`), the active jobs of every queue (:meth:`list_jobs`) and the restarts the
supervisors recorded per host (:meth:`restarts`). A running job can be cancelled from here
(POST, ``cancel_jobrecord`` permission): the same action as the job list's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from django_jobs.admin.actions import ACTION_PERMISSIONS, run_job_action
from django_jobs.admin.common import _engine, _need, _page, progress_html
from django_jobs.ages import age_label

logger = logging.getLogger(__name__)

#: Running jobs listed per queue at most (the longest-leased first are the engine's order).
RUNNING_ROWS = 200
#: Restarts shown per host.
RESTART_ROWS = 10


def _when(value: Any) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if isinstance(value, (int, float)) else None


def running_jobs(engine: Any, queues: list[str], workers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Return every running job of ``queues``: id, name, queue, worker (host, pid), elapsed seconds, progress."""
    from django_jobs.mirror import row_from_hash

    now_ms = engine.server_time_ms()
    rows = []
    for queue in queues:
        _, page = engine.list_jobs(queue, "active", limit=RUNNING_ROWS)
        for job_id, data in page:
            if not data:
                continue
            row = row_from_hash(queue, job_id, data, 0)
            worker_id = data.get("w", "")
            info = workers.get(worker_id, {})
            started = int(data.get("la") or 0)
            elapsed = max(0.0, (now_ms - started) / 1000) if started else None
            rows.append({
                "id": job_id, "name": row["name"], "short_name": row["name"].rsplit(".", 1)[-1], "queue": queue,
                "worker": worker_id, "host": info.get("host", ""), "pid": info.get("pid", ""), "alive": bool(info),
                "elapsed": elapsed, "elapsed_label": age_label(elapsed), "attempt": row["attempts"],
                "progress_html": progress_html(row["progress"]),
                "cancel_requested": data.get("cx") == "1",
                "url": reverse("admin:django_jobs_jobrecord_change", args=[job_id]),
            })
    rows.sort(key=lambda r: -(r["elapsed"] or 0))
    return rows


def workers_view(request: HttpRequest) -> HttpResponse:
    """The live worker processes, the jobs they run, their hosts' recent restarts; POST cancels a running job."""
    from django_jobs.conf import get_settings

    engine = _engine()
    names = list(get_settings().queue_names)
    if request.method == "POST":
        _need(request, "view_jobrecord")
        _need(request, "cancel_jobrecord")
        queue, job_id = request.POST.get("queue", ""), request.POST.get("job", "")
        if request.POST.get("op") != "cancel" or queue not in names or not job_id:
            messages.error(request, "Nothing to cancel: the form names no known queue and job.")
        else:
            run_job_action("cancel", [(queue, job_id)], user=request.user).send(request)
        return HttpResponseRedirect(request.path)
    now = datetime.now(UTC)
    live = engine.workers()
    rows = []
    for worker_id, info in sorted(live.items()):
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
            "started": _when(started),
            "beat": _when(beat),
            "beat_age": round((now - datetime.fromtimestamp(float(beat), UTC)).total_seconds(), 1) if isinstance(beat, (int, float)) else None,
        })
    hosts = []
    for host in sorted({str(info.get("host", "")) for info in live.values()} - {""}):
        restarts = [{**r, "when": _when(r.get("at"))} for r in engine.restarts(host, limit=RESTART_ROWS)]
        hosts.append({"host": host, "restarts": restarts})
    return _page(request, "admin/django_jobs/workers.html", "Workers", {
        "rows": rows,
        "running": running_jobs(engine, names, live),
        "hosts": hosts,
        "can_cancel": request.user.has_perm(ACTION_PERMISSIONS["cancel"]),
    })
