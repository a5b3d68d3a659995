"""The database mirror: keep :class:`~django_jobs.models.JobRecord` rows in step with Redis.

Redis stays the source of truth. The mirror follows each queue's ``events`` stream with a
consumer group (``djj-mirror``); an event only says *which* job changed, so for each batch
the mirror reads those jobs' hashes (and the stream's newest id, in one MULTI) and upserts
one row per job. Rows carry that stream id as their :attr:`~JobRecord.version` and an
upsert never replaces a newer version, so any number of mirrors (one per supervisor, plus
``manage.py jobs mirror`` and ``jobs resync``) can run at once without moving a job back to
an older state. Entries are acknowledged only after the database transaction committed;
entries read but never acknowledged (a crash, the database down) are read again.
See docs/mirror.md.

>>> mirror_once()  # doctest: +SKIP
42
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from django_jobs.conf import get_settings
from django_jobs.engine import get_engine
from django_jobs.engine.keys import MIRROR_GROUP
from django_jobs.engine.queue import MirrorGroupMissing, stream_id_key
from django_jobs.exceptions import ConfigurationError
from django_jobs.tasks import ms_to_datetime

__all__ = ["Mirror", "mirror_once", "resync", "prune", "row_from_hash", "version_of", "run_mirror_process"]

logger = logging.getLogger(__name__)

#: Events after which a job never changes again.
FINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})
#: The event of a job deleted through the engine (``delete.lua``): its row is deleted too.
DELETED_EVENT = "deleted"
#: State ZSETs walked by :func:`resync`, in this order.
RESYNC_STATES = ("waiting", "scheduled", "waiting_children", "active", "completed", "failed", "cancelled")
#: Longest wait for new events before the loop looks around (stop flag, prune), seconds.
IDLE_WAIT = 1.0
#: After a batch smaller than ``BATCH``, wait this long (seconds) for more events before the
#: next read: a short job's waiting, active and completed events then land in one batch and
#: the job is written once, not three times (the mirror's CPU per job falls by about half,
#: its lag grows by at most this much).
LINGER = 0.1
#: The largest share of one CPU core the mirror loop uses: after a batch that took ``c``
#: seconds of CPU it rests ``c * (1 / share - 1)``. When jobs saturate the CPU, the workers
#: keep the rest and the mirror falls behind, catching up once the burst is over. At 1,000
#: jobs/s the mirror needs 0.1 to 0.3 of a core on the benchmark VM: 0.25 cost the lag target
#: there (p50 1.6 s), 0.5 keeps it (bench --mirror, docs/mirror.md#lag-and-cost).
MAX_CPU_SHARE = 0.5
#: Rows deleted per statement by :func:`prune` (below SQLite's bound-parameter limit).
PRUNE_BATCH = 900
#: Bound parameters per INSERT statement (SQLite allows 32,766; PostgreSQL 65,535).
MAX_PARAMS = 30_000
#: Jobs whose last written version a mirror remembers, to skip events its rows already include.
WRITTEN_CACHE = 100_000


def version_of(entry_id: str) -> int:
    """Return a stream entry id ``"<ms>-<seq>"`` as one increasing integer (``ms << 20 | seq``)."""
    ms, seq = stream_id_key(entry_id)
    return ms << 20 | min(seq, (1 << 20) - 1)


def _json(raw: str | None, default: Any) -> Any:
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # kept as a JSON string: the operator sees what Redis holds


def _int(raw: str | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return 0


def _error_line(error: dict[str, Any]) -> str:
    """Return "ValueError: bad input" from one recorded error (the traceback's last line)."""
    tb = str(error.get("traceback") or "").rstrip().splitlines()
    last = tb[-1].strip() if tb else ""
    return last or str(error.get("exception_class_path") or "")


def row_from_hash(queue: str, job_id: str, data: dict[str, str], version: int) -> dict[str, Any]:
    """Return the :class:`JobRecord` column values for a job hash (see docs/architecture.md).

    Never raises on bad data: a payload that does not decode is kept in ``raw_payload``.
    """
    raw_payload = ""
    name, args, kwargs = "?", [], {}
    try:
        payload = json.loads(data.get("d") or "")
        if not isinstance(payload, dict) or not isinstance(payload.get("n"), str):
            raise ValueError("not a job payload")
        name = payload["n"]
        args = payload.get("a", [])
        kwargs = payload.get("k", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("bad arguments")
    except (ValueError, TypeError):
        raw_payload, name, args, kwargs = data.get("d") or "", "?", [], {}
    errors = _json(data.get("err"), [])
    if not isinstance(errors, list):
        errors = [errors]
    last = errors[-1] if errors and isinstance(errors[-1], dict) else {}
    workers = _json(data.get("wk"), [])
    started, finished, last_start = data.get("st"), data.get("f"), data.get("la")
    duration = (_int(finished) - _int(last_start)) / 1000 if finished and last_start else None
    state = data.get("s") or ""
    return {
        "job_id": job_id,
        "queue": queue,
        "name": name[:255],
        "state": state,
        "priority": max(-32768, min(32767, _int(data.get("p")))),
        "attempts": max(0, _int(data.get("a"))),
        "args": args,
        "kwargs": kwargs,
        "result": _json(data.get("r"), None),
        "error": _error_line(last),
        "traceback": str(last.get("traceback") or ""),
        "errors": errors,
        "progress": _json(data.get("pg"), None),
        "correlation_id": (data.get("cid") or "")[:200],
        "parent_id": (data.get("par") or "")[:64],
        "workers": workers if isinstance(workers, list) else [workers],
        "raw_payload": raw_payload,
        "enqueued_at": ms_to_datetime(data.get("e") or None),
        "scheduled_for": ms_to_datetime(data.get("run") or None) if state == "scheduled" else None,
        "started_at": ms_to_datetime(started or None),
        "finished_at": ms_to_datetime(finished or None),
        "duration": duration,
        "version": version,
    }


# -- writing rows ----------------------------------------------------------------------------


def _model() -> Any:
    from django_jobs.models import JobRecord

    return JobRecord


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
            bare = {**_clean(row), "args": [], "kwargs": {}, "result": None, "errors": [], "progress": None}
            bare["raw_payload"] = _clean(json.dumps({k: row[k] for k in ("args", "kwargs", "result")}, default=repr))
            with transaction.atomic(using=using):
                upsert([bare], using=using)
    return len(rows)


def _write_gone(queue: str, gone: dict[str, tuple[str, str]], *, using: str) -> int:
    """Write jobs whose hash is already deleted from what their final event says.

    ``gone`` maps job id to (entry id, final event). An existing row gets the state and
    finish time; a missing one is created with only what the event knows.
    """
    if not gone:
        return 0
    model = _model()
    existing = set(model.objects.using(using).filter(pk__in=list(gone)).values_list("pk", flat=True))
    fresh = []
    for job_id, (entry_id, event) in gone.items():
        version = version_of(entry_id)
        finished = ms_to_datetime(stream_id_key(entry_id)[0])
        if job_id in existing:
            model.objects.using(using).filter(pk=job_id, version__lte=version).update(
                state=event, finished_at=Coalesce(F("finished_at"), finished), version=version, updated_at=timezone.now()
            )
        else:
            fresh.append({"job_id": job_id, "queue": queue, "name": "?", "state": event,
                          "finished_at": finished, "version": version})
    upsert(fresh, using=using)
    return len(gone)


def _advance_cursor(queue: str, entry_id: str, *, using: str) -> None:
    from django_jobs.models import MirrorCursor

    cursor = MirrorCursor.objects.using(using).filter(queue=queue).first()
    if cursor is None:
        MirrorCursor.objects.using(using).create(queue=queue, last_event_id=entry_id)
    elif not cursor.last_event_id or stream_id_key(entry_id) > stream_id_key(cursor.last_event_id):
        cursor.last_event_id = entry_id
        cursor.save(using=using, update_fields=["last_event_id", "updated_at"])


# -- the consumer ----------------------------------------------------------------------------


class Mirror:
    """Follow the events of ``queues`` (default: every configured queue) and write rows.

    :meth:`step` handles one batch per queue; :meth:`run` loops until told to stop, waiting
    for new events without polling, retrying with backoff while Redis or the database is
    down, and pruning old rows every ``MIRROR["PRUNE_INTERVAL"]`` seconds.

    ``consumer`` names this reader in the consumer group; it defaults to the host name, so a
    mirror restarted on the same host re-reads what it left unacknowledged at once (others'
    leftovers are taken over after ``MIRROR["CLAIM_AFTER"]`` seconds).
    """

    def __init__(self, queues: Iterable[str] | None = None, *, consumer: str = "", using: str | None = None) -> None:
        settings = get_settings()
        self.queues = list(queues) if queues else settings.queue_names
        unknown = [q for q in self.queues if q not in settings.queues]
        if unknown:
            raise ConfigurationError(
                f"Unknown queue(s) {', '.join(map(repr, unknown))}. Configured: {', '.join(settings.queue_names)}."
            )
        self.batch = int(settings.mirror["BATCH"])
        self.claim_after = float(settings.mirror["CLAIM_AFTER"])
        self.prune_interval = float(settings.mirror["PRUNE_INTERVAL"])
        self.linger = LINGER
        self.max_cpu_share = MAX_CPU_SHARE
        self.consumer = consumer or f"mirror@{socket.gethostname()}"
        self.using = using or router.db_for_write(_model())
        self.resyncs = 0  #: queues resynced because events were trimmed before they were read
        self._ready: set[str] = set()
        self._resync: set[str] = set()
        self._tips: dict[str, str] = {}
        self._claim_at = 0.0
        self._read = 0
        #: job id -> version of the snapshot this mirror last committed for it (most recent last).
        self._written: OrderedDict[str, int] = OrderedDict()
        self.skipped = 0  #: events skipped because a row already written includes them

    def _ensure(self, queue: str) -> None:
        if queue not in self._ready:
            get_engine().mirror_ensure_group(queue, MIRROR_GROUP)
            self._ready.add(queue)

    def step(self) -> int:
        """Handle one batch of events per queue; return the number of rows written.

        Unacknowledged entries come first (this consumer's own, then, every
        ``CLAIM_AFTER`` / 2 seconds, those other consumers left for ``CLAIM_AFTER``).
        """
        written = 0
        self._read = 0
        claim = time.monotonic() >= self._claim_at
        if claim:
            self._claim_at = time.monotonic() + self.claim_after / 2
        for queue in self.queues:
            written += self._step_queue(queue, claim)
        return written

    def _step_queue(self, queue: str, claim: bool) -> int:
        engine = get_engine()
        self._ensure(queue)
        gap = False
        try:
            claim_ms = int(self.claim_after * 1000) if claim else 0
            entries, trimmed = engine.mirror_pending(queue, MIRROR_GROUP, self.consumer, count=self.batch, claim_idle_ms=claim_ms)
            gap = trimmed > 0
            if not entries:
                read = engine.mirror_read(queue, MIRROR_GROUP, self.consumer, count=self.batch)
                self._tips[queue] = read.tip
                entries, gap = read.entries, gap or read.gap
        except MirrorGroupMissing:
            # Redis lost the stream (restart without persistence, FLUSHALL): start over.
            logger.warning("Mirror: the events stream of %r has no mirror group; creating it and resyncing", queue)
            self._ready.discard(queue)
            self._ensure(queue)
            entries, gap = [], True
        written = 0
        if gap:
            logger.warning(
                "Mirror: events of queue %r were trimmed (EVENTS_MAXLEN) before the mirror read them; resyncing it",
                queue, extra={"action": "mirror_gap"},
            )
            self.resyncs += 1
            # Remembered until the resync succeeds: the read that saw the gap moved the group
            # past it, so a resync that fails (database down) must be retried from here.
            self._resync.add(queue)
        if queue in self._resync:
            written += resync_queue(queue, using=self.using, batch=self.batch)
            self._resync.discard(queue)
        self._read += len(entries)
        if entries:
            written += self.apply(queue, entries)
        return written

    def apply(self, queue: str, entries: Sequence[tuple[str, dict[str, str]]]) -> int:
        """Write the jobs named by ``entries`` (stream entries of ``queue``), then acknowledge them."""
        engine = get_engine()
        jobs: dict[str, None] = {}
        final: dict[str, tuple[str, str]] = {}
        written = self._written
        for entry_id, fields in entries:
            job_id = fields.get("j")
            if not job_id:
                continue  # not one of ours: acknowledged, ignored
            seen = written.get(job_id)
            if seen is not None and version_of(entry_id) <= seen:
                # A snapshot this mirror wrote already holds this event's effect (common when
                # catching up: the first event's read finds the job finished).
                self.skipped += 1
                continue
            jobs[job_id] = None
            if fields.get("e") in FINAL_EVENTS or fields.get("e") == DELETED_EVENT:
                final[job_id] = (entry_id, fields["e"])
        ids = list(jobs)
        tip, hashes = engine.mirror_snapshot(queue, ids) if ids else ("0-0", [])
        version = version_of(tip)
        rows = [row_from_hash(queue, job_id, data, version) for job_id, data in zip(ids, hashes) if data]
        gone = {job_id: final[job_id] for job_id, data in zip(ids, hashes) if not data and job_id in final}
        # Deleted through the engine (the admin's delete): the row goes too.
        dropped = [job_id for job_id, (_entry, event) in gone.items() if event == DELETED_EVENT]
        for job_id in dropped:
            del gone[job_id]
        newest = max((entry_id for entry_id, _ in entries), key=stream_id_key)
        with transaction.atomic(using=self.using):
            _upsert_safely(rows, using=self.using)
            _write_gone(queue, gone, using=self.using)
            if dropped:
                _model().objects.using(self.using).filter(job_id__in=dropped).delete()
            _advance_cursor(queue, newest, using=self.using)
        for row in rows:
            written[row["job_id"]] = version
            written.move_to_end(row["job_id"])
        while len(written) > WRITTEN_CACHE:
            written.popitem(last=False)
        # Only now: a crash before this line leaves the entries pending, to be read again.
        engine.mirror_ack(queue, MIRROR_GROUP, [entry_id for entry_id, _ in entries])
        return len(rows) + len(gone) + len(dropped)

    def drain(self) -> int:
        """Handle batches until no queue has unread or unacknowledged events; return rows written."""
        written = 0
        while True:
            written += self.step()
            if not self._read:
                return written

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Mirror until ``should_stop()`` returns True (checked at least every second)."""
        try:
            self._run(should_stop)
        finally:
            connections[self.using].close()  # this thread's connection

    def _run(self, should_stop: Callable[[], bool]) -> None:
        errors = 0
        from django_jobs.outage import OutageLog

        outage = OutageLog(logger, "Mirror")
        prune_at = time.monotonic()
        while not should_stop():
            try:
                cpu = time.process_time()
                self.step()
                cpu = time.process_time() - cpu
                if time.monotonic() >= prune_at:
                    prune_at = time.monotonic() + self.prune_interval
                    pruned = prune(using=self.using)
                    if pruned:
                        logger.info("Mirror: pruned %d finished job rows", pruned, extra={"action": "mirror_pruned"})
                if not self._read:
                    get_engine().mirror_wait(self._tips, IDLE_WAIT)
                else:
                    # Linger after a partial batch (coalesce a job's events); after any batch,
                    # rest long enough that the mirror uses at most MAX_CPU_SHARE of a core.
                    pause = self.linger if self._read < self.batch * len(self.queues) else 0.0
                    pause = max(pause, cpu * (1 / self.max_cpu_share - 1) if self.max_cpu_share < 1 else 0.0)
                    until = time.monotonic() + min(pause, IDLE_WAIT)
                    while not should_stop() and time.monotonic() < until:
                        time.sleep(min(0.05, max(0.001, until - time.monotonic())))
                if errors:
                    logger.info("Mirror: working again after %d failed attempt(s)", errors)
                errors = 0
                outage.ok()
            except Exception as exc:  # noqa: BLE001 - Redis or the database down: retry, nothing was acknowledged
                errors += 1
                connections[self.using].close()
                delay = min(5.0, 0.1 * 2 ** min(errors, 6))
                outage.failed(exc, delay)  # one line per Redis outage, not a traceback per retry
                until = time.monotonic() + delay
                while not should_stop() and time.monotonic() < until:
                    time.sleep(min(0.1, delay))


def mirror_once(queues: Iterable[str] | None = None) -> int:
    """Write every event not yet mirrored into the database; return the number of rows written.

    For tests, the admin's "refresh" and scripts; ``runworkers`` runs the mirror continuously.

    >>> mirror_once(["default"])  # doctest: +SKIP
    3
    """
    return Mirror(queues).drain()


# -- resync and prune ------------------------------------------------------------------------


def resync_queue(
    queue: str, *, using: str | None = None, batch: int | None = None,
    progress: Callable[[str, str, int, int], None] | None = None,
) -> int:
    """Rewrite the rows of every job of ``queue`` from Redis; return the number of rows written.

    Walks the six state ZSETs (no SCAN). Rows of unfinished jobs that no longer exist in
    Redis are deleted: such a job finished and was deleted while its events were lost, so
    how it ended is unknown. ``progress(queue, state, done, total)`` is called per batch.
    """
    engine = get_engine()
    using = using or router.db_for_write(_model())
    batch = batch or int(get_settings().mirror["BATCH"])
    start_tip, _ = engine.mirror_snapshot(queue, [])
    written = 0
    counts = engine.counts(queue)
    for state in RESYNC_STATES:
        offset, total = 0, counts[state]
        while True:
            ids = engine.state_page(queue, state, offset=offset, limit=batch)
            if not ids:
                break
            offset += len(ids)
            tip, hashes = engine.mirror_snapshot(queue, ids)
            version = version_of(tip)
            rows = [row_from_hash(queue, job_id, data, version) for job_id, data in zip(ids, hashes) if data]
            with transaction.atomic(using=using):
                written += _upsert_safely(rows, using=using)
            if progress is not None:
                progress(queue, state, min(offset, max(total, offset)), max(total, offset))
    # Unfinished rows written before the walk started and not rewritten by it.
    from django_jobs.models import FINISHED_STATES

    stale = list(
        _model().objects.using(using).filter(queue=queue, version__lt=version_of(start_tip))
        .exclude(state__in=FINISHED_STATES).values_list("pk", flat=True)
    )
    for start in range(0, len(stale), batch):
        chunk = stale[start : start + batch]
        missing = [job_id for job_id, found in zip(chunk, engine.jobs_exist(queue, chunk)) if not found]
        if missing:
            _model().objects.using(using).filter(pk__in=missing, version__lt=version_of(start_tip)).delete()
            logger.warning("Mirror resync: %d unfinished row(s) of %r name jobs Redis no longer has; deleted",
                           len(missing), queue)
    return written


def resync(
    queues: Iterable[str] | None = None, *, progress: Callable[[str, str, int, int], None] | None = None
) -> int:
    """Rebuild the mirror of ``queues`` (default: all) from Redis; return the number of rows written.

    Safe while mirrors run: rows are version-checked, so nothing moves backwards.

    >>> resync(["default"])  # doctest: +SKIP
    1200
    """
    settings = get_settings()
    names = list(queues) if queues else settings.queue_names
    unknown = [q for q in names if q not in settings.queues]
    if unknown:
        raise ConfigurationError(
            f"Unknown queue(s) {', '.join(map(repr, unknown))}. Configured: {', '.join(settings.queue_names)}."
        )
    return sum(resync_queue(queue, progress=progress) for queue in names)


def prune(retention: float | None = None, *, using: str | None = None) -> int:
    """Delete rows of finished jobs that finished more than ``retention`` seconds ago.

    ``retention`` defaults to ``DJANGO_JOBS["MIRROR"]["RETENTION"]`` (None there: keep all).
    Returns the number of rows deleted. Only the database is touched, never Redis.

    >>> prune(7 * 24 * 3600)  # doctest: +SKIP
    0
    """
    from django_jobs.models import FINISHED_STATES

    if retention is None:
        retention = get_settings().mirror["RETENTION"]
        if retention is None:
            return 0
    if retention < 0:
        raise ValueError(f"retention must be a number of seconds >= 0, not {retention!r}.")
    model = _model()
    using = using or router.db_for_write(model)
    cutoff: datetime = timezone.now() - timedelta(seconds=retention)
    deleted = 0
    while True:
        ids = list(
            model.objects.using(using).filter(state__in=FINISHED_STATES, finished_at__lt=cutoff)
            .values_list("pk", flat=True)[:PRUNE_BATCH]
        )
        if not ids:
            return deleted
        deleted += model.objects.using(using).filter(pk__in=ids).delete()[0]


# -- the mirror process of runworkers --------------------------------------------------------

#: Signals that stop the mirror process (the supervisor sends SIGTERM, then SIGUSR1).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class _StopFlag:
    """Set by a signal handler; a plain attribute, so the handler never takes a lock."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self) -> bool:
        return self.stop

    def handler(self, signum: int, frame: object) -> None:
        self.stop = True


def run_mirror(queues: Iterable[str] | None = None, *, parent_pid: int | None = None) -> int:
    """Run the mirror in this process until SIGTERM/SIGINT (or the parent dies); returns 0.

    The ``runworkers`` supervisor forks one such process next to its workers (signals
    blocked across the fork; unblocked here once handled); ``manage.py jobs mirror`` runs it
    in the foreground.
    """
    flag = _StopFlag()
    for sig in STOP_SIGNALS:
        signal.signal(sig, flag.handler)
    if parent_pid is not None:
        from django_jobs.worker.process import die_with_parent

        die_with_parent(signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if parent_pid is not None and os.getppid() != parent_pid:
        return 0
    mirror = Mirror(queues)
    logger.info("Mirror %s ready: queues %s", mirror.consumer, ",".join(mirror.queues), extra={"action": "mirror_ready"})

    def should_stop() -> bool:
        return flag.stop or (parent_pid is not None and os.getppid() != parent_pid)

    mirror.run(should_stop)
    return 0


def run_mirror_process(*, parent_pid: int) -> int:
    """Entry point of the mirror process forked by the ``runworkers`` supervisor."""
    # Niced (MIRROR["NICE"], 10): when jobs saturate the CPU the workers come first and the
    # mirror catches up after the burst; below saturation it keeps up (bench --mirror:
    # cost to a saturated drain 6-7 %, not niced 21 %; lag p99 0.4-0.5 s at 1,000 jobs/s).
    os.nice(get_settings().mirror["NICE"])
    return run_mirror(parent_pid=parent_pid)


def mirror_available(using: str | None = None) -> bool:
    """Return True when the mirror's table exists (``manage.py migrate`` ran)."""
    model = _model()
    using = using or router.db_for_write(model)
    try:
        return model._meta.db_table in connections[using].introspection.table_names()
    except Exception:  # noqa: BLE001 - a database that cannot be reached now may be later
        return True
