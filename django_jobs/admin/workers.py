"""The Workers page: the live worker processes, from their heartbeats."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse

from django_jobs.admin.common import _engine, _page

logger = logging.getLogger(__name__)


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
