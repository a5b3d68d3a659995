"""Database mirror of job state, for the admin, search and history.

Redis is the source of truth. Nothing but :mod:`django_jobs.mirror` writes these rows, and
it writes them from the engine's events; the admin changes jobs through the engine, never
by editing rows.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class JobState(models.TextChoices):
    """The engine's job states (DESIGN.md), as stored in :attr:`JobRecord.state`."""

    SCHEDULED = "scheduled", "Scheduled"
    WAITING = "waiting", "Waiting"
    WAITING_CHILDREN = "waiting_children", "Waiting for children"
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


#: States a job never leaves by itself (retention and charts count these).
FINISHED_STATES = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


class JobRecord(models.Model):
    """One job as last seen in Redis.

    ``job_id`` is the engine's id (20 base62 characters, time-ordered; older releases made 32 hex digits). ``parent_id`` names the
    parent job of a flow by id, not by foreign key: a child's row may be written before
    its parent's.
    """

    job_id = models.CharField("job id", max_length=64, primary_key=True)
    queue = models.CharField(max_length=200)
    name = models.CharField(max_length=255)
    state = models.CharField(max_length=20, choices=JobState.choices)
    priority = models.SmallIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    #: The job's return value (JSON) once completed.
    result = models.JSONField(null=True, blank=True)
    #: The last error: exception class and message, e.g. ``"ValueError: bad input"``.
    error = models.TextField(blank=True)
    #: The last error's exception class without its module, e.g. ``"PaymentDeclined"`` (indexed:
    #: the admin's search finds it without reading the error texts).
    error_class = models.CharField(max_length=200, blank=True, default="")
    traceback = models.TextField(blank=True)
    #: Every attempt's error as the engine recorded it (a list of JSON objects): the timeline.
    errors = models.JSONField(default=list, blank=True)
    #: The errors of earlier runs, oldest first: an operator's retry moves :attr:`errors` here
    #: before the job starts over (the job hash's ``eh``; never erased).
    earlier_errors = models.JSONField(default=list, blank=True)
    #: Last progress the job reported (a number or a small JSON object).
    progress = models.JSONField(null=True, blank=True)
    correlation_id = models.CharField(max_length=200, blank=True)
    parent_id = models.CharField(max_length=64, blank=True)
    #: Worker ids that ran the job, one per attempt.
    workers = models.JSONField(default=list, blank=True)
    #: The raw payload when it could not be decoded (bad input kept for the operator).
    raw_payload = models.TextField(blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: Run time of the last attempt in seconds (finished - last start).
    duration = models.FloatField(null=True, blank=True)
    #: When the mirror last wrote this row.
    updated_at = models.DateTimeField(auto_now=True)
    #: Position in the queue's events stream of the Redis snapshot this row was written from
    #: (``ms << 20 | seq`` of the entry id). The mirror never overwrites a row with an older
    #: snapshot, so racing mirrors cannot move a job back to an earlier state.
    version = models.BigIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = "job"
        verbose_name_plural = "jobs"
        ordering = ["-enqueued_at"]
        indexes = [
            models.Index(fields=["state", "-enqueued_at"], name="djj_state_enq"),
            models.Index(fields=["queue", "state", "-enqueued_at"], name="djj_queue_state_enq"),
            models.Index(fields=["queue", "-enqueued_at"], name="djj_queue_enq"),
            models.Index(fields=["name", "-enqueued_at"], name="djj_name_enq"),
            models.Index(fields=["-enqueued_at"], name="djj_enq"),
            models.Index(fields=["correlation_id"], name="djj_cid"),
            models.Index(fields=["parent_id"], name="djj_parent"),
            models.Index(fields=["finished_at", "state"], name="djj_finished_state"),
            models.Index(fields=["name", "finished_at"], name="djj_name_finished"),
            # The admin's search by exception class, and its "has an error" filter (0005).
            models.Index(fields=["error_class", "-enqueued_at"], name="djj_errclass_enq"),
            models.Index(fields=["-enqueued_at"], condition=~Q(error=""), name="djj_error_enq"),
            models.Index(fields=["queue", "-enqueued_at"], condition=~Q(error=""), name="djj_queue_error_enq"),
        ]
        permissions = [
            ("retry_jobrecord", "Can retry jobs"),
            ("cancel_jobrecord", "Can cancel jobs"),
            ("manage_queues", "Can pause, resume and purge queues"),
            ("manage_schedules", "Can pause, resume and trigger schedules"),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.job_id}]"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES


class MirrorCursor(models.Model):
    """Where the mirror left off in one queue's events stream (resume point after restarts).

    The consumer group in Redis also remembers it; this row is what ``jobs resync`` and the
    admin read to show the mirror's lag.
    """

    queue = models.CharField(max_length=200, primary_key=True)
    last_event_id = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "mirror cursor"

    def __str__(self) -> str:
        return f"{self.queue} @ {self.last_event_id or '-'}"


class FinishedTally(models.Model):
    """How many jobs of one name and queue finished in one state in one time slot (the dashboard's counts).

    Written by the mirror as it writes :class:`JobRecord` rows (:mod:`django_jobs.mirror.aggregates`):
    a slot of ``span`` minutes (1 or 15) holds the jobs that finished in ``(start, start + span]``.
    """

    span = models.PositiveSmallIntegerField()
    start = models.DateTimeField()
    queue = models.CharField(max_length=200)
    name = models.CharField(max_length=255)
    state = models.CharField(max_length=20, choices=JobState.choices)
    n = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "finished-jobs tally"
        constraints = [models.UniqueConstraint(fields=["span", "start", "queue", "name", "state"], name="djj_finished_tally_key")]

    def __str__(self) -> str:
        return f"{self.name} {self.state} x{self.n} @ {self.start:%Y-%m-%d %H:%M} /{self.span} min"


class RunTimeTally(models.Model):
    """How many finished jobs of one name ran for a time in one bucket, per time slot (run-time percentiles).

    ``bucket`` is a run time on a log scale, twenty buckets a decade (see
    :func:`django_jobs.mirror.aggregates.bucket_of`); slots as in :class:`FinishedTally`.
    """

    span = models.PositiveSmallIntegerField()
    start = models.DateTimeField()
    name = models.CharField(max_length=255)
    bucket = models.SmallIntegerField()
    n = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "run-time tally"
        constraints = [models.UniqueConstraint(fields=["span", "start", "name", "bucket"], name="djj_runtime_tally_key")]

    def __str__(self) -> str:
        return f"{self.name} bucket {self.bucket} x{self.n} @ {self.start:%Y-%m-%d %H:%M} /{self.span} min"
