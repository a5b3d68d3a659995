"""django_jobs: fast, reliable background jobs for Django on Redis.

>>> from django_jobs import job
>>> @job(queue="default", attempts=3)
... def add(a: int, b: int) -> int:
...     return a + b
>>> add.enqueue(1, 2).wait().return_value  # doctest: +SKIP
3
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("django-jobs-redis")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [  # noqa: RUF022 - grouped by purpose
    # declaring and enqueuing
    "job",
    "call",
    "JobTask",
    "JobResult",
    "JobContext",
    # periodic jobs
    "is_leader",
    # steering a running job
    "Retry",
    "Cancel",
    "RateLimited",
    # errors
    "DjangoJobsError",
    "ConfigurationError",
    "InvalidJob",
    "InvalidArguments",
    "JobNotFound",
    "RedisUnavailable",
    "RedisOutOfMemory",
    "LeaseLost",
    "JobTimeout",
]

from django_jobs.exceptions import (
    Cancel,
    ConfigurationError,
    DjangoJobsError,
    InvalidArguments,
    InvalidJob,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    RateLimited,
    RedisOutOfMemory,
    RedisUnavailable,
    Retry,
)

if TYPE_CHECKING:
    from django_jobs.scheduler import is_leader
    from django_jobs.tasks import JobContext, JobResult, JobTask, call, job

_LAZY = {"job", "call", "JobTask", "JobResult", "JobContext"}


def __getattr__(name: str) -> Any:
    # django.tasks imports settings-dependent machinery; load it on first use so that
    # ``import django_jobs`` stays cheap and safe before settings are configured.
    if name in _LAZY:
        from django_jobs import tasks

        return getattr(tasks, name)
    if name == "is_leader":
        from django_jobs.scheduler import is_leader

        return is_leader
    raise AttributeError(f"module 'django_jobs' has no attribute {name!r}")
