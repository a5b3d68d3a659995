"""Exceptions raised by django_jobs.

The hierarchy (see ``docs/architecture.md``)::

    DjangoJobsError
     ├─ ConfigurationError (+ ImproperlyConfigured)
     ├─ InvalidJob (+ django.tasks InvalidTask, ValueError)
     │   └─ InvalidArguments (+ TypeError)
     ├─ JobNotFound (+ LookupError)
     ├─ EngineError
     │   ├─ RedisUnavailable
     │   ├─ RedisOutOfMemory
     │   └─ ScriptError
     │       └─ LeaseLost
     ├─ JobTimeout
     └─ JobControl
         ├─ Retry
         ├─ Cancel
         └─ RateLimited
    WorkerShutdown (BaseException)
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from django_jobs.compat import InvalidTask


class DjangoJobsError(Exception):
    """Base class of every django_jobs error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(DjangoJobsError, ImproperlyConfigured):
    """The DJANGO_JOBS settings are invalid."""


class InvalidJob(DjangoJobsError, InvalidTask, ValueError):
    """The job or one of its options is invalid.

    Also a :class:`django.tasks.exceptions.InvalidTask`, so one ``except InvalidTask``
    catches every invalid option, whichever layer found it.
    """


class InvalidArguments(InvalidJob, TypeError):
    """The arguments do not fit the job's function (checked at enqueue, as a call would).

    Also a :class:`TypeError`, what calling the function with them would raise.
    """


class JobNotFound(DjangoJobsError, LookupError):
    """No job with that id exists (it may have been trimmed by retention)."""


class EngineError(DjangoJobsError):
    """The Redis engine could not complete the operation."""


class RedisUnavailable(EngineError):
    """Redis cannot be reached."""


class RedisOutOfMemory(EngineError):
    """Redis refused a write: it reached ``maxmemory`` with the ``noeviction`` policy.

    Nothing of the refused call was written. Free memory (trim retention, raise
    ``maxmemory``) and try again.
    """


class ScriptError(EngineError):
    """A Lua script refused the transition."""

    code: int = 0

    def __init__(self, message: str | None = None, *, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class LeaseLost(ScriptError):
    """This worker no longer owns the job: its lease expired or was taken over."""


class JobTimeout(DjangoJobsError):
    """The job ran longer than its timeout."""


class ChildFailed(DjangoJobsError):
    """A child of this flow parent failed or was cancelled, and its policy fails the parent.

    Recorded in the parent's errors (failure reason ``child_failed``); never raised in Python.
    """


class JobCrashed(DjangoJobsError):
    """The process running an isolated job died before it returned (a segfault, ``os._exit``, an OOM kill)."""


class JobControl(DjangoJobsError):
    """Base class of exceptions a job raises to steer its own execution."""


class Retry(JobControl):
    """Raise from a job to retry it, optionally after ``delay`` seconds.

    The attempt counts against the job's ``attempts`` like any failure.

    >>> raise Retry(delay=30)  # doctest: +SKIP
    """

    def __init__(self, message: str | None = None, *, delay: float | None = None) -> None:
        super().__init__(message or "Retry requested by the job.")
        self.delay = delay


class Cancel(JobControl):
    """Raise from a job to stop it and mark it cancelled (no retry)."""


class RateLimited(JobControl):
    """Raise from a job when a service it calls says "too many requests".

    The job goes back to scheduled and runs again after ``retry_after`` seconds; the attempt
    does not count against ``attempts``. ``backoff="queue"`` also holds back every job of the
    queue for that long, across all workers; ``backoff="key"`` every job of the job's limit key
    (``@job(limit_key=...)``; without one it is the same as ``"job"``) (docs/flow-control.md).

    >>> raise RateLimited(retry_after=30, backoff="queue")  # doctest: +SKIP
    """

    #: What ``backoff`` may be: only this job waits, or the whole queue does.
    SCOPES = ("job", "queue", "key")

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0, backoff: str = "job") -> None:
        super().__init__(message or f"Rate limited: run again in {retry_after} s.")
        if not (isinstance(retry_after, (int, float)) and 0 <= retry_after < float("inf")):
            raise ValueError(f"RateLimited(retry_after={retry_after!r}): use a finite number of seconds >= 0.")
        if backoff not in self.SCOPES:
            raise ValueError(f"RateLimited(backoff={backoff!r}): use 'job', 'key' or 'queue'.")
        self.retry_after = float(retry_after)
        self.backoff = backoff


class WorkerShutdown(BaseException):
    """The worker is shutting down; raised into async jobs at the grace deadline."""
