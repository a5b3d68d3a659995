"""The runtime state of this process: the jobs running here and the job of the current context.

One owner for what used to be module globals written from several places. The worker process
(:mod:`django_jobs.worker.process`) registers each job it claims and drops it once settled;
:mod:`django_jobs.testing` does the same around the jobs it runs in the calling thread. The
executor sets :data:`current_job` while a job runs, so logging, enqueues from inside a job (the
flow parent id) and :class:`~django_jobs.tasks.JobContext` find it.

This module imports nothing of django_jobs: every layer may read it.
"""

from __future__ import annotations

import os
import threading
from contextvars import ContextVar
from typing import Any, Protocol

__all__ = [
    "RunningJobLike", "current_job", "current_job_id", "get", "is_cancel_requested", "pid", "register", "running_ids", "unregister",
]

# This process' id, kept up to date by an at-fork hook: os.getpid() is a system call (over a
# microsecond on some hosts) and every enqueue asked it three times (engine, connection, correlation id).
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def pid() -> int:
    """Return this process' id (``os.getpid()`` without its system call; right after a fork too)."""
    return _pid


class RunningJobLike(Protocol):
    """What the runtime needs of a running job (``django_jobs.worker.executor.RunningJob``)."""

    @property
    def id(self) -> str: ...

    @property
    def cancel_event(self) -> threading.Event: ...


#: The job running in the current thread or task (a ``worker.executor.RunningJob``; None
#: outside jobs). Set by the executor around the job's code.
current_job: ContextVar[Any] = ContextVar("django_jobs_current_job", default=None)

_running: dict[str, Any] = {}
_lock = threading.Lock()


def register(job: RunningJobLike) -> None:
    """Record ``job`` as running in this process (from its claim until it is settled)."""
    with _lock:
        _running[job.id] = job


def unregister(job_id: str) -> None:
    """Forget job ``job_id`` (settled, released, or its lease was lost); no error if unknown."""
    with _lock:
        _running.pop(job_id, None)


def get(job_id: str) -> Any:
    """Return the running job ``job_id`` of this process, or None."""
    return _running.get(job_id)


def running_ids() -> list[str]:
    """Return the ids of the jobs running in this process."""
    with _lock:
        return list(_running)


def is_cancel_requested(job_id: str) -> bool:
    """Return True when running job ``job_id`` was asked to stop."""
    job = _running.get(job_id)
    return job is not None and bool(job.cancel_event.is_set())


def current_job_id() -> str:
    """Return the id of the job running in this context ('' outside jobs)."""
    job = current_job.get()
    return str(job.id) if job is not None else ""
