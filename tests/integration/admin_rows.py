"""A stand-in for the database mirror in the admin tests: JobRecord rows built from Redis.

The admin reads JobRecord rows that ``django_jobs.mirror`` writes from the events streams.
Until the mirror lands, the admin tests call :func:`mirror_jobs`, which reads every job of the
given queues with ``engine.get_job`` and writes its row (and drops rows of jobs that are gone).
Swap its body for ``django_jobs.mirror.mirror_once()`` when the mirror exists.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django_jobs.engine import get_engine
from django_jobs.models import JobRecord


def _ms(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None


def row_from_hash(queue: str, job_id: str, data: dict[str, str]) -> JobRecord:
    """Return the JobRecord of one job hash (unsaved)."""
    raw = ""
    try:
        payload: dict[str, Any] = json.loads(data.get("d") or "{}")
    except ValueError:
        payload, raw = {}, data.get("d", "")
    errors = json.loads(data["err"]) if data.get("err") else []
    last = errors[-1] if errors else {}
    tb = last.get("traceback", "") if isinstance(last, dict) else ""
    finished, claimed = data.get("f"), data.get("la")
    return JobRecord(
        job_id=job_id,
        queue=queue,
        name=str(payload.get("n", "")),
        state=data.get("s", ""),
        priority=int(data.get("p") or 0),
        attempts=int(data.get("a") or 0),
        args=payload.get("a", []),
        kwargs=payload.get("k", {}),
        result=json.loads(data["r"]) if data.get("r") else None,
        error=(tb.strip().splitlines() or [""])[-1] if tb else "",
        traceback=tb,
        errors=errors,
        correlation_id=data.get("cid", ""),
        parent_id=data.get("par", ""),
        workers=json.loads(data["wk"]) if data.get("wk") else [],
        raw_payload=raw,
        enqueued_at=_ms(data.get("e")),
        scheduled_for=_ms(data.get("run")),
        started_at=_ms(data.get("st")),
        finished_at=_ms(finished),
        duration=(int(finished) - int(claimed)) / 1000 if finished and claimed else None,
    )


def mirror_jobs(queues: list[str] | None = None) -> int:
    """Write the rows of every job of ``queues`` (default: all configured) as Redis has them now.

    Returns how many rows were written; rows of jobs no longer in Redis are deleted.
    """
    from django_jobs.conf import get_settings

    engine = get_engine()
    written = 0
    seen: set[str] = set()
    for queue in queues or get_settings().queue_names:  # noqa: B020
        for state in engine.STATE_KEYS:
            offset = 0
            while True:
                _, page = engine.list_jobs(queue, state, offset=offset, limit=500)
                if not page:
                    break
                rows = [row_from_hash(queue, job_id, data) for job_id, data in page if data]
                JobRecord.objects.bulk_create(
                    rows, update_conflicts=True, unique_fields=["job_id"],
                    update_fields=[f.name for f in JobRecord._meta.fields if f.name != "job_id"],
                )
                seen.update(r.job_id for r in rows)
                written += len(rows)
                offset += len(page)
    names = queues or get_settings().queue_names
    gone = [pk for pk in JobRecord.objects.filter(queue__in=names).values_list("job_id", flat=True) if pk not in seen]
    for start in range(0, len(gone), 500):
        JobRecord.objects.filter(job_id__in=gone[start : start + 500]).delete()
    return written
