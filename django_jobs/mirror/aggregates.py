"""Minute tallies of finished jobs, kept by the mirror as it writes rows (the dashboard reads them).

Counting a million rows for every dashboard view is slow; these tallies stay small (one row
per slot, queue, job name and state, and per slot, name and run-time bucket) and answer the
dashboard in a few milliseconds. A slot of ``span`` minutes (1 for the last hour's chart, 15
for the last day's) holds the jobs that finished in ``(start, start + span]``, the same
half-open range as the chart's links to the job list (``finished_at__gt`` / ``__lte``).

The mirror's row writer is wrapped by :func:`counted`: it reads the written jobs' rows
before and after the write (in the same transaction) and adds the difference, so a job is
counted once however often its row is written, and moves when a retry finishes it again.
Rows deleted later (retention) keep their tallies: the tallies are the history of what
finished. Tallies older than :data:`KEEP` are deleted as the mirror writes.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

#: The slot lengths tallied, minutes (the dashboard's hour and day windows).
SPANS = (1, 15)
#: Tallies are kept this long (the dashboard's longest window, with a margin).
KEEP = timedelta(days=2)
#: Run-time buckets per decade, and the run time of bucket 0 (seconds; shorter ones count there too).
PER_DECADE = 20
FLOOR_SECONDS = 1e-4
#: Seconds between two deletions of expired tallies by one process.
PRUNE_EVERY = 600.0

_TIMED_STATES = ("completed", "failed")
_FINISHED_STATES = ("completed", "failed", "cancelled")
_local = threading.local()
_pruned_at = [0.0]

def bucket_of(seconds: float) -> int:
    """Return the run-time bucket of ``seconds``: 0 up to 0.1 ms, then twenty a decade (each 12 % wide).

    >>> bucket_of(0.0001), bucket_of(0.001), bucket_of(1.0), bucket_of(1.1)
    (0, 20, 80, 81)
    """
    if seconds <= FLOOR_SECONDS:
        return 0
    return max(0, math.ceil(math.log10(seconds / FLOOR_SECONDS) * PER_DECADE - 1e-9))


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """Return the run times (low, high] in seconds that ``bucket`` holds."""
    if bucket <= 0:
        return 0.0, FLOOR_SECONDS
    return FLOOR_SECONDS * 10 ** ((bucket - 1) / PER_DECADE), FLOOR_SECONDS * 10 ** (bucket / PER_DECADE)


def slot_of(when: datetime, span: int) -> datetime:
    """Return the start of the ``span``-minute slot holding ``when``: the slot is ``(start, start + span]``.

    >>> slot_of(datetime(2026, 1, 1, 10, 7, 30, tzinfo=UTC), 15).isoformat()
    '2026-01-01T10:00:00+00:00'
    >>> slot_of(datetime(2026, 1, 1, 10, 15, tzinfo=UTC), 15).isoformat()  # the end belongs to the slot before
    '2026-01-01T10:00:00+00:00'
    """
    when = when.astimezone(UTC) - timedelta(microseconds=1)
    return when.replace(minute=when.minute - when.minute % span, second=0, microsecond=0)


_TICK = timedelta(microseconds=1)

#: One row's part in the tallies: (queue, name, state, finished_at, duration).
Part = tuple[str, str, str, datetime | None, float | None]


def keys_of(parts: Iterable[Part], *, since: datetime) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """Return the finished and run-time tally keys the rows count in (those finished after ``since``)."""
    # Counted per minute first (a minute ``(m, m + 1 min]`` lies in one slot of every span): the
    # slots of a batch's few distinct minutes are computed once, and a run time's bucket once per
    # distinct run time (whole milliseconds), not per row (the mirror calls this for every batch).
    minutes: Counter[tuple[Any, ...]] = Counter()
    runs: Counter[tuple[Any, ...]] = Counter()
    buckets: dict[float, int] = {}
    for queue, name, state, finished_at, duration in parts:
        if state not in _FINISHED_STATES or finished_at is None or finished_at <= since:
            continue
        minute = (finished_at - _TICK).replace(second=0, microsecond=0)
        minutes[(minute, queue, name, state)] += 1
        if state in _TIMED_STATES and duration is not None:
            bucket = buckets.get(duration)
            if bucket is None:
                bucket = buckets[duration] = bucket_of(duration)
            runs[(minute, name, bucket)] += 1
    finished: Counter[tuple[Any, ...]] = Counter()
    timed: Counter[tuple[Any, ...]] = Counter()
    for (minute, queue, name, state), n in minutes.items():
        for span in SPANS:
            finished[(span, slot_of(minute + _TICK, span), queue, name, state)] += n
    for (minute, name, bucket), n in runs.items():
        for span in SPANS:
            timed[(span, slot_of(minute + _TICK, span), name, bucket)] += n
    return finished, timed


def _parts(job_ids: Sequence[str], *, using: str) -> list[Part]:
    from django_jobs.models import JobRecord

    out: list[Part] = []
    for start in range(0, len(job_ids), 2_000):
        out.extend(
            JobRecord.objects.using(using).filter(pk__in=job_ids[start : start + 2_000], finished_at__isnull=False)
            .values_list("queue", "name", "state", "finished_at", "duration")
        )
    return out


def add(finished: Counter[tuple[Any, ...]], timed: Counter[tuple[Any, ...]], *, using: str) -> None:
    """Add ``finished`` and ``timed`` (key: count, counts may be negative) to the tallies: one statement per table and chunk."""
    from django_jobs.models import FinishedTally, RunTimeTally

    _add(FinishedTally, ("span", "start", "queue", "name", "state"), finished, using=using)
    _add(RunTimeTally, ("span", "start", "name", "bucket"), timed, using=using)


def _add(model: Any, key: tuple[str, ...], counts: Counter[tuple[Any, ...]], *, using: str) -> None:
    items = [(k, n) for k, n in counts.items() if n]
    if not items:
        return
    conn = connections[using]
    qn = conn.ops.quote_name
    table = qn(model._meta.db_table)
    columns = [qn(model._meta.get_field(f).column) for f in (*key, "n")]
    start_at = key.index("start")
    adapted: dict[datetime, Any] = {}  # a batch has few distinct slots: adapt each once
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    per = 30_000 // len(columns)
    with conn.cursor() as cursor:
        for i in range(0, len(items), per):
            chunk = items[i : i + per]
            params: list[Any] = []
            for k, n in chunk:
                slot = k[start_at]
                if slot not in adapted:
                    adapted[slot] = conn.ops.adapt_datetimefield_value(slot)
                params.extend(k[:start_at])
                params.append(adapted[slot])
                params.extend(k[start_at + 1 :])
                params.append(n)
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * len(chunk))} "
                f"ON CONFLICT ({', '.join(columns[:-1])}) DO UPDATE SET {columns[-1]} = {table}.{columns[-1]} + EXCLUDED.{columns[-1]}",
                params,
            )


def counted[F: Callable[..., int]](write: F) -> F:
    """Wrap the mirror's row writer ``write(rows, *, using)`` (:func:`~django_jobs.mirror.rows.upsert`): tally what it changes.

    The rows' jobs are read once before the write, in one transaction with it; what the write
    leaves is known without reading again (a row replaces the stored one unless the stored
    ``version`` is newer, the upsert's rule). The tallies get the difference. A write inside
    another counted write is counted by the outer one.
    """

    @functools.wraps(write)
    def wrapper(rows: Sequence[dict[str, Any]], *args: Any, using: str, **kwargs: Any) -> int:
        if getattr(_local, "active", False) or not rows:
            return write(rows, *args, using=using, **kwargs)
        _local.active = True
        try:
            with transaction.atomic(using=using):
                stored = _stored([row["job_id"] for row in rows], using=using)
                written = write(rows, *args, using=using, **kwargs)
                now = dict(stored)
                for row in rows:
                    held = now.get(row["job_id"])
                    if held is None or held[1] <= (row.get("version") or 0):
                        part = (row.get("queue") or "", row.get("name") or "", row.get("state") or "", row.get("finished_at"), row.get("duration"))
                        now[row["job_id"]] = (part, row.get("version") or 0)
                _add_difference([p for p, _ in stored.values()], [p for p, _ in now.values()], using=using)
        finally:
            _local.active = False
        _prune_now_and_then(using=using)
        return written

    return wrapper  # type: ignore[return-value]


def _stored(job_ids: Sequence[str], *, using: str) -> dict[str, tuple[Part, int]]:
    """The stored rows of ``job_ids``: their part in the tallies and their version (plain SQL, no model layer)."""
    from django_jobs.models import JobRecord

    conn = connections[using]
    qn = conn.ops.quote_name
    model: Any = JobRecord
    opts = model._meta
    columns = ", ".join(qn(opts.get_field(name).column) for name in ("job_id", "queue", "name", "state", "finished_at", "duration", "version"))
    out: dict[str, tuple[Part, int]] = {}
    with conn.cursor() as cursor:
        for start in range(0, len(job_ids), 2_000):
            chunk = list(job_ids[start : start + 2_000])
            if conn.vendor == "postgresql":  # one array parameter (see rows._in)
                cursor.execute(f"SELECT {columns} FROM {qn(opts.db_table)} WHERE {qn(opts.pk.column)} = ANY(%s)", [chunk])
            else:
                cursor.execute(f"SELECT {columns} FROM {qn(opts.db_table)} WHERE {qn(opts.pk.column)} IN ({', '.join(['%s'] * len(chunk))})", chunk)
            for pk, queue, name, state, finished_at, duration, version in cursor.fetchall():
                out[pk] = ((queue, name, state, _aware(finished_at) if state in _FINISHED_STATES else None, duration), int(version or 0))
    return out


def _aware(value: Any) -> datetime | None:
    """A stored datetime as an aware UTC one (SQLite returns text, PostgreSQL a datetime)."""
    if value is None:
        return None
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _add_difference(before: list[Part], after: list[Part], *, using: str) -> None:
    since = timezone.now() - KEEP
    old_finished, old_timed = keys_of(before, since=since)
    new_finished, new_timed = keys_of(after, since=since)
    new_finished.subtract(old_finished)
    new_timed.subtract(old_timed)
    add(new_finished, new_timed, using=using)


def counted_gone[F: Callable[..., Any]](write: F) -> F:
    """:func:`counted` for ``write(queue, gone, *, using)``, where ``gone`` maps job ids to their final event (rows read before and after)."""

    @functools.wraps(write)
    def wrapper(queue: str, gone: dict[str, Any], *args: Any, using: str, **kwargs: Any) -> Any:
        return _counting(list(gone), using, lambda: write(queue, gone, *args, using=using, **kwargs))

    return wrapper  # type: ignore[return-value]


def _counting[T](job_ids: list[str], using: str, write: Callable[[], T]) -> T:
    """Write, reading the jobs' rows before and after (for writes whose effect is not known beforehand)."""
    if getattr(_local, "active", False) or not job_ids:
        return write()
    _local.active = True
    try:
        with transaction.atomic(using=using):
            before = _parts(job_ids, using=using)
            written = write()
            _add_difference(before, _parts(job_ids, using=using), using=using)
    finally:
        _local.active = False
    _prune_now_and_then(using=using)
    return written


def _prune_now_and_then(*, using: str) -> None:
    if time.monotonic() - _pruned_at[0] >= PRUNE_EVERY:
        _pruned_at[0] = time.monotonic()
        prune(using=using)


def prune(*, using: str = "default") -> int:
    """Delete the tallies older than :data:`KEEP`; return how many rows went."""
    from django_jobs.models import FinishedTally, RunTimeTally

    cutoff = timezone.now() - KEEP - timedelta(minutes=max(SPANS))
    return sum(model.objects.using(using).filter(start__lt=cutoff).delete()[0] for model in (FinishedTally, RunTimeTally))


def rebuild(*, using: str = "default", models: tuple[Any, Any, Any] | None = None) -> int:
    """Recount the tallies from the rows (those finished within :data:`KEEP`); return the rows read.

    For rows written around the mirror (a bulk load, a restore) and the migration that adds the
    tallies. ``models`` (JobRecord, FinishedTally, RunTimeTally) lets a migration pass its own.

    >>> rebuild()  # doctest: +SKIP
    0
    """
    if models is None:
        from django_jobs.models import FinishedTally, JobRecord, RunTimeTally

        models = (JobRecord, FinishedTally, RunTimeTally)
    record, finished_model, timed_model = models
    since = timezone.now() - KEEP
    with transaction.atomic(using=using):
        finished_model.objects.using(using).all().delete()
        timed_model.objects.using(using).all().delete()
        rows = (record.objects.using(using).filter(finished_at__gt=since, state__in=_FINISHED_STATES)
                .values_list("queue", "name", "state", "finished_at", "duration").iterator(chunk_size=10_000))
        finished: Counter[tuple[Any, ...]] = Counter()
        timed: Counter[tuple[Any, ...]] = Counter()
        read = 0
        batch: list[Part] = []
        for part in rows:
            batch.append(part)
            if len(batch) >= 10_000:
                f, t = keys_of(batch, since=since)
                finished.update(f)
                timed.update(t)
                read += len(batch)
                batch = []
        f, t = keys_of(batch, since=since)
        finished.update(f)
        timed.update(t)
        read += len(batch)
        _add(finished_model, ("span", "start", "queue", "name", "state"), finished, using=using)
        _add(timed_model, ("span", "start", "name", "bucket"), timed, using=using)
    return read
