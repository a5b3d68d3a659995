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


from django_jobs.mirror.consumer import (
    CATCH_UP_FACTOR,
    DEFER_FOR,
    DEFER_MAX,
    DELETED_EVENT,
    FINAL_EVENTS,
    IDLE_WAIT,
    LINGER,
    MAX_CPU_SHARE,
    RELEASE_AFTER,
    TRANSACTION_JOBS,
    WRITTEN_CACHE,
    WRITTEN_KEPT,
    Mirror,
    commits_overlap,
    mirror_lag,
    mirror_once,
    release_memory,
)
from django_jobs.mirror.maintenance import PRUNE_BATCH, RESYNC_STATES, prune, resync, resync_queue
from django_jobs.mirror.process import (
    STOP_SIGNALS,
    mirror_available,
    run_mirror,
    run_mirror_process,
)
from django_jobs.mirror.rows import MAX_PARAMS, row_from_hash, upsert, version_of

__all__ = [
    "CATCH_UP_FACTOR", "DEFER_FOR", "DEFER_MAX", "DELETED_EVENT", "FINAL_EVENTS", "IDLE_WAIT", "LINGER", "MAX_CPU_SHARE", "MAX_PARAMS",
    "PRUNE_BATCH", "RELEASE_AFTER", "RESYNC_STATES", "STOP_SIGNALS", "TRANSACTION_JOBS", "WRITTEN_CACHE", "WRITTEN_KEPT",
    "Mirror", "commits_overlap", "mirror_available", "mirror_lag", "mirror_once", "prune", "release_memory", "resync", "resync_queue",
    "row_from_hash", "run_mirror", "run_mirror_process", "upsert", "version_of",
]
