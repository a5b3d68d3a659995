"""Return codes of the Lua scripts, mirrored from their headers."""

from __future__ import annotations

from enum import IntEnum

from django_jobs.exceptions import JobNotFound, LeaseLost, ScriptError


class ScriptCode(IntEnum):
    """Negative codes a script returns for a refused transition."""

    OK = 1
    JOB_NOT_FOUND = -1
    NOT_OWNER = -3
    #: The request itself is malformed (e.g. an unknown outcome kind); nothing was written.
    BAD_REQUEST = -4


class RetryCode(IntEnum):
    """What ``retry.lua`` (``Engine.retry`` / ``retry_many``) answers per job id."""

    RETRIED = 1
    #: Not failed or cancelled (nothing written; a replayed retry finds the job waiting).
    NOT_RETRYABLE = 0
    JOB_NOT_FOUND = -1
    #: Skipped: another job guards its unique key now.
    UNIQUE_KEY_HELD = 2
    #: Skipped: a flow parent that failed through a child, retried without that child (retry
    #: the child, which re-opens the parent, or both in one call; docs/flows.md#retrying).
    CHILD_FAILED = 3


def raise_for_code(code: int, job_id: str) -> None:
    """Raise the exception matching a negative script code; do nothing for success."""
    if code >= 0:
        return
    if code == ScriptCode.JOB_NOT_FOUND:
        raise JobNotFound(f"Job {job_id!r} does not exist (it may have been trimmed).")
    if code == ScriptCode.NOT_OWNER:
        raise LeaseLost(f"This worker no longer owns job {job_id!r}; its outcome was dropped.")
    raise ScriptError(f"Script refused job {job_id!r} with code {code}.", code=code)
