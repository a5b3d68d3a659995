"""The mirror's rows: a job hash as :class:`~django_jobs.models.JobRecord` column values, and their upsert."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from django_jobs.engine.protocol import JobState
from django_jobs.engine.record import JobView
from django_jobs.engine.streams import stream_id_key
from django_jobs.mirror import aggregates
from django_jobs.tasks import ms_to_datetime

logger = logging.getLogger("django_jobs.mirror")

#: Bound parameters per INSERT statement (SQLite allows 32,766; PostgreSQL 65,535).
MAX_PARAMS = 30_000


def version_of(entry_id: str) -> int:
    """Return a stream entry id ``"<ms>-<seq>"`` as one increasing integer (``ms << 20 | seq``)."""
    ms, seq = stream_id_key(entry_id)
    return ms << 20 | min(seq, (1 << 20) - 1)


def _error_line(error: dict[str, Any]) -> str:
    """Return "ValueError: bad input" from one recorded error (the traceback's last line)."""
    tb = str(error.get("traceback") or "").rstrip().splitlines()
    last = tb[-1].strip() if tb else ""
    return last or str(error.get("exception_class_path") or "")


def error_class_of(error: str) -> str:
    """Return the exception class of an error line without its module, or "" (not a class).

    >>> error_class_of("shop.payments.PaymentDeclined: card declined"), error_class_of("Child job 1 ended failed")
    ('PaymentDeclined', '')
    """
    head = (error or "").strip().split(":", 1)[0].strip()
    return head.rsplit(".", 1)[-1][:200] if head and " " not in head else ""


def derived_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The columns computed from others (for rows built around :func:`row_from_hash`, e.g. a bulk load)."""
    return {"error_class": error_class_of(row.get("error") or "")}


def row_from_hash(queue: str, job_id: str, data: dict[str, str], version: int) -> dict[str, Any]:
    """Return the :class:`JobRecord` column values for a job hash (see docs/architecture.md).

    Never raises on bad data (:mod:`django_jobs.engine.record`'s policy): a payload that does
    not decode is kept in ``raw_payload``, other fields that do not decode are left empty.
    """
    view = JobView.from_hash(queue, job_id, data)
    last = view.last_error
    finished, last_start = view.finished_ms, view.last_started_ms
    duration = (finished - last_start) / 1000 if finished and last_start else None
    state = view.state
    return {
        "job_id": job_id,
        "queue": queue,
        "name": view.name[:255],
        "state": state,
        "priority": max(-32768, min(32767, view.priority or 0)),
        "attempts": max(0, view.attempts),
        "args": view.args,
        "kwargs": view.kwargs,
        "result": view.result,
        "error": _error_line(last),
        "error_class": error_class_of(_error_line(last)),
        "traceback": str(last.get("traceback") or ""),
        "errors": view.errors,
        "earlier_errors": view.earlier_errors,
        "progress": view.progress,
        "correlation_id": view.correlation_id[:200],
        "parent_id": view.parent_id[:64],
        "workers": view.workers,
        "raw_payload": view.raw_payload,
        "enqueued_at": ms_to_datetime(view.enqueued_ms),
        "scheduled_for": ms_to_datetime(view.due_ms) if state == JobState.SCHEDULED else None,
        "started_at": ms_to_datetime(view.started_ms),
        "finished_at": ms_to_datetime(finished),
        "duration": duration,
        "version": version,
    }


# -- writing rows ----------------------------------------------------------------------------


def _model() -> Any:
    from django_jobs.models import JobRecord

    return JobRecord


@aggregates.counted  # the dashboard's tallies follow every row written (mirror/aggregates.py)
def upsert(rows: Sequence[dict[str, Any]], *, using: str) -> int:
    """Insert or update ``rows`` (dicts of column values), never replacing a newer ``version``.

    One ``INSERT ... ON CONFLICT (job_id) DO UPDATE ... WHERE version <= excluded.version``
    per chunk, the same SQL on SQLite and PostgreSQL (``bulk_create(update_conflicts=True)``
    cannot express the version check). Returns the number of rows sent.
    """
    if not rows:
        return 0
    model = _model()
    conn = connections[using]
    qn = conn.ops.quote_name
    fields = list(model._meta.concrete_fields)
    table = qn(model._meta.db_table)
    columns = [qn(f.column) for f in fields]
    pk, version = qn(model._meta.pk.column), qn(model._meta.get_field("version").column)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != pk)
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    now = timezone.now()
    per = max(1, MAX_PARAMS // len(fields))
    plan = _plan(fields, conn)
    with conn.cursor() as cursor:
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            params: list[Any] = []
            for row in chunk:
                for name, default, adapt in plan:
                    value = now if name == "updated_at" else row.get(name, default)
                    params.append(value if adapt is None or value is None else adapt(value))
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * len(chunk))} "
                f"ON CONFLICT ({pk}) DO UPDATE SET {updates} WHERE {table}.{version} <= EXCLUDED.{version}",
                params,
            )
    return len(rows)


def _plan(fields: list[Any], conn: Any) -> list[tuple[str, Any, Any]]:
    """Return per column (attname, default, adapter or None): the fast path of ``get_db_prep_save``.

    The mirror writes thousands of rows a second; the field layers cost more than the SQL.
    JSON and datetime values go through the backend's own adapters, the rest as they are.
    """
    from django.conf import settings
    from django.db import models

    plan = []
    for f in fields:
        adapt = None
        if isinstance(f, models.JSONField):
            adapt = functools.partial(conn.ops.adapt_json_value, encoder=f.encoder)
        elif isinstance(f, models.DateTimeField):
            adapt = conn.ops.adapt_datetimefield_value
            if conn.vendor == "sqlite" and settings.USE_TZ:
                adapt = functools.partial(_sqlite_datetime, slow=adapt)
        plan.append((f.attname, f.get_default(), adapt))
    return plan


def _sqlite_datetime(value: datetime, *, slow: Callable[[Any], Any]) -> Any:
    """SQLite's datetime text for an aware UTC datetime (what Django writes), without its checks."""
    if value.tzinfo is UTC:
        return str(value.replace(tzinfo=None))
    return slow(value)


def _clean(value: Any) -> Any:
    """Return ``value`` without NUL characters (PostgreSQL's text and jsonb refuse them)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def _upsert_safely(rows: Sequence[dict[str, Any]], *, using: str) -> int:
    """:func:`upsert`; when the database refuses the batch's data, write row by row, cleaned.

    A value the database cannot store (a NUL character on PostgreSQL, say) must not block the
    mirror: the row is cleaned and, if even that fails, written with its payload kept as text.
    Connection errors are not data errors: they propagate (nothing is acknowledged).
    """
    from django.db import DataError, IntegrityError

    try:
        with transaction.atomic(using=using):
            return upsert(rows, using=using)
    except (DataError, IntegrityError, ValueError, TypeError):
        pass
    for row in rows:
        try:
            with transaction.atomic(using=using):
                upsert([_clean(row)], using=using)
        except (DataError, IntegrityError, ValueError, TypeError):
            logger.warning("Mirror: job %s could not be stored as is; keeping its raw payload", row["job_id"])
            bare = {**_clean(row), "args": [], "kwargs": {}, "result": None, "errors": [],
                    "earlier_errors": [], "progress": None}
            bare["raw_payload"] = _clean(json.dumps({k: row[k] for k in ("args", "kwargs", "result")}, default=repr))
            with transaction.atomic(using=using):
                upsert([bare], using=using)
    return len(rows)


@aggregates.counted_gone
def _write_gone(queue: str, gone: dict[str, tuple[str, str]], *, using: str) -> list[str]:
    """Write jobs whose hash is already deleted from what their final event says.

    ``gone`` maps job id to (entry id, final event). An existing row gets the state and
    finish time; a missing one is created with only what the event knows. Returns the ids
    whose row was missing or not finished: jobs that left Redis before the mirror recorded
    how they ended (a finished row means retention deleted a job the mirror had recorded).
    """
    if not gone:
        return []
    model = _model()
    existing = dict(model.objects.using(using).filter(pk__in=list(gone)).values_list("pk", "state"))
    fresh = []
    lost = []
    for job_id, (entry_id, event) in gone.items():
        version = version_of(entry_id)
        finished = ms_to_datetime(stream_id_key(entry_id)[0])
        if job_id in existing:
            if existing[job_id] == event:
                continue  # recorded as it ended, then deleted by retention: nothing to write
            if existing[job_id] not in ("completed", "failed", "cancelled"):
                lost.append(job_id)
            model.objects.using(using).filter(pk=job_id, version__lte=version).update(
                state=event, finished_at=Coalesce(F("finished_at"), finished), version=version, updated_at=timezone.now()
            )
        else:
            lost.append(job_id)
            fresh.append({"job_id": job_id, "queue": queue, "name": "?", "state": event,
                          "finished_at": finished, "version": version})
    upsert(fresh, using=using)
    return lost


def _advance_cursor(queue: str, entry_id: str, *, using: str) -> None:
    from django_jobs.models import MirrorCursor

    cursor = MirrorCursor.objects.using(using).filter(queue=queue).first()
    if cursor is None:
        MirrorCursor.objects.using(using).create(queue=queue, last_event_id=entry_id)
    elif not cursor.last_event_id or stream_id_key(entry_id) > stream_id_key(cursor.last_event_id):
        cursor.last_event_id = entry_id
        cursor.save(using=using, update_fields=["last_event_id", "updated_at"])


