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


def raise_for_code(code: int, job_id: str) -> None:
    """Raise the exception matching a negative script code; do nothing for success."""
    if code >= 0:
        return
    if code == ScriptCode.JOB_NOT_FOUND:
        raise JobNotFound(f"Job {job_id!r} does not exist (it may have been trimmed).")
    if code == ScriptCode.NOT_OWNER:
        raise LeaseLost(f"This worker no longer owns job {job_id!r}; its outcome was dropped.")
    raise ScriptError(f"Script refused job {job_id!r} with code {code}.", code=code)


# -- per-id codes of the bulk action scripts (cancel.lua/cancel_many.lua, retry.lua, delete.lua) --
# django_jobs.operations maps them to what an operator reads; any code not listed here becomes a
# generic skip that names the code (a newer script may return one this module does not know).


class CancelCode(IntEnum):
    """Per-id result of ``cancel.lua`` / ``cancel_many.lua``."""

    NOT_FOUND = -1
    #: The job had already finished (completed, failed or cancelled): nothing written.
    FINISHED = 0
    CANCELLED = 1
    #: The job is running: its worker was asked to stop it.
    REQUESTED = 2


class RetryCode(IntEnum):
    """Per-id result of ``retry.lua``."""

    NOT_FOUND = -1
    #: Not failed or cancelled (a replay finds the job waiting): nothing written.
    NOT_RETRYABLE = 0
    RETRIED = 1
    #: Another job now guards the job's unique key: nothing written.
    UNIQUE_HELD = 2


class DeleteCode(IntEnum):
    """Per-id result of ``delete.lua``."""

    NOT_FOUND = -1
    #: Running, or an unfinished child a flow parent waits for: cancel it first.
    NOT_DELETABLE = 0
    DELETED = 1
