"""Mirror maintenance: rebuild rows from Redis (resync) and delete old ones (prune)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import router, transaction
from django.utils import timezone

from django_jobs.conf import get_settings
from django_jobs.engine import get_engine
from django_jobs.engine.keys import MIRROR_GROUP, base_queue
from django_jobs.engine.protocol import JobState
from django_jobs.exceptions import ConfigurationError
from django_jobs.mirror.rows import _model, _upsert_safely, row_from_hash, version_of

logger = logging.getLogger("django_jobs.mirror")

#: State ZSETs walked by :func:`resync`, in this order.
RESYNC_STATES = (
    JobState.WAITING, JobState.SCHEDULED, JobState.WAITING_CHILDREN, JobState.ACTIVE,
    JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED,
)
#: The finished states (a job in one never changes again, unless an operator retries it).
FINISHED = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
#: Rows deleted per statement by :func:`prune` (below SQLite's bound-parameter limit).
PRUNE_BATCH = 900


def resync_queue(
    queue: str, *, using: str | None = None, batch: int | None = None,
    progress: Callable[[str, str, int, int], None] | None = None,
) -> int:
    """Rewrite the rows of every job of ``queue`` from Redis; return the number of rows written.

    Walks the six state ZSETs (no SCAN). Rows of unfinished jobs that no longer exist in
    Redis are deleted: such a job finished and was deleted while its events were lost, so
    how it ended is unknown. ``progress(queue, state, done, total)`` is called per batch.
    A shard of a sharded queue (``hot#2``) is walked on its own, its rows named by the queue.
    """
    engine = get_engine()
    name = base_queue(queue)
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
            rows = [row_from_hash(name, job_id, data, version, texts=True) for job_id, data in zip(ids, hashes) if data]
            with transaction.atomic(using=using):
                written += _upsert_safely(rows, using=using)
            # Recorded: retention may delete them now (lua/mirror_done.lua).
            recorded = [(job_id, data["f"]) for job_id, data in zip(ids, hashes)
                        if data.get("s") in FINISHED and data.get("f")]
            if recorded:
                engine.mirror_done(queue, MIRROR_GROUP, [], recorded)
            if progress is not None:
                progress(queue, state, min(offset, max(total, offset)), max(total, offset))
    # Unfinished rows written before the walk started and not rewritten by it.
    from django_jobs.models import FINISHED_STATES

    stale = list(
        _model().objects.using(using).filter(queue=name, version__lt=version_of(start_tip))
        .exclude(state__in=FINISHED_STATES).values_list("pk", flat=True)
    )
    for start in range(0, len(stale), batch):
        chunk = stale[start : start + batch]
        missing = [job_id for job_id, found in zip(chunk, engine.jobs_exist(name, chunk)) if not found]
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
    engine = get_engine()
    return sum(resync_queue(shard, progress=progress) for queue in names for shard in engine.shards(queue))


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


