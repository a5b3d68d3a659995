"""Job middleware: classes that wrap every job's execution in a worker, like Sidekiq's server middleware.

``DJANGO_JOBS["MIDDLEWARE"]`` lists them by dotted path, outermost first. Each is built once
per worker process (no arguments); its ``__call__(job)`` is a generator that yields exactly
once, while the job runs::

    class Timing:
        def __call__(self, job):
            started = time.monotonic()
            try:
                yield  # the job (and the middleware listed after this one) runs here
            finally:
                statsd.timing(job.task.module_path, time.monotonic() - started)

``job`` is the :class:`~django_jobs.tasks.JobResult` of the running job (state ``active``).
An exception raised by the job is re-raised at the ``yield``: a middleware may look at it,
or raise another one instead, but cannot hide the failure. An exception raised before the
``yield`` fails the attempt without running the job (the usual retry rules apply).

Correlation and logging are middleware too: :class:`JobCorrelationMiddleware` sets the job's
correlation id while it runs, :class:`JobLoggingMiddleware` writes the lifecycle log lines.
Both are in the default list; the executor runs them inline (they cost nothing per job beyond
their work). Remove one from the list to turn it off. When the list holds only these two,
nothing is built per job.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

from django_jobs.exceptions import ConfigurationError

__all__ = ["Chain", "JobCorrelationMiddleware", "JobLoggingMiddleware", "JobMiddleware", "get_chain"]

#: The old names of the built-in job middleware (deprecated: ``CorrelationMiddleware`` was too
#: easy to confuse with the web's ``django_jobs.correlation.CorrelationIdMiddleware``).
DEPRECATED_NAMES = {"CorrelationMiddleware": "JobCorrelationMiddleware", "LoggingMiddleware": "JobLoggingMiddleware"}


def __getattr__(name: str) -> Any:
    if name in DEPRECATED_NAMES:
        import warnings

        new = DEPRECATED_NAMES[name]
        warnings.warn(
            f"django_jobs.middleware.{name} is deprecated: use django_jobs.middleware.{new} "
            f"in DJANGO_JOBS['MIDDLEWARE'].",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class JobMiddleware:
    """Optional base class of job middleware: wrap the job in ``__call__``, around one ``yield``."""

    def __call__(self, job: Any) -> Generator[None, None, None]:
        yield


class JobCorrelationMiddleware(JobMiddleware):
    """Set the job's correlation id (and the running job, for log records) while it runs.

    Run inline by the executor: jobs it enqueues inherit the id; the worker's log records carry it.
    """


class JobLoggingMiddleware(JobMiddleware):
    """Log each job's lifecycle: started (DEBUG), succeeded (INFO, with ``duration_ms``),
    retrying (WARNING), failed (ERROR, with the traceback), cancelled (INFO).

    Run inline by the executor, on the ``django_jobs.worker`` logger; lines carry ``action``.
    """


@dataclass(frozen=True, slots=True)
class Chain:
    """The configured middleware: the built-in flags, and the others in order."""

    correlation: bool
    logging: bool
    custom: tuple[Any, ...]


#: (settings object, its chain): the executor asks once per job, so this must be cheap.
_last: tuple[Any, Chain | None] = (None, None)


def get_chain() -> Chain:
    """Return the middleware chain of the current settings (built once per list of paths)."""
    global _last
    from django_jobs.conf import get_settings

    settings = get_settings()
    cached_for, chain = _last
    if cached_for is settings and chain is not None:
        return chain
    chain = _build(tuple(settings.middleware))
    _last = (settings, chain)
    return chain


@functools.cache
def _build(paths: tuple[str, ...]) -> Chain:
    correlation = logging_ = False
    custom: list[Any] = []
    for path in paths:
        try:
            cls = import_string(path)
        except ImportError as exc:
            raise ConfigurationError(f"DJANGO_JOBS['MIDDLEWARE'] names {path!r}, which cannot be imported: {exc}") from exc
        if cls is JobCorrelationMiddleware:
            correlation = True
        elif cls is JobLoggingMiddleware:
            logging_ = True
        else:
            custom.append(cls())
    return Chain(correlation=correlation, logging=logging_, custom=tuple(custom))
