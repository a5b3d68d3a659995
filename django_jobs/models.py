"""Database mirror of job state, for the admin, search and history.

Redis is the source of truth. Nothing but :mod:`django_jobs.mirror` writes these rows, and
it writes them from the engine's events; the admin changes jobs through the engine, never
by editing rows.
"""

from __future__ import annotations

from django.db import models


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

    ``job_id`` is the engine's id (32 hex digits, time-ordered). ``parent_id`` names the
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
