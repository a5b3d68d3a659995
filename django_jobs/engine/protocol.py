"""Names for the letters and codes the Lua scripts speak (mirrored from their headers).

The scripts keep their one-letter and integer protocol (short ARGV, compact hashes); Python
names them here, so no other module compares with a bare ``"c"`` or ``3``. Refusal codes
(-1, -3, -4) are :class:`~django_jobs.engine.codes.ScriptCode`.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class JobState(StrEnum):
    """A job's state: its hash's ``s`` field, and the state ZSET that holds it."""

    WAITING = "waiting"
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: A flow parent waiting for its children.
    WAITING_CHILDREN = "waiting_children"


#: States a job never leaves (but by an operator's retry).
FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


class OutcomeKind(StrEnum):
    """``kind`` of a settle outcome (settle.lua, :class:`~django_jobs.engine.transitions.Outcome`)."""

    COMPLETE = "c"
    RETRY = "r"
    FAIL = "f"
    CANCELLED = "x"
    #: Rate limited (``RateLimited``): back to scheduled after ``delay_ms``, the attempt not counted.
    RATE_LIMITED = "l"


class EnqueueCode(IntEnum):
    """Per-job reply of ``enqueue`` / ``enqueue_guarded``."""

    EXISTED = 0
    WAITING = 1
    SCHEDULED = 2
    #: Another job holds the unique key: this one was not created (its id is returned).
    DEDUPLICATED = 3
    #: Debounce: the guarded job's arguments and due time were replaced (its id is returned).
    REPLACED = 4


class CancelCode(IntEnum):
    """Per-job reply of ``cancel`` / ``cancel_many``."""

    UNKNOWN = -1
    FINISHED = 0
    CANCELLED = 1
    #: The job is running: a cancel was requested (``cx``); it ends at its next check.
    REQUESTED = 2


class RetryCode(IntEnum):
    """Per-job reply of ``retry``."""

    UNKNOWN = -1
    #: Not failed or cancelled: nothing done.
    NOT_RETRYABLE = 0
    RETRIED = 1
    #: Another job guards its unique key now: not retried.
    GUARDED = 2
    #: A flow parent that failed through a child, retried without that child: not retried (retry
    #: the child, which re-opens the parent, or both in one call; docs/flows.md#retrying).
    CHILD_FAILED = 3
    #: No longer returned: a retry of a flow over several slots of a Redis Cluster re-opens the
    #: jobs on other slots through the outbox (docs/flows.md#redis-cluster). Kept so that code
    #: naming it still works.
    CROSS_SLOT = 4


class DeleteCode(IntEnum):
    """Per-job reply of ``delete``."""

    UNKNOWN = -1
    #: Running, or an unfinished child of a flow (cancel it first): kept.
    KEPT = 0
    DELETED = 1


class FetchFlag(IntEnum):
    """Second value of ``fetch``'s reply."""

    NONE = 0
    PAUSED = 1
    #: The count was cut to the free threads by a concurrency limit.
    LIMITED = 2


class CronClaim(IntEnum):
    """Reply of ``cron_claim``."""

    STALE_LEADER = -3
    FIRED_ALREADY = 0
    CLAIMED = 1
    #: The schedule is paused: the tick is dropped.
    PAUSED = 2


class FlowPolicy(StrEnum):
    """A flow child's failure policy toward its parent (the hash's ``fp``)."""

    FAIL = ""
    IGNORE = "i"
    REMOVE = "r"


class GuardMode(StrEnum):
    """What a unique key does with a second enqueue (:class:`~django_jobs.engine.transitions.Guard`)."""

    KEEP = "k"
    REPLACE = "r"


class GuardUntil(StrEnum):
    """How long a unique key guards its job."""

    START = "s"
    FINISH = "f"


#: What ``JobResult.cancel()`` and ``manage.py jobs cancel`` report for each cancel code.
CANCEL_OUTCOMES = {CancelCode.CANCELLED: "cancelled", CancelCode.REQUESTED: "requested", CancelCode.FINISHED: "finished"}
